# A session's own writes are never a conflict (SPEC 3.3): batches and pipelines that write one row
# twice, and a write after the session's own write inside a function or DO block, succeed as they
# do directly; a really stale row in the same batch still fails the batch, with nothing written.
# No SQL here names a version.
import asyncio
import os
import pathlib
import shutil
import subprocess

import asyncpg
import psycopg
import pytest

from conftest import require
from occ_helpers import (  # noqa: F401 (occ_proxy_fixture provides the occ_proxy fixture)
    conflict_error,
    connect,
    counters,
    fails,
    occ_proxy_fixture,
    psycopg3_error,
    read_detail,
    conflict_detail,
    requires_proxy,
    rows,
    rules_yaml,
    run,
    unread_detail,
)

pytestmark = requires_proxy

HERE = pathlib.Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
JDBC_JAR = pathlib.Path("/usr/share/java/postgresql.jar")

WRITE = "UPDATE subscriptions SET notes = %s WHERE id = %s"
TWICE = [("a", 42), ("b", 42), ("c", 43)]
STALE = [("e", 42), ("f", 42), ("g", 44)]
# After TWICE and one more write of row 42 ("d"): each write advanced its row's version once.
AFTER = [["42", "d", "4"], ["43", "c", "2"], ["44", "n44", "1"]]


def table(pg, db):
    return rows(pg, db, "SELECT id, notes, version FROM subscriptions ORDER BY id")


def billing_changes_44(pg, db):
    pg.psql("UPDATE subscriptions SET status = 'billed' WHERE id = 44", dbname=db)


def stale_44_error():
    return conflict_error(44, 1, 2, read_detail(2, ["status"]))


