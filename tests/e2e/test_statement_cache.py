# The statement cache (SPEC 5, issue 18): a rewritten unnamed Parse is prepared once per server
# connection and bound by name, and the client cannot tell: every reply is byte-identical to a
# direct session's, also after DISCARD/DEALLOCATE, a failed Parse, a standalone Describe, several
# unnamed Parses in one pipeline and the eviction of the least recently used statement.
import asyncio
import os
import struct
import subprocess

import asyncpg
import psycopg
import pytest

from occ_helpers import SUBSCRIPTIONS, occ_proxy_fixture, requires_proxy, rows, rules_yaml  # noqa: F401
from test_read_tracking_drivers import SYNC, WireClient, bind, describe, execute, message, parse, query

pytestmark = requires_proxy

RULES = rules_yaml()
READ = "SELECT id, status, notes, version FROM subscriptions WHERE id = $1"
NOTES = "SELECT notes FROM subscriptions WHERE id = $1"
STAR = "SELECT * FROM subscriptions WHERE id = $1"
WRITE = "UPDATE subscriptions SET notes = $1 WHERE id = $2"
RESET = """
TRUNCATE subscriptions;
INSERT INTO subscriptions (id, status, notes) VALUES (42, 'active', 'old'), (43, 'active', 'n43'), (44, 'active', 'n44');
"""


def read(key=b"42"):
    return [parse(READ), bind([key]), execute(), SYNC]


def write(notes, key=b"43"):
    return [parse(WRITE), bind([notes, key]), execute(), SYNC]


def data_rows(received):
    """The text fields of every DataRow."""
    out = []
    for kind, body in received:
        if kind != b"D":
            continue
        count, at, fields = struct.unpack("!h", body[:2])[0], 2, []
        for _ in range(count):
            length = struct.unpack("!i", body[at:at + 4])[0]
            at += 4
            fields.append(None if length < 0 else body[at:at + length].decode())
            at += max(length, 0)
        out.append(fields)
    return out


def kinds(received):
    return "".join(kind.decode() for kind, _ in received)


def cached(client):
    """{statement text: (name, executions)} of the proxy's statements on this session's server connection."""
    found = data_rows(client.exchange(query(
        "SELECT name, statement, generic_plans + custom_plans FROM pg_prepared_statements "
        "WHERE name LIKE 'occ\\_%' ORDER BY name")))
    return {statement: (name, int(executions)) for name, statement, executions in found}


def both(pg, proxy, db, batches):
    """Each batch exchanged in order on one direct session and on one through the proxy (the table reset
    before each); asserts every reply is byte-identical and returns the proxy's open session."""
    results = {}
    for target in (pg, proxy):
        pg.psql(RESET, dbname=db)
        client = WireClient(target.host, target.port, db)
        results[target] = [client.exchange(*batch) for batch in batches]
        if target is pg:
            client.close()
    for i, (direct, proxied) in enumerate(zip(results[pg], results[proxy])):
        assert proxied == direct, f"batch {i}: {batches[i]}"
    return client, results[pg]


@pytest.fixture
def proxy(occ_proxy):
    return occ_proxy(RULES)


def statements_named(found, text_part):
    return {text: entry for text, entry in found.items() if text_part in text}


def test_a_repeated_statement_is_prepared_once_and_bound(pg, db, proxy):
    batches = [read(), write(b"one"), read(), write(b"two"), read(), write(b"three"), read(), write(b"four")]
    client, direct = both(pg, proxy, db, batches)
    assert kinds(direct[0]) == "12DCZ" and kinds(direct[1]) == "12CZ"
    assert data_rows(direct[6]) == [["42", "active", "old", "1"]]
    found = cached(client)
    # One server statement per text, rewritten; the first execution ran as the client's unnamed one.
    assert len(found) == 2, found
    assert sorted(executions for _, executions in found.values()) == [3, 3]
    assert all(text not in (READ, WRITE) for text in found)
    assert rows(pg, db, "SELECT notes, version FROM subscriptions WHERE id = 43") == [["four", "5"]]
    client.close()


