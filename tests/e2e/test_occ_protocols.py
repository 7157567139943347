# A conflict behaves as a native server error in every protocol shape: transactions, multi-statement
# Query, psycopg 3 pipelines, asyncpg executemany and JDBC batches (SPEC 3.5).
import asyncio
import os
import pathlib
import shutil
import subprocess

import asyncpg
import psycopg
import psycopg.errors
import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest

from conftest import require
from occ_helpers import (  # noqa: F401 (occ_proxy_fixture provides the occ_proxy fixture)
    SUBSCRIPTIONS,
    conflict_error,
    conflict_message,
    counters,
    occ_proxy_fixture,
    pg_error,
    psycopg3_error,
    requires_proxy,
    rows,
    rules_yaml,
    unread_detail,
    conflict_detail,
    mask_ids,
    with_id,
)

pytestmark = requires_proxy

HERE = pathlib.Path(__file__).resolve().parent
JDBC_SOURCE = HERE / "jdbc" / "OccBatch.java"
JDBC_JAR = pathlib.Path("/usr/share/java/postgresql.jar")

# nextval is not transactional: the probe shows whether a statement ran at all, even if rolled back.
SCHEMA = SUBSCRIPTIONS + "CREATE SEQUENCE probe;"
ENFORCE = rules_yaml(app_managed_version="enforce")
UNCHANGED = [["42", "old", "2"], ["43", "n43", "1"], ["44", "n44", "1"]]


def table(pg, db):
    return rows(pg, db, "SELECT id, notes, version FROM subscriptions ORDER BY id")


def probe_called(pg, db):
    return pg.psql("SELECT is_called FROM probe", dbname=db).strip() == "t"


@pytest.fixture
def stale_42(pg, db, occ_proxy):
    """A proxy in front of subscriptions 42..44, where 42 was changed behind the app's back (version 2)."""
    proxy = occ_proxy(ENFORCE, schema=SCHEMA)
    pg.psql("UPDATE subscriptions SET status = 'paused' WHERE id = 42", dbname=db)
    return proxy


def test_conflict_inside_a_transaction_aborts_it(pg, db, stale_42):
    conn = psycopg2.connect(stale_42.dsn(db))
    cur = conn.cursor()
    cur.execute("UPDATE subscriptions SET notes = 'in tx' WHERE id = 43 AND version = 1")
    assert cur.statusmessage == "UPDATE 1"
    assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_INTRANS

    with pytest.raises(psycopg2.errors.SerializationFailure) as caught:
        cur.execute("UPDATE subscriptions SET notes = 'stale' WHERE id = 42 AND version = 1")
    assert pg_error(caught.value) == conflict_error(42, 1, 2, unread_detail(1, 2))
    assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_INERROR

    with pytest.raises(psycopg2.errors.InFailedSqlTransaction) as caught:
        cur.execute("SELECT nextval('probe')")
    assert caught.value.pgcode == "25P02"
    conn.rollback()
    assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    assert table(pg, db) == UNCHANGED
    assert not probe_called(pg, db)

    # The retry the HINT asks for: re-read, write again, commit.
    cur.execute("SELECT version FROM subscriptions WHERE id = 42")
    assert cur.fetchall() == [(2,)]
    cur.execute("UPDATE subscriptions SET notes = 'retried' WHERE id = 42 AND version = 2")
    assert cur.statusmessage == "UPDATE 1"
    conn.commit()
    assert table(pg, db)[0] == ["42", "retried", "3"]
    conn.close()


def test_multi_statement_query_stops_at_the_conflict(pg, db, stale_42):
    conn = psycopg2.connect(stale_42.dsn(db))
    conn.autocommit = True
    cur = conn.cursor()
    with pytest.raises(psycopg2.errors.SerializationFailure) as caught:
        cur.execute("UPDATE subscriptions SET notes = 'm43' WHERE id = 43 AND version = 1; "
                    "UPDATE subscriptions SET notes = 'm42' WHERE id = 42 AND version = 1; "
                    "SELECT nextval('probe'); "
                    "UPDATE subscriptions SET notes = 'm44' WHERE id = 44")
    assert pg_error(caught.value) == conflict_error(42, 1, 2, unread_detail(1, 2))
    # One Query message is one implicit transaction: the first update is rolled back, the rest never ran.
    assert table(pg, db) == UNCHANGED
    assert not probe_called(pg, db)
    assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    cur.execute("SELECT 'still usable'")
    assert cur.fetchall() == [("still usable",)]
    conn.close()