def test_psycopg3_executemany_writes_one_row_twice(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    with psycopg.connect(proxy.dsn(db), autocommit=True) as conn:
        conn.execute("SELECT * FROM subscriptions").fetchall()
        with conn.cursor() as cur:
            cur.executemany(WRITE, TWICE)
        conn.execute(WRITE, ("d", 42))
        assert table(pg, db) == AFTER
        billing_changes_44(pg, db)
        with pytest.raises(psycopg.errors.SerializationFailure) as caught:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(WRITE, STALE)
    assert psycopg3_error(caught.value) == stale_44_error()
    assert table(pg, db) == [["42", "d", "4"], ["43", "c", "2"], ["44", "n44", "2"]]
    assert counters(proxy)["conflicts"] == 1


def test_psycopg3_pipeline_writes_one_row_twice(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    with psycopg.connect(proxy.dsn(db)) as conn:
        conn.execute("SELECT * FROM subscriptions").fetchall()
        with conn.pipeline():
            for notes, key in TWICE:
                conn.execute(WRITE, (notes, key))
            conn.execute(WRITE, ("d", 42))
        conn.commit()
        assert table(pg, db) == AFTER
        billing_changes_44(pg, db)
        with pytest.raises(psycopg.errors.SerializationFailure) as caught:
            with conn.pipeline():
                for notes, key in STALE:
                    conn.execute(WRITE, (notes, key))
        conn.rollback()
    assert psycopg3_error(caught.value) == stale_44_error()
    assert table(pg, db) == [["42", "d", "4"], ["43", "c", "2"], ["44", "n44", "2"]]


def test_asyncpg_executemany_writes_one_row_twice(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    write = "UPDATE subscriptions SET notes = $1 WHERE id = $2"

    async def scenario():
        conn = await asyncpg.connect(host=proxy.host, port=proxy.port, user="postgres", password="postgres",
                                     database=db)
        try:
            await conn.fetch("SELECT * FROM subscriptions")
            await conn.executemany(write, TWICE)
            assert await conn.execute(write, "d", 42) == "UPDATE 1"
            assert table(pg, db) == AFTER
            billing_changes_44(pg, db)
            with pytest.raises(asyncpg.exceptions.SerializationError) as caught:
                await conn.executemany(write, STALE)
            return caught.value
        finally:
            await conn.close()

    error = asyncio.run(scenario())
    # asyncpg reads in binary: the base is unknown, the DETAIL names the version read.
    assert (error.sqlstate, conflict_detail(error.detail)) == ("40001", unread_detail(1, 2))
    assert table(pg, db) == [["42", "d", "4"], ["43", "c", "2"], ["44", "n44", "2"]]


def test_jdbc_batch_writes_one_row_twice(pg, db, occ_proxy, tmp_path):
    require(shutil.which("javac") and shutil.which("java"), "a JDK is not installed")
    require(JDBC_JAR.exists(), f"{JDBC_JAR} is missing (libpostgresql-jdbc-java)")
    proxy = occ_proxy(rules_yaml())
    compiled = subprocess.run(["javac", "-cp", str(JDBC_JAR), "-d", str(tmp_path), str(HERE / "jdbc" / "OwnBatch.java")],
                              capture_output=True, text=True, timeout=180)
    assert compiled.returncode == 0, compiled.stderr
    url = f"jdbc:postgresql://{proxy.host}:{proxy.port}/{db}?prepareThreshold=1&sslmode=disable"
    java = subprocess.Popen(["java", "-cp", f"{tmp_path}{os.pathsep}{JDBC_JAR}", "OwnBatch", url, "postgres", "postgres"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    while (line := java.stdout.readline().rstrip("\n")) != "ready":
        assert line, java.stderr.read()
        lines.append(line)
    billing_changes_44(pg, db)
    out, err = java.communicate("\n", timeout=120)
    assert java.returncode == 0, err
    assert lines + out.splitlines() == [
        "read: (42,old,1) (43,n43,1) (44,n44,1)",
        "batch: counts [1, 1, 1]",
        "single: counts [1]",
        "read: (42,d,4) (43,c,2) (44,n44,1)",
        "stale batch: BatchUpdateException 40001 next 40001",
    ]
    assert table(pg, db) == [["42", "d", "4"], ["43", "c", "2"], ["44", "n44", "2"]]


def test_node_postgres_queued_writes_of_one_row(pg, db, occ_proxy):
    require(shutil.which("node"), "node is not installed")
    require((NODE_DIR / "node_modules" / "pg").is_dir(), "run `npm ci` in tests/e2e/node first")
    proxy = occ_proxy(rules_yaml())
    script = """
const { Client } = require('pg');
(async () => {
  const c = new Client();
  await c.connect();
  await c.query('SELECT * FROM subscriptions');
  const w = 'UPDATE subscriptions SET notes = $1 WHERE id = $2';
  const done = await Promise.all([['a', 42], ['b', 42], ['c', 43], ['d', 42]].map((v) => c.query(w, v)));
  console.log(done.map((r) => `${r.command} ${r.rowCount}`).join(','));
  await c.end();
})().catch((e) => { console.log(`${e.code} ${e.message}`); process.exit(1); });
"""
    env = dict(os.environ, PGHOST=proxy.host, PGPORT=str(proxy.port), PGUSER="postgres", PGPASSWORD="postgres",
               PGDATABASE=db)
    result = subprocess.run(["node", "-e", script], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "UPDATE 1,UPDATE 1,UPDATE 1,UPDATE 1"), result.stderr
    assert table(pg, db) == AFTER


def test_a_write_after_the_sessions_own_write_in_a_function_or_do_block(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    pg.psql("CREATE FUNCTION touch(k int) RETURNS void LANGUAGE sql AS "
            "$$ UPDATE subscriptions SET status = 'touched' WHERE id = k $$", dbname=db)
    conn = connect(proxy.dsn(db), autocommit=False)
    run(conn, "SELECT * FROM subscriptions WHERE id IN (42, 43)")
    run(conn, "SELECT touch(42)")
    run(conn, "DO $$ BEGIN UPDATE subscriptions SET status = 'done' WHERE id = 43; END $$")
    assert run(conn, WRITE, ("after function", 42)) == ("UPDATE 1", None)
    assert run(conn, WRITE, ("after do", 43)) == ("UPDATE 1", None)
    conn.commit()
    assert rows(pg, db, "SELECT id, status, notes, version FROM subscriptions WHERE id IN (42, 43) ORDER BY id") == [
        ["42", "touched", "after function", "3"], ["43", "done", "after do", "3"]]
    # And once committed, the session's next write of those rows is checked against what it knows.
    assert run(conn, "SELECT notes FROM subscriptions WHERE id = 42") == ("SELECT 1", [("after function",)])
    assert run(conn, WRITE, ("again", 42)) == ("UPDATE 1", None)
    conn.commit()
    assert counters(proxy)["conflicts"] == 0


def test_the_sessions_own_function_write_is_not_a_conflict_in_a_later_transaction(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    pg.psql("CREATE FUNCTION touch(k int) RETURNS void LANGUAGE sql AS "
            "$$ UPDATE subscriptions SET status = 'touched' WHERE id = k $$", dbname=db)
    conn = connect(proxy.dsn(db))  # autocommit: the function's write commits on its own
    run(conn, "SELECT * FROM subscriptions WHERE id IN (42, 43)")
    run(conn, "SELECT touch(42)")
    assert run(conn, WRITE, ("after function", 42)) == ("UPDATE 1", None)
    assert rows(pg, db, "SELECT status, notes, version FROM subscriptions WHERE id = 42") == [
        ["touched", "after function", "3"]]

    # A function write that rolls back leaves what the session had read: the row's version is
    # still the one it read, so the next write passes; another writer's change still conflicts.
    run(conn, "BEGIN")
    run(conn, "SELECT touch(43)")
    run(conn, "ROLLBACK")
    pg.psql("UPDATE subscriptions SET status = 'billing' WHERE id = 43", dbname=db)
    assert fails(conn, WRITE, ("stale", 43)) == conflict_error("43", "1", "2", read_detail("2", ["status"]))
    assert rows(pg, db, "SELECT status, notes, version FROM subscriptions WHERE id = 43") == [["billing", "n43", "2"]]
    assert counters(proxy)["conflicts"] == 1