def test_several_unnamed_parses_in_one_pipeline(pg, db, proxy):
    """PgCat #875: each Bind must bind the statement of the Parse before it, cached or not."""
    pipeline = [parse(READ), bind([b"42"]), execute(),
                parse(NOTES), bind([b"44"]), execute(),
                parse(WRITE), bind([b"p", b"43"]), execute(),
                parse(READ), bind([b"43"]), execute(),
                parse(NOTES), bind([b"42"]), execute(), SYNC]
    client, direct = both(pg, proxy, db, [pipeline, pipeline, read(b"43"), pipeline])
    assert kinds(direct[1]) == "12DC12DC12C12DC12DCZ"
    assert data_rows(direct[1]) == [["42", "active", "old", "1"], ["n44"], ["43", "active", "p", "3"], ["old"]]
    assert len(cached(client)) == 3
    client.close()


@pytest.mark.parametrize("command", ["DISCARD ALL", "DEALLOCATE ALL"])
def test_the_clients_discard_or_deallocate_drops_the_cache(pg, db, proxy, command):
    """PgCat #788: after the server dropped its statements the proxy must not bind them, in the simple
    protocol, in the extended protocol, and in a pipeline that goes on after the command."""
    in_pipeline = [parse(command), bind(), execute(), parse(READ), bind([b"42"]), execute(), SYNC]
    client, direct = both(pg, proxy, db, [
        read(), read(), [query(command)], read(), read(),
        [parse(command), bind(), execute(), SYNC], read(),
        in_pipeline, read(), read()])
    assert kinds(direct[2]) == "CZ" and kinds(direct[7]) == "12C12DCZ"
    found = cached(client)
    assert len(found) == 1, found
    # Prepared again under a name never used before.
    assert int(next(iter(found.values()))[0].removeprefix("occ_")) >= 3
    client.close()


def test_discard_plans_keeps_the_statements(pg, db, proxy):
    client, _ = both(pg, proxy, db, [read(), read(), [query("DISCARD PLANS")], read(), read()])
    assert [executions for _, executions in cached(client).values()] == [3]
    client.close()


def test_the_unnamed_statement_reused_for_other_text(pg, db, proxy):
    """PgDog #1331: a name (here the unnamed statement's) reused for other SQL binds the new text, and
    the proxy never gives one of its names to another text."""
    batches = []
    for key in (b"42", b"43", b"44"):
        batches += [[parse(READ), bind([key]), execute(), SYNC], [parse(NOTES), bind([key]), execute(), SYNC],
                    [parse(STAR), bind([key]), execute(), SYNC]]
    client, direct = both(pg, proxy, db, batches)
    assert data_rows(direct[7]) == [["n44"]]
    found = cached(client)
    assert len({name for name, _ in found.values()}) == 3
    assert sorted(executions for _, executions in found.values()) == [2, 2, 2]
    client.close()


def test_a_standalone_describe_of_the_unnamed_statement(pg, db, proxy):
    """Supavisor #1174: Describe of the unnamed statement in a batch of its own, before its Bind."""
    rounds = [[parse(WRITE), SYNC], [describe(b"S"), SYNC], [bind([b"d", b"42"]), execute(), SYNC],
              [parse(READ), SYNC], [describe(b"S"), SYNC], [bind([b"42"]), execute(), SYNC]]
    client, direct = both(pg, proxy, db, rounds * 3)
    assert kinds(direct[1]) == "tnZ" and kinds(direct[4]) == "tTZ"
    # ParameterDescription names the client's parameters only.
    assert direct[1][0][1] == struct.pack("!h2i", 2, 25, 23)
    assert sorted(executions for _, executions in cached(client).values()) == [2, 2]
    client.close()


