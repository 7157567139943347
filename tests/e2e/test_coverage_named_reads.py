# Reads through cursors, protocol portals with a row limit and SQL-level prepared statements
# (SPEC 3.9): the client gets exactly the bytes it would get directly, and a stale write after such a
# read is a conflict. No SQL here names a version.
import asyncio
import os
import pathlib
import shutil
import subprocess

import asyncpg
import psycopg
import psycopg2
import pytest

from conftest import require
from occ_helpers import (  # noqa: F401 (occ_proxy_fixture provides the occ_proxy fixture)
    conflict_error,
    conflict_message,
    connect,
    occ_proxy_fixture,
    pg_error,
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

WRITE = "UPDATE subscriptions SET notes = 'agent' WHERE id = 42"
HERE = pathlib.Path(__file__).resolve().parent
JDBC_JAR = pathlib.Path("/usr/share/java/postgresql.jar")


def billing(pg, db):
    pg.psql("UPDATE subscriptions SET status = 'cancelled' WHERE id = 42", dbname=db)


def stale_write_conflicts(pg, db, conn, detail):
    with pytest.raises(psycopg2.errors.SerializationFailure) as caught:
        run(conn, WRITE)
    assert pg_error(caught.value) == conflict_error(42, 1, 2, detail)
    assert rows(pg, db, "SELECT status, notes, version FROM subscriptions WHERE id = 42") == [
        ["cancelled", "old", "2"]]


def script(dsn, statements):
    """(status, description names, rows) of each statement, in one transaction."""
    conn = psycopg2.connect(dsn)
    out = []
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
                out.append((cur.statusmessage, [d.name for d in cur.description] if cur.description else None,
                            cur.fetchall() if cur.description else None))
        conn.commit()
    finally:
        conn.close()
    return out


CURSOR_SCRIPT = [
    "DECLARE c SCROLL CURSOR FOR SELECT notes, status FROM subscriptions ORDER BY id",
    "FETCH NEXT FROM c",
    "FETCH 2 FROM c",
    "FETCH PRIOR FROM c",
    "MOVE ABSOLUTE 0 IN c",
    "FETCH ALL FROM c",
    "FETCH BACKWARD ALL FROM c",
    "FETCH ABSOLUTE 2 FROM c",
    "FETCH RELATIVE 1 FROM c",
    "CLOSE c",
    "DECLARE \"Star\" NO SCROLL CURSOR WITH HOLD FOR SELECT * FROM subscriptions WHERE id >= 43",
    "FETCH FORWARD 1 FROM \"Star\"",
    "FETCH ALL IN \"Star\"",
    "CLOSE ALL",
    "DECLARE c CURSOR FOR SELECT 1 AS one, 'x' AS occ",  # a name reused for an untracked query
    "FETCH ALL FROM c",
]


def test_sql_cursors_in_every_direction_return_what_the_server_sends(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    assert script(proxy.dsn(db), CURSOR_SCRIPT) == script(pg.dsn(db), CURSOR_SCRIPT)


@pytest.mark.parametrize("query, detail", [
    ("SELECT notes FROM subscriptions WHERE id = 42", read_detail(2, [])),
    ("SELECT * FROM subscriptions WHERE id = 42", read_detail(2, ["status"])),
])
def test_a_psycopg2_named_cursor_read_is_tracked(pg, db, occ_proxy, query, detail):
    proxy = occ_proxy(rules_yaml())
    agent = connect(proxy.dsn(db), autocommit=False)
    with agent.cursor(name="agent_cursor") as cur:
        cur.itersize = 1
        cur.execute(query)
        assert len(list(cur)) == 1
    agent.commit()
    agent.autocommit = True
    billing(pg, db)
    stale_write_conflicts(pg, db, agent, detail)


def test_a_with_hold_cursor_fetched_after_commit_is_tracked(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    agent = connect(proxy.dsn(db), autocommit=False)
    run(agent, "DECLARE h CURSOR WITH HOLD FOR SELECT notes, status FROM subscriptions WHERE id = 42")
    agent.commit()
    assert run(agent, "FETCH ALL FROM h") == ("FETCH 1", [("old", "active")])
    run(agent, "CLOSE h")
    agent.commit()
    agent.autocommit = True
    billing(pg, db)
    stale_write_conflicts(pg, db, agent, read_detail(2, ["status"]))


def test_a_psycopg3_server_side_cursor_read_is_tracked(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    sql = "SELECT status, notes FROM subscriptions WHERE id = %s"
    with psycopg.connect(pg.dsn(db)) as direct:
        with direct.cursor(name="c") as cur:
            cur.execute(sql, (42,))
            expected = (cur.fetchmany(1), cur.fetchall())
    with psycopg.connect(proxy.dsn(db)) as agent:
        with agent.cursor(name="c") as cur:
            cur.execute(sql, (42,))
            assert (cur.fetchmany(1), cur.fetchall()) == expected
        agent.commit()
        billing(pg, db)
        with pytest.raises(psycopg.errors.SerializationFailure) as caught:
            agent.execute("UPDATE subscriptions SET notes = %s WHERE id = %s", ("agent", 42))
    assert psycopg3_error(caught.value) == conflict_error(42, 1, 2, read_detail(2, ["status"]))


def test_asyncpg_cursors_with_a_row_limit_are_tracked(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    pg.psql("INSERT INTO subscriptions (id, status, notes) SELECT g, 'active', 'n' || g "
            "FROM generate_series(100, 149) g", dbname=db)
    query = "SELECT id, status FROM subscriptions WHERE id >= $1 ORDER BY id"

    async def read(server):
        conn = await asyncpg.connect(host=server.host, port=server.port, user="postgres", password="postgres",
                                     database=db)
        try:
            async with conn.transaction():
                prefetched = [tuple(r) async for r in conn.cursor(query, 42, prefetch=7)]
                cursor = await conn.cursor(query, 42)
                chunks = [[tuple(r) for r in await cursor.fetch(5)], [tuple(r) for r in await cursor.fetch(100)]]
            return prefetched, chunks, conn
        except BaseException:
            await conn.close()
            raise

    async def scenario():
        direct = await read(pg)
        await direct[2].close()
        through = await read(proxy)
        agent = through[2]
        try:
            assert through[:2] == direct[:2]
            billing(pg, db)
            with pytest.raises(asyncpg.exceptions.SerializationError) as caught:
                await agent.execute("UPDATE subscriptions SET notes = $1 WHERE id = $2", "agent", 42)
            return caught.value
        finally:
            await agent.close()

    error = asyncio.run(scenario())
    assert (error.sqlstate, conflict_detail(error.detail)) == ("40001", unread_detail(1, 2))


def test_a_jdbc_read_with_a_fetch_size_is_tracked(pg, db, occ_proxy, tmp_path):
    require(shutil.which("javac") and shutil.which("java"), "a JDK is not installed")
    require(JDBC_JAR.exists(), f"{JDBC_JAR} is missing (libpostgresql-jdbc-java)")
    proxy = occ_proxy(rules_yaml())
    pg.psql("INSERT INTO subscriptions (id, status, notes) SELECT g, 'active', 'n' || g "
            "FROM generate_series(100, 109) g", dbname=db)
    compiled = subprocess.run(["javac", "-cp", str(JDBC_JAR), "-d", str(tmp_path), str(HERE / "jdbc" / "FetchSize.java")],
                              capture_output=True, text=True, timeout=180)
    assert compiled.returncode == 0, compiled.stderr

    def agent(server, written, change):
        """What the JDBC agent printed; `change` runs between its read and its write of row `written`."""
        url = f"jdbc:postgresql://{server.host}:{server.port}/{db}?prepareThreshold=1&sslmode=disable"
        java = subprocess.Popen(["java", "-cp", f"{tmp_path}{os.pathsep}{JDBC_JAR}", "FetchSize", url, "postgres",
                                 "postgres", str(written)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        lines = []
        while (line := java.stdout.readline().rstrip("\n")) != "ready":
            assert line, java.stderr.read()
            lines.append(line)
        change()
        out, err = java.communicate("\n", timeout=120)
        assert java.returncode == 0, err
        return lines + out.splitlines()

    # Row 42 comes last, in the fifth chunk of three rows: each chunk is an Execute with a row limit.
    expected_read = "read: " + " ".join(f"{i}:active" for i in [*range(109, 99, -1), 44, 43, 42])
    assert agent(pg, 109, lambda: None) == [expected_read, "write: 1"]
    printed = agent(proxy, 42, lambda: billing(pg, db))
    assert printed[:1] == [expected_read]
    sqlstate, message, detail = printed[1].removeprefix("write: ").split(" | ")
    assert (sqlstate, message, conflict_detail(detail)) == ("40001", conflict_message(42, 1, 2),
                                                            read_detail(2, ["status"]))
    assert rows(pg, db, "SELECT status, notes, version FROM subscriptions WHERE id = 42") == [
        ["cancelled", "old", "2"]]


SQL_PREPARE_SCRIPT = [
    "PREPARE star (int) AS SELECT * FROM subscriptions WHERE id = $1",
    "EXECUTE star(42)",
    "EXPLAIN (COSTS OFF) EXECUTE star(42)",
    "CREATE TEMP TABLE copied AS EXECUTE star(43)",
    "SELECT * FROM copied",
    "PREPARE chosen AS SELECT notes FROM subscriptions WHERE id = $1",
    "EXECUTE chosen(44)",
    "EXPLAIN (COSTS OFF) EXECUTE chosen(44)",
    "CREATE TEMP TABLE chosen_copy AS EXECUTE chosen(44)",
    "SELECT * FROM chosen_copy",
    "DEALLOCATE chosen",
    "PREPARE chosen AS SELECT status, id FROM subscriptions WHERE id = $1",
    "EXECUTE chosen(43)",
    "DEALLOCATE star",
    "PREPARE star AS SELECT 2 AS two",
    "EXECUTE star",
    "DEALLOCATE ALL",
]


def test_sql_prepared_selects_return_what_the_server_sends(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    assert script(proxy.dsn(db), SQL_PREPARE_SCRIPT) == script(pg.dsn(db), SQL_PREPARE_SCRIPT)


def test_an_sql_prepared_select_star_read_is_tracked(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    agent = connect(proxy.dsn(db))
    run(agent, "PREPARE r (int) AS SELECT * FROM subscriptions WHERE id = $1")
    assert run(agent, "EXECUTE r(42)") == ("SELECT 1", [(42, 1, "active", "old", 1)])
    billing(pg, db)
    stale_write_conflicts(pg, db, agent, read_detail(2, ["status"]))


def test_an_sql_prepared_select_of_some_columns_is_tracked_through_its_shadow(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    agent = connect(proxy.dsn(db))
    run(agent, "PREPARE r (int) AS SELECT status, notes FROM subscriptions WHERE id = $1")
    assert run(agent, "EXECUTE r(42)") == ("SELECT 1", [("active", "old")])
    billing(pg, db)
    stale_write_conflicts(pg, db, agent, read_detail(2, ["status"]))


def test_errors_about_an_sql_prepared_select_name_the_clients_statement(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    statements = ["PREPARE r (int) AS SELECT notes FROM subscriptions WHERE id = $1", "EXECUTE r(1, 2)",
                  "EXECUTE r('x')", "DEALLOCATE r", "EXECUTE r(42)", "DEALLOCATE r"]

    def errors(dsn):
        conn = connect(dsn)
        out = []
        for sql in statements:
            try:
                run(conn, sql)
                out.append(None)
            except psycopg2.Error as e:
                out.append((e.pgcode, e.diag.message_primary, e.diag.statement_position))
        conn.close()
        return out

    expected = errors(pg.dsn(db))
    assert [e and e[0] for e in expected] == [None, "42601", "22P02", None, "26000", "26000"]
    assert errors(proxy.dsn(db)) == expected


def test_a_deallocate_in_the_extended_protocol_drops_the_shadow_too(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    with psycopg.connect(proxy.dsn(db), autocommit=True) as conn:
        # The PREPARE as a simple Query (psql, psycopg2), its DEALLOCATE as psycopg 3 sends it.
        conn.pgconn.exec_(b"PREPARE r (int) AS SELECT notes FROM subscriptions WHERE id = $1")
        listed = "SELECT name FROM pg_prepared_statements ORDER BY name"
        assert conn.execute(listed).fetchall() == [("occ:p0",), ("r",)]
        conn.execute("DEALLOCATE r")
        assert conn.execute(listed).fetchall() == []


# --- writes through SQL-level prepared statements --------------------------------------------------

def test_an_sql_prepared_write_is_checked_against_the_read(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    agent = connect(proxy.dsn(db))
    run(agent, "PREPARE w (text, int) AS UPDATE subscriptions SET notes = $1 WHERE id = $2")
    run(agent, "PREPARE d AS DELETE FROM subscriptions WHERE id = $1")
    assert run(agent, "SELECT * FROM subscriptions WHERE id IN (42, 43)")[0] == "SELECT 2"
    # The session's own writes move its read on: two in a row are no conflict.
    assert run(agent, "EXECUTE w('first', 42)") == ("UPDATE 1", None)
    assert run(agent, "EXECUTE w('second', 42)") == ("UPDATE 1", None)
    billing(pg, db)
    with pytest.raises(psycopg2.errors.SerializationFailure) as caught:
        run(agent, "EXECUTE w('stale', 42)")
    # Its own writes told the session the version, not the values: the DETAIL names the version.
    assert pg_error(caught.value) == conflict_error(42, 3, 4, unread_detail(3, 4))
    pg.psql("UPDATE subscriptions SET status = 'paused' WHERE id = 43", dbname=db)
    with pytest.raises(psycopg2.errors.SerializationFailure):
        run(agent, "EXECUTE d(43)")
    assert rows(pg, db, "SELECT id, status, notes, version FROM subscriptions WHERE id IN (42, 43) ORDER BY id") == [
        ["42", "cancelled", "second", "4"], ["43", "paused", "n43", "2"]]
    # Re-read, and the same prepared statements go through; DEALLOCATE and a new PREPARE of the name.
    run(agent, "SELECT * FROM subscriptions WHERE id IN (42, 43)")
    assert run(agent, "EXECUTE w('third', 42)") == ("UPDATE 1", None)
    assert run(agent, "EXECUTE d(43)") == ("DELETE 1", None)
    run(agent, "DEALLOCATE w")
    run(agent, "PREPARE w AS SELECT 1")
    assert run(agent, "EXECUTE w") == ("SELECT 1", [(1,)])
    assert rows(pg, db, "SELECT id, notes, version FROM subscriptions WHERE id IN (42, 43)") == [["42", "third", "5"]]


def test_an_sql_prepared_write_of_a_row_never_read_follows_on_unknown_version(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml(on_unknown_version="reject"))
    agent = connect(proxy.dsn(db))
    run(agent, "PREPARE w (text, int) AS UPDATE subscriptions SET notes = $1 WHERE id = $2")
    with pytest.raises(psycopg2.Error) as caught:
        run(agent, "EXECUTE w('x', 44)")
    assert caught.value.pgcode == "55000"
    # In one Query with its PREPARE, and a failed PREPARE of a name that exists changes nothing.
    run(agent, "SELECT * FROM subscriptions WHERE id = 44")
    with pytest.raises(psycopg2.errors.DuplicatePreparedStatement):
        run(agent, "PREPARE w AS SELECT 1")
    assert run(agent, "EXECUTE w('y', 44)") == ("UPDATE 1", None)
    assert run(agent, "DEALLOCATE ALL; PREPARE v (text, int) AS UPDATE subscriptions SET notes = $1 WHERE id = $2; "
                      "EXECUTE v('z', 44)") == ("UPDATE 1", None)
    assert rows(pg, db, "SELECT notes, version FROM subscriptions WHERE id = 44") == [["z", "3"]]
