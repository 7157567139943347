# Relay: node-postgres and JDBC (server-side prepared statements) see the same session through the proxy.
import json
import os
import pathlib
import shutil
import subprocess

import pytest

from conftest import require

HERE = pathlib.Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
JDBC_SOURCE = HERE / "jdbc" / "RelayCheck.java"
JDBC_JAR = pathlib.Path("/usr/share/java/postgresql.jar")


def run_node(target, dbname):
    env = dict(os.environ, PGHOST=target.host, PGPORT=str(target.port), PGUSER="postgres",
               PGPASSWORD="postgres", PGDATABASE=dbname)
    result = subprocess.run(["node", "relay_check.js"], cwd=NODE_DIR, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_node_postgres_matches_direct(pg, db, start_proxy):
    require(shutil.which("node"), "node is not installed")
    require((NODE_DIR / "node_modules" / "pg").is_dir(), "run `npm ci` in tests/e2e/node first")
    proxy = start_proxy(db)
    direct = run_node(pg, db)
    proxied = run_node(proxy, db)
    assert proxied == direct
    steps = dict((name, result) for name, result in direct)
    assert steps["insert 1"]["rows"] == [{"id": 1, "name": "item 1 é"}]
    assert [steps[f"named {i}"]["rows"] for i in (1, 2, 3)] == [
        [{"name": "item 1 é"}], [{"name": "item 2 é"}], [{"name": "item 3 é"}]]
    assert steps["array mode"]["rows"] == [[42, True]]
    assert steps["unique violation"]["code"] == "23505"
    assert steps["unique violation"]["constraint"] == "node_items_pkey"
    assert steps["bad param"]["code"] == "22P02"
    assert (steps["update"]["command"], steps["update"]["rowCount"]) == ("UPDATE", 4)
    assert steps["error in tx"]["code"] == "22012"
    assert steps["after error"]["code"] == "25P02"
    assert steps["count"]["rows"] == [{"n": 5}]
    assert (steps["delete"]["command"], steps["delete"]["rowCount"]) == ("DELETE", 2)


@pytest.fixture(scope="module")
def jdbc_classes(tmp_path_factory):
    require(shutil.which("javac") and shutil.which("java"), "a JDK is not installed")
    require(JDBC_JAR.exists(), f"{JDBC_JAR} is missing (libpostgresql-jdbc-java)")
    out = tmp_path_factory.mktemp("jdbc")
    result = subprocess.run(["javac", "-cp", str(JDBC_JAR), "-d", str(out), str(JDBC_SOURCE)],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    return out


def run_jdbc(classes, target, dbname):
    url = f"jdbc:postgresql://{target.host}:{target.port}/{dbname}?prepareThreshold=1&sslmode=disable"
    result = subprocess.run(
        ["java", "-cp", f"{classes}{os.pathsep}{JDBC_JAR}", "RelayCheck", url, "postgres", "postgres"],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


@pytest.mark.slow
def test_jdbc_prepared_statements_match_direct(pg, db, start_proxy, jdbc_classes):
    proxy = start_proxy(db)
    direct = run_jdbc(jdbc_classes, pg, db)
    proxied = run_jdbc(jdbc_classes, proxy, db)
    assert proxied == direct
    assert direct == [
        "create: count 0",
        "insert 1: count 1",
        "insert 2: count 1",
        "insert 3: count 1",
        "insert 4: count 1",
        "insert 5: count 1",
        "batch: counts [1, 1, 1, 1]",
        'unique violation: error 23505 ERROR: duplicate key value violates unique constraint "jdbc_items_pkey"',
        "select 1: [id:int4,name:text,price:numeric] (2,item 2,2.50) (3,item 3,3.75) (4,item 4,5.00) "
        "(5,item 5,6.25) (6,batch 6,null) (7,batch 7,null) (8,batch 8,null) (9,batch 9,null)",
        "select 2: [id:int4,name:text,price:numeric] (4,item 4,5.00) (5,item 5,6.25) (6,batch 6,null) "
        "(7,batch 7,null) (8,batch 8,null) (9,batch 9,null)",
        "select 3: [id:int4,name:text,price:numeric] (6,batch 6,null) (7,batch 7,null) (8,batch 8,null) "
        "(9,batch 9,null)",
        "update in tx: count 1",
        "error in tx: error 22012 ERROR: division by zero",
        "after error: error 25P02 ERROR: current transaction is aborted, commands ignored until end of "
        "transaction block",
        "update committed: count 1",
        "final: [id:int4,price:numeric] (1,1.25) (2,2.50) (3,7.50)",
        # prepareThreshold=1: every statement became a named server-side statement on first use.
        "server prepared: [statement:text] "
        "(CREATE TABLE jdbc_items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2))) "
        "(INSERT INTO jdbc_items VALUES ($1, $2, $3)) "
        "(SELECT id, name, price FROM jdbc_items WHERE id >= $1 ORDER BY id) "
        "(SELECT id, price FROM jdbc_items WHERE id <= 3 ORDER BY id) "
        "(SELECT statement FROM pg_prepared_statements WHERE statement LIKE '%jdbc_items%' ORDER BY statement) "
        "(UPDATE jdbc_items SET price = $1 WHERE id = $2)",
        "drop: count 0",
    ]