def test_a_failed_parse_is_not_cached(pg, db, proxy):
    bad = "SELECT nosuch FROM subscriptions WHERE id = $1"
    failing = [[parse(bad), SYNC], [bind([b"42"]), execute(), SYNC], [parse(bad), bind([b"42"]), execute(), SYNC]]
    client, direct = both(pg, proxy, db, failing + [read()] + failing + [read(), read()])
    assert kinds(direct[0]) == "EZ" and b"\0P8\0" in direct[0][0][1]
    assert kinds(direct[1]) == "EZ" and b"C26000" in direct[1][0][1]
    assert list(cached(client)) and all("nosuch" not in text for text in cached(client))
    client.close()


def test_a_failed_transaction_block_answers_as_directly(pg, db, proxy):
    """In a failed transaction block the client's Parse fails: the proxy must not answer it from the cache,
    nor when the failure is in an earlier batch of the same pipeline."""
    failing_then_read = [parse("SELECT 1 / 0"), bind(), execute(), SYNC, *read()]
    client, direct = both(pg, proxy, db, [
        read(), read(), [query("BEGIN")], [query("SELECT 1 / 0")], read(), read(), [query("ROLLBACK")],
        [query("BEGIN")], failing_then_read, read(), [query("ROLLBACK")], read()])
    assert kinds(direct[4]) == "EZ" and b"C25P02" in direct[4][0][1]
    assert kinds(direct[8]) == "1EZEZ"
    client.close()


def test_statements_sent_after_the_servers_error_before_the_sync(pg, db, proxy):
    """A client that reads an error mid-pipeline and sends more before its Sync: the server skips them all,
    and what the proxy meant to prepare there must not count as prepared."""
    replies = {}
    for target in (pg, proxy):
        pg.psql(RESET, dbname=db)
        client = WireClient(target.host, target.port, db)
        got = [client.exchange(*read()), client.exchange(*read(b"43"))]
        client.sock.sendall(parse("SELECT 1 / $1::int") + bind([b"0"]) + execute() + message(b"H"))
        got.append([client._recv_message(), client._recv_message()])
        got.append(client.exchange(parse(NOTES), bind([b"42"]), execute(), parse(READ), bind([b"42"]), execute(), SYNC))
        got += [client.exchange(*[parse(NOTES), bind([b"44"]), execute(), SYNC]), client.exchange(*read())]
        replies[target] = got
        if target is pg:
            client.close()
    assert replies[proxy] == replies[pg]
    assert kinds(replies[pg][2]) == "1E" and kinds(replies[pg][3]) == "Z"
    assert data_rows(replies[pg][4]) == [["n44"]]
    assert sorted(executions for _, executions in cached(client).values()) == [0, 2]
    client.close()


def test_a_changed_result_type_is_reported_once_and_prepared_again(pg, db, proxy):
    """The server refuses a cached statement whose result type changed (0A000). The proxy does not retry:
    the client sees exactly the server's error, and the next execution prepares the statement afresh."""
    star = [parse(STAR), bind([b"42"]), execute(), SYNC]
    pg.psql(RESET, dbname=db)
    client = WireClient(proxy.host, proxy.port, db)
    assert kinds(client.exchange(*star)) == "12DCZ"
    assert kinds(client.exchange(*star)) == "12DCZ"
    (old_name, _), = cached(client).values()
    pg.psql("ALTER TABLE subscriptions ADD COLUMN extra int", dbname=db)
    refused = client.exchange(*star)
    assert kinds(refused) == "1EZ"
    fields = dict((f[:1], f[1:]) for f in refused[1][1].split(b"\0") if f)
    assert (fields[b"C"], fields[b"M"]) == (b"0A000", b"cached plan must not change result type")
    again = client.exchange(*star)
    direct = WireClient(pg.host, pg.port, db)
    assert again == direct.exchange(*star)
    direct.close()
    (new_name, _), = cached(client).values()
    assert new_name != old_name
    client.close()


