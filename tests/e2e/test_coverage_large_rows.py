# Tracked rows of any size (SPEC 3.9 "values of any size"): a row larger than the proxy's stream
# threshold reaches every driver as the server sent it, without the proxy's added columns, and is
# still noted, so a stale write after reading it conflicts.
import asyncio

import asyncpg
import psycopg
import psycopg2
import pytest

from occ_helpers import (  # noqa: F401 (occ_proxy_fixture provides the occ_proxy fixture)
    conflict_error,
    connect,
    occ_proxy_fixture,
    pg_error,
    psycopg3_error,
    read_detail,
    requires_proxy,
    rows,
    rules_yaml,
    run,
    unread_detail,
)

pytestmark = requires_proxy

KB = 1024
SIZES = [300 * KB, 3 * KB * KB]

SCHEMA = """
CREATE TABLE subscriptions (
  id int PRIMARY KEY,
  status text NOT NULL,
  notes text,
  doc bytea
);
INSERT INTO subscriptions VALUES (42, 'active', 'old', NULL), (43, 'active', 'n43', NULL), (44, 'active', 'n44', NULL);
"""

# Each read form: chosen columns (the proxy appends key and version), SELECT * (tracked in place),
# several rows, and a bytea value.
READS = {
    "chosen_columns": "SELECT notes, status FROM subscriptions WHERE id = 42",
    "select_star": "SELECT * FROM subscriptions WHERE id = 42",
    "several_rows": "SELECT id, notes FROM subscriptions WHERE id IN (42, 43, 44) ORDER BY id",
    "bytea": "SELECT doc, status FROM subscriptions WHERE id = 42",
}


def fill(pg, db, size):
    """Rows 42..44 with `size` bytes of notes each (distinct text) and a 1 MB document on row 42."""
    pg.psql(f"UPDATE subscriptions SET notes = repeat(md5(id::text), {size} / 32), "
            f"doc = CASE WHEN id = 42 THEN decode(repeat('00ff7f80', {KB * KB // 4}), 'hex') END", dbname=db)


def psycopg2_rows(dsn, sql):
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return [d.name for d in cur.description], cur.statusmessage, [tuple(
                bytes(v) if isinstance(v, memoryview) else v for v in row) for row in cur.fetchall()]
    finally:
        conn.close()


def psycopg3_rows(dsn, sql, binary):
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql, binary=binary)
        return [d.name for d in cur.description], cur.statusmessage, cur.fetchall()


def asyncpg_rows(server, db, sql):
    async def go():
        conn = await asyncpg.connect(host=server.host, port=server.port, user="postgres", password="postgres",
                                     database=db)
        try:
            return [tuple(r.values()) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.mark.parametrize("size", SIZES, ids=["300kB", "3MB"])
def test_large_rows_reach_every_driver_as_directly(pg, db, occ_proxy, size):
    proxy = occ_proxy(rules_yaml(), schema=SCHEMA)
    fill(pg, db, size)
    for name, sql in READS.items():
        direct = psycopg2_rows(pg.dsn(db), sql)
        assert direct[1] == ("SELECT 3" if name == "several_rows" else "SELECT 1")
        assert psycopg2_rows(proxy.dsn(db), sql) == direct, name
        for binary in (False, True):
            assert psycopg3_rows(proxy.dsn(db), sql, binary) == psycopg3_rows(pg.dsn(db), sql, binary), (name, binary)
        assert asyncpg_rows(proxy, db, sql) == asyncpg_rows(pg, db, sql), name


@pytest.mark.parametrize("form", ["chosen_columns", "select_star", "bytea"])
def test_a_stale_write_after_a_large_read_conflicts_in_the_simple_protocol(pg, db, occ_proxy, form):
    proxy = occ_proxy(rules_yaml(), schema=SCHEMA)
    fill(pg, db, 300 * KB)
    agent = connect(proxy.dsn(db))
    billing = connect(proxy.dsn(db))
    assert run(agent, READS[form])[0] == "SELECT 1"
    assert run(billing, "UPDATE subscriptions SET status = 'cancelled' WHERE id = 42") == ("UPDATE 1", None)
    with pytest.raises(psycopg2.errors.SerializationFailure) as caught:
        run(agent, "UPDATE subscriptions SET notes = 'agent' WHERE id = 42")
    # fill() wrote version 2. The base keeps the values it can show: the long notes and the document
    # are left out of it.
    assert pg_error(caught.value) == conflict_error(42, 2, 3, read_detail(3, ["status"]))
    assert rows(pg, db, "SELECT status, length(notes), version FROM subscriptions WHERE id = 42") == [
        ["cancelled", str(300 * KB // 32 * 32), "3"]]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_a_stale_write_after_a_large_read_conflicts_in_the_extended_protocol(pg, db, occ_proxy, binary):
    proxy = occ_proxy(rules_yaml(), schema=SCHEMA)
    fill(pg, db, 3 * KB * KB)
    with psycopg.connect(proxy.dsn(db), autocommit=True) as agent, \
            psycopg.connect(proxy.dsn(db), autocommit=True) as billing:
        [(notes,)] = agent.execute("SELECT notes FROM subscriptions WHERE id = %s", (42,), binary=binary).fetchall()
        assert len(notes) == 3 * KB * KB
        billing.execute("UPDATE subscriptions SET status = 'cancelled' WHERE id = %s", (42,))
        with pytest.raises(psycopg.errors.SerializationFailure) as caught:
            agent.execute("UPDATE subscriptions SET notes = 'agent' WHERE id = %s", (42,))
    # The one column read is too long for the base (and binary values are never in it): the DETAIL
    # can only say the version moved on.
    assert psycopg3_error(caught.value) == conflict_error(42, 2, 3, unread_detail(2, 3))
    assert rows(pg, db, "SELECT status, version FROM subscriptions WHERE id = 42") == [["cancelled", "3"]]
