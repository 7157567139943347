# Relay: extended-protocol drivers (psycopg 3 pipeline mode, asyncpg) behave the same through the proxy.
import asyncio
import time

import asyncpg
import psycopg
import psycopg.errors
import pytest


def observe_psycopg(dsn):
    seen = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE pipe_items (id int PRIMARY KEY, name text NOT NULL)")

        with conn.pipeline():
            cursors = [
                conn.execute("INSERT INTO pipe_items VALUES (%s, %s) RETURNING id, name", (i, f"n{i}"))
                for i in range(1, 6)
            ]
            cursors.append(conn.execute("SELECT count(*) FROM pipe_items WHERE id > %s", (2,)))
            cursors.append(conn.execute("UPDATE pipe_items SET name = upper(name) WHERE id <= %s", (2,)))
        seen.append(("pipeline", [(c.statusmessage, c.fetchall() if c.description else None) for c in cursors]))

        with conn.pipeline(), conn.cursor() as cur:
            cur.executemany("INSERT INTO pipe_items VALUES (%s, %s)", [(i, f"many{i}") for i in range(10, 20)])
            seen.append(("executemany", cur.rowcount))

        try:
            with conn.pipeline():
                conn.execute("INSERT INTO pipe_items VALUES (%s, %s)", (30, "before error"))
                conn.execute("INSERT INTO pipe_items VALUES (%s, %s)", (1, "duplicate"))
                conn.execute("INSERT INTO pipe_items VALUES (%s, %s)", (31, "after error"))
            seen.append(("pipeline error", "none"))
        except psycopg.Error as e:
            seen.append(("pipeline error", type(e).__name__, e.sqlstate, e.diag.constraint_name))

        with conn.transaction():
            with conn.pipeline() as p:
                conn.execute("INSERT INTO pipe_items VALUES (%s, %s)", (40, "in tx"))
                p.sync()
                conn.execute("SELECT 1 / %s", (1,))
        seen.append(("transaction", conn.info.transaction_status.name))

        seen.append(("prepared", [
            conn.execute("SELECT name FROM pipe_items WHERE id = %s", (i,), prepare=True).fetchone()
            for i in (1, 3, 5)
        ]))
        seen.append(("rows", conn.execute("SELECT id, name FROM pipe_items ORDER BY id").fetchall()))
        conn.execute("DROP TABLE pipe_items")
    return seen


def test_psycopg3_pipeline_matches_direct(pg, db, start_proxy):
    proxy = start_proxy(db)
    direct = observe_psycopg(pg.dsn(db))
    proxied = observe_psycopg(proxy.dsn(db))
    assert proxied == direct
    by_name = {s[0]: s[1:] for s in direct}
    assert by_name["pipeline"][0][:5] == [("INSERT 0 1", [(i, f"n{i}")]) for i in range(1, 6)]
    assert by_name["pipeline"][0][5:] == [("SELECT 1", [(3,)]), ("UPDATE 2", None)]
    assert by_name["pipeline error"] == ("UniqueViolation", "23505", "pipe_items_pkey")
    assert by_name["prepared"] == ([("N1",), ("n3",), ("n5",)],)
    ids = [row[0] for row in by_name["rows"][0]]
    assert ids == [1, 2, 3, 4, 5, *range(10, 20), 40]


async def observe_asyncpg(target, dbname):
    seen = []
    conn = await asyncpg.connect(host=target.host, port=target.port, user="postgres",
                                 password="postgres", database=dbname)
    try:
        seen.append(("create", await conn.execute(
            "CREATE TABLE apg_items (id int PRIMARY KEY, name text NOT NULL, price numeric, tags text[])")))
        insert = await conn.prepare("INSERT INTO apg_items VALUES ($1, $2, $3, $4) RETURNING id")
        seen.append(("prepared insert", [await insert.fetchval(i, f"item {i}", i * 1.5, ["a", str(i)])
                                         for i in range(1, 4)]))
        seen.append(("prepared params", [(str(t), t.name) for t in insert.get_parameters()]))
        await conn.executemany("INSERT INTO apg_items (id, name) VALUES ($1, $2)",
                               [(i, f"many {i}") for i in range(10, 30)])
        try:
            await conn.executemany("INSERT INTO apg_items (id, name) VALUES ($1, $2)",
                                   [(50, "ok"), (51, "ok"), (10, "duplicate"), (52, "never")])
            seen.append(("executemany error", "none"))
        except asyncpg.PostgresError as e:
            seen.append(("executemany error", e.sqlstate, e.constraint_name, e.detail))
        select = await conn.prepare("SELECT id, name, price, tags FROM apg_items WHERE id < $1 ORDER BY id")
        seen.append(("select", [tuple(r) for r in await select.fetch(12)]))
        seen.append(("cursor", [r["id"] async for r in _cursor(conn)]))
        try:
            await conn.fetch("SELECT $1::int / 0", 1)
        except asyncpg.PostgresError as e:
            seen.append(("division", e.sqlstate, str(e)))
        async with conn.transaction():
            await conn.execute("UPDATE apg_items SET name = $1 WHERE id = $2", "renamed", 1)
        try:
            async with conn.transaction():
                await conn.execute("UPDATE apg_items SET name = $1 WHERE id = $2", "lost", 2)
                await conn.execute("SELECT 1 / 0")
        except asyncpg.PostgresError as e:
            seen.append(("tx error", e.sqlstate))
        seen.append(("after", [tuple(r) for r in await conn.fetch(
            "SELECT id, name FROM apg_items WHERE id <= 3 ORDER BY id")]))
        seen.append(("count", await conn.fetchval("SELECT count(*) FROM apg_items")))
        seen.append(("drop", await conn.execute("DROP TABLE apg_items")))
    finally:
        await conn.close()
    return seen


async def _cursor(conn):
    async with conn.transaction():
        async for record in conn.cursor("SELECT id FROM apg_items WHERE id >= $1 ORDER BY id", 25, prefetch=2):
            yield record


def test_asyncpg_matches_direct(pg, db, start_proxy):
    proxy = start_proxy(db)
    direct = asyncio.run(observe_asyncpg(pg, db))
    proxied = asyncio.run(observe_asyncpg(proxy, db))
    assert proxied == direct
    by_name = {s[0]: s[1:] for s in direct}
    assert by_name["prepared insert"] == ([1, 2, 3],)
    assert by_name["executemany error"][:2] == ("23505", "apg_items_pkey")
    assert by_name["cursor"] == ([25, 26, 27, 28, 29],)
    assert by_name["division"][0] == "22012"
    assert by_name["tx error"] == ("22012",)
    assert by_name["after"] == ([(1, "renamed"), (2, "item 2"), (3, "item 3")],)
    assert by_name["count"] == (23,)


def test_asyncpg_cancel_by_timeout(db, start_proxy):
    proxy = start_proxy(db)

    async def scenario():
        conn = await asyncpg.connect(host=proxy.host, port=proxy.port, user="postgres",
                                     password="postgres", database=db)
        try:
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await conn.fetch("SELECT pg_sleep(30)", timeout=1)
            # asyncpg sent a CancelRequest; the server must have stopped the sleep, not waited it out.
            assert await conn.fetchval("SELECT 'after cancel'") == "after cancel"
            return time.monotonic() - started
        finally:
            await conn.close()

    assert asyncio.run(scenario()) < 6