def test_eviction_keeps_the_bound(pg, db, proxy):
    pg.psql(RESET, dbname=db)
    client = WireClient(proxy.host, proxy.port, db)
    texts = [f"SELECT notes FROM subscriptions WHERE id = $1 AND {i} = {i}" for i in range(300)]
    for text in texts + texts[:5]:
        assert data_rows(client.exchange(parse(text), bind([b"42"]), execute(), SYNC)) == [["old"]]
    found = cached(client)
    assert len(found) == 256
    # The first texts were evicted (closed on the server) and prepared again under new names.
    assert max(int(name.removeprefix("occ_")) for name, _ in found.values()) == 305
    client.close()


# --- real drivers --------------------------------------------------------------------------------

def psycopg_rounds(dsn):
    with psycopg.connect(dsn, prepare_threshold=None, autocommit=True) as conn:
        out = []
        for i in range(6):
            out.append(conn.execute("SELECT id, notes, version FROM subscriptions WHERE id = %s", (42,)).fetchall())
            out.append(conn.execute("UPDATE subscriptions SET notes = %s WHERE id = %s", (f"n{i}", 42)).rowcount)
        with conn.pipeline():
            cursors = [conn.execute("SELECT notes FROM subscriptions WHERE id = %s", (k,)) for k in (42, 43, 44)]
        out += [c.fetchall() for c in cursors]
        found = conn.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements "
                             "WHERE name LIKE 'occ\\_%'").fetchall()
    return out, sorted(executions for _, executions in found)


def test_psycopg3_unnamed_statements(pg, db, proxy):
    pg.psql(RESET, dbname=db)
    direct, _ = psycopg_rounds(pg.dsn(db))
    pg.psql(RESET, dbname=db)
    proxied, executions = psycopg_rounds(proxy.dsn(db))
    assert proxied == direct
    assert direct[-1] == [("n44",)] and direct[-4] == 1
    assert executions == [2, 5, 5]


async def asyncpg_rounds(target, db):
    conn = await asyncpg.connect(host=target.host, port=target.port, user="postgres", password="postgres",
                                 database=db, statement_cache_size=0)
    out = []
    for i in range(5):
        out.append([tuple(r) for r in await conn.fetch("SELECT id, notes, version FROM subscriptions WHERE id = $1", 42)])
        out.append(await conn.execute("UPDATE subscriptions SET notes = $1 WHERE id = $2", f"a{i}", 42))
    found = await conn.fetch("SELECT generic_plans + custom_plans FROM pg_prepared_statements WHERE name LIKE 'occ\\_%'")
    await conn.close()
    return out, sorted(r[0] for r in found)


def test_asyncpg_unnamed_statements(pg, db, proxy):
    pg.psql(RESET, dbname=db)
    direct, _ = asyncio.run(asyncpg_rounds(pg, db))
    pg.psql(RESET, dbname=db)
    proxied, executions = asyncio.run(asyncpg_rounds(proxy, db))
    assert proxied == direct
    assert executions == [4, 4]


def test_pgbench_extended_read_then_update(pg, db, proxy, tmp_path):
    pg.psql(RESET, dbname=db)
    script = tmp_path / "read_update.sql"
    script.write_text("\\set id random(42, 44)\n"
                      "SELECT notes, version FROM subscriptions WHERE id = :id;\n"
                      "UPDATE subscriptions SET plan_id = plan_id + 1 WHERE id = :id;\n")
    run = subprocess.run(
        ["pgbench", "-h", proxy.host, "-p", str(proxy.port), "-U", "postgres", "-n", "-M", "extended",
         "-t", "150", "-f", str(script), db],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PGPASSWORD="postgres"))
    assert run.returncode == 0, run.stderr
    assert "number of failed transactions: 0" in run.stdout
    assert rows(pg, db, "SELECT sum(plan_id - 1), sum(version - 1) FROM subscriptions") == [["150", "150"]]