UPDATE_3 = "UPDATE subscriptions SET notes = %s WHERE id = %s AND version = %s"


def test_psycopg3_pipeline_stops_at_the_conflict(pg, db, stale_42):
    with psycopg.connect(stale_42.dsn(db), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.SerializationFailure) as caught:
            with conn.pipeline() as p:
                conn.execute(UPDATE_3, ("p43", 43, 1))
                p.sync()
                conn.execute(UPDATE_3, ("p42", 42, 1))
                conn.execute("SELECT nextval('probe')")
                conn.execute(UPDATE_3, ("p44", 44, 1))
        assert psycopg3_error(caught.value) == conflict_error(42, 1, 2, unread_detail(1, 2))
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        # Before the Sync: committed. After it, up to the next Sync: not applied, not even run.
        assert table(pg, db) == [["42", "old", "2"], ["43", "p43", "2"], ["44", "n44", "1"]]
        assert not probe_called(pg, db)

        with conn.pipeline():
            fresh = conn.execute(UPDATE_3, ("p42", 42, 2))
            other = conn.execute(UPDATE_3, ("p44", 44, 1))
        assert (fresh.statusmessage, other.statusmessage) == ("UPDATE 1", "UPDATE 1")
    assert table(pg, db) == [["42", "p42", "3"], ["43", "p43", "2"], ["44", "p44", "2"]]
    assert counters(stale_42)["conflicts"] == 1


def test_asyncpg_executemany_with_a_stale_row_applies_nothing(pg, db, stale_42):
    async def scenario():
        conn = await asyncpg.connect(host=stale_42.host, port=stale_42.port, user="postgres",
                                     password="postgres", database=db)
        try:
            with pytest.raises(asyncpg.exceptions.SerializationError) as caught:
                await conn.executemany("UPDATE subscriptions SET notes = $1 WHERE id = $2 AND version = $3",
                                       [("a43", 43, 1), ("a42", 42, 1), ("a44", 44, 1)])
            e = caught.value
            assert (e.sqlstate, e.message, conflict_detail(e.detail), e.schema_name, e.table_name, e.constraint_name) == (
                "40001", conflict_message(42, 1, 2), unread_detail(1, 2), "public", "subscriptions", "occ_version")
            assert table(pg, db) == UNCHANGED
            await conn.executemany("UPDATE subscriptions SET notes = $1 WHERE id = $2 AND version = $3",
                                   [("a43", 43, 1), ("a42", 42, 2), ("a44", 44, 1)])
        finally:
            await conn.close()

    asyncio.run(scenario())
    assert table(pg, db) == [["42", "a42", "3"], ["43", "a43", "2"], ["44", "a44", "2"]]
    assert counters(stale_42)["conflicts"] == 1


def test_jdbc_batch_with_a_stale_row(pg, db, stale_42, tmp_path):
    require(shutil.which("javac") and shutil.which("java"), "a JDK is not installed")
    require(JDBC_JAR.exists(), f"{JDBC_JAR} is missing (libpostgresql-jdbc-java)")
    compiled = subprocess.run(["javac", "-cp", str(JDBC_JAR), "-d", str(tmp_path), str(JDBC_SOURCE)],
                              capture_output=True, text=True, timeout=180)
    assert compiled.returncode == 0, compiled.stderr
    url = f"jdbc:postgresql://{stale_42.host}:{stale_42.port}/{db}?prepareThreshold=1&sslmode=disable"
    result = subprocess.run(["java", "-cp", f"{tmp_path}{os.pathsep}{JDBC_JAR}", "OccBatch", url,
                             "postgres", "postgres"],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    # autocommit: the batch is one implicit transaction, so every entry is reported failed (-3).
    assert mask_ids(result.stdout).splitlines() == [
        "stale batch: BatchUpdateException 40001 counts [-3, -3, -3] next PSQLException 40001 | "
        + conflict_message(42, 1, 2) + " | " + with_id(unread_detail(1, 2)) + " | public.subscriptions | occ_version",
        "rows: (42,old,2) (43,n43,1) (44,n44,1)",
        "fresh batch: counts [1, 1, 1]",
        "rows: (42,batch 42,3) (43,batch 43,2) (44,batch 44,2)",
    ]
    assert counters(stale_42)["conflicts"] == 1
