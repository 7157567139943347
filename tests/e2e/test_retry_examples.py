# The README's retry loops (examples/retry/) against a racing writer through the proxy: a writer that
# changes the row while the example thinks makes it re-read and retry, at most 3 attempts.
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, require
from occ_helpers import (  # noqa: F401 (occ_proxy_fixture provides the occ_proxy fixture)
    mask_ids,
    occ_proxy_fixture,
    read_detail,
    requires_proxy,
    rows,
    rules_yaml,
    with_id,
)

pytestmark = requires_proxy

EXAMPLES = REPO / "examples" / "retry"
NODE_MODULES = REPO / "tests" / "e2e" / "node" / "node_modules"
JDBC_JAR = pathlib.Path("/usr/share/java/postgresql.jar")

ACCOUNTS = """
CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);
INSERT INTO accounts VALUES (1, 100);
"""
THINK = "0.5"  # seconds between the example's read and its write: the racing writer writes then
RACE_AMOUNT = 1000
DEPOSIT = 10


def command(driver, proxy, db):
    if driver == "psycopg2":
        return [sys.executable, str(EXAMPLES / "retry_psycopg2.py"), proxy.dsn(db)], {}
    if driver == "node-postgres":
        require(shutil.which("node"), "node is not installed")
        require((NODE_MODULES / "pg").is_dir(), "run `npm ci` in tests/e2e/node first")
        url = f"postgres://postgres:postgres@{proxy.host}:{proxy.port}/{db}"
        return ["node", str(EXAMPLES / "retry_node.js"), url], {"NODE_PATH": str(NODE_MODULES)}
    require(shutil.which("java"), "a JDK is not installed")
    require(JDBC_JAR.exists(), f"{JDBC_JAR} is missing (libpostgresql-jdbc-java)")
    url = f"jdbc:postgresql://{proxy.host}:{proxy.port}/{db}?user=postgres&password=postgres"
    return ["java", "-cp", str(JDBC_JAR), str(EXAMPLES / "RetryJdbc.java"), url], {}


def run_racing(pg, db, argv, env, races):
    """Runs the example; whenever it has read the balance in one of its first `races` attempts, a
    direct write to the server changes the row before the example writes. Returns (status, stdout, stderr)."""
    process = subprocess.Popen(argv + ["1", str(DEPOSIT), THINK], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, **env})
    out = []
    raced = 0
    for line in process.stdout:
        out.append(line.rstrip("\n"))
        if line.startswith("read balance") and raced < races:
            pg.psql(f"UPDATE accounts SET balance = balance + {RACE_AMOUNT} WHERE id = 1", dbname=db)
            raced += 1
    stderr = process.stderr.read()
    return process.wait(timeout=60), out, stderr


DRIVERS = ["psycopg2", "node-postgres", "JDBC"]


@pytest.mark.parametrize("driver", DRIVERS)
def test_two_racing_writes_then_the_third_attempt_saves(pg, db, occ_proxy, driver):
    proxy = occ_proxy(rules_yaml(["public.accounts"]), schema=ACCOUNTS)
    argv, env = command(driver, proxy, db)
    status, out, stderr = run_racing(pg, db, argv, env, races=2)
    assert (status, stderr) == (0, ""), out
    # The DETAIL ends with the conflict's id (random: masked), which GET /conflicts/{id} returns.
    assert mask_ids(out) == [
        "attempt 1",
        "read balance 100",
        f"conflict: {with_id(read_detail(2, ['balance']))}",
        "attempt 2",
        "read balance 1100",
        f"conflict: {with_id(read_detail(3, ['balance']))}",
        "attempt 3",
        "read balance 2100",
        "saved: balance is now 2110",
    ]
    # Neither the racing writes nor the deposit were lost.
    assert rows(pg, db, "SELECT balance, version FROM accounts WHERE id = 1") == [["2110", "4"]]


@pytest.mark.parametrize("driver", DRIVERS)
def test_when_retries_run_out_the_user_is_told_nothing_was_saved(pg, db, occ_proxy, driver):
    proxy = occ_proxy(rules_yaml(["public.accounts"]), schema=ACCOUNTS)
    argv, env = command(driver, proxy, db)
    status, out, stderr = run_racing(pg, db, argv, env, races=3)
    assert mask_ids(out) == [
        "attempt 1", "read balance 100", f"conflict: {with_id(read_detail(2, ['balance']))}",
        "attempt 2", "read balance 1100", f"conflict: {with_id(read_detail(3, ['balance']))}",
        "attempt 3", "read balance 2100", f"conflict: {with_id(read_detail(4, ['balance']))}",
    ]
    assert (status, mask_ids(stderr)) == (1, (
        f"Your deposit of {DEPOSIT} to account 1 was not saved: the account was changed by someone else 3 times "
        f"while we were saving it. {with_id(read_detail(4, ['balance']))} Please look at the current balance and try "
        "again.\n"))
    assert rows(pg, db, "SELECT balance, version FROM accounts WHERE id = 1") == [["3100", "4"]]
