# Relay: psycopg2 (simple protocol) sees the same rows, tags, errors and notifications through the proxy.
import json
import select
import threading
import time
import urllib.request

import psycopg2
import psycopg2.errors
import pytest


def observe(dsn):
    """A fixed session; returns everything a client could notice, for comparison."""
    seen = []
    conn = psycopg2.connect(dsn)
    cur = conn.cursor()

    def step(name, sql, args=None):
        try:
            cur.execute(sql, args)
            rows = cur.fetchall() if cur.description else None
            columns = [(d.name, d.type_code) for d in cur.description] if cur.description else None
            seen.append((name, cur.statusmessage, cur.rowcount, columns, rows))
        except psycopg2.Error as e:
            seen.append((name, "error", e.pgcode, e.pgerror, e.diag.constraint_name, e.diag.table_name))
            conn.rollback()

    step("create", "CREATE TABLE p2_items (id int PRIMARY KEY, name text UNIQUE, qty int CHECK (qty >= 0))")
    conn.commit()
    step("insert", "INSERT INTO p2_items VALUES (%s, %s, %s), (%s, %s, %s)", (1, "one", 1, 2, "two", 2))
    step("insert returning", "INSERT INTO p2_items VALUES (3, 'three', 3) RETURNING id, name")
    conn.commit()
    step("unique violation", "INSERT INTO p2_items VALUES (%s, %s, %s)", (4, "one", 4))
    step("check violation", "UPDATE p2_items SET qty = -1 WHERE id = 1")
    step("select", "SELECT id, name, qty FROM p2_items WHERE id > %s ORDER BY id", (1,))
    step("update", "UPDATE p2_items SET qty = qty + 10 WHERE id IN %s", ((1, 2),))
    step("delete none", "DELETE FROM p2_items WHERE id = 99")
    conn.rollback()
    step("after rollback", "SELECT id, qty FROM p2_items ORDER BY id")
    step("multi", "SELECT 1 AS a; UPDATE p2_items SET qty = 5 WHERE id = 3; SELECT 'last' AS b")
    conn.commit()
    step("types", "SELECT %s::numeric, %s::bytea, %s::date, %s, %s::jsonb",
         ("12.50", psycopg2.Binary(b"\x00\xff"), "2024-02-29", None, '{"k": [1, "é"]}'))
    conn.commit()
    step("syntax", "SELEC 1")
    step("savepoint", "SAVEPOINT s")
    step("in tx", "UPDATE p2_items SET qty = 7 WHERE id = 1")
    step("rollback to", "ROLLBACK TO SAVEPOINT s")
    step("release", "RELEASE SAVEPOINT s")
    conn.commit()
    step("final", "SELECT id, qty FROM p2_items ORDER BY id")
    step("drop", "DROP TABLE p2_items")
    conn.commit()
    conn.close()
    return seen


def test_queries_errors_and_transactions_match_direct(pg, db, start_proxy):
    proxy = start_proxy(db)
    direct = observe(pg.dsn(db))
    proxied = observe(proxy.dsn(db))
    assert proxied == direct
    by_name = {s[0]: s for s in direct}
    assert by_name["unique violation"][1:3] == ("error", "23505")
    assert by_name["unique violation"][4:] == ("p2_items_name_key", "p2_items")
    assert by_name["check violation"][1:3] == ("error", "23514")
    assert by_name["syntax"][1:3] == ("error", "42601")
    assert by_name["update"][1:3] == ("UPDATE 2", 2)
    assert by_name["delete none"][1:3] == ("DELETE 0", 0)
    assert by_name["after rollback"][4] == [(1, 1), (2, 2), (3, 3)]
    assert by_name["final"][4] == [(1, 1), (2, 2), (3, 5)]


def test_listen_notify_payload_and_pid(db, start_proxy):
    proxy = start_proxy(db)
    listener = psycopg2.connect(proxy.dsn(db))
    listener.autocommit = True
    notifier = psycopg2.connect(proxy.dsn(db))
    notifier.autocommit = True
    try:
        lcur = listener.cursor()
        lcur.execute("LISTEN occ_events")
        ncur = notifier.cursor()
        ncur.execute("SELECT pg_backend_pid()")
        notifier_pid = ncur.fetchone()[0]
        assert notifier.get_backend_pid() == notifier_pid
        ncur.execute("NOTIFY occ_events, 'hello from the proxy'")
        ncur.execute("SELECT pg_notify('occ_events', %s)", ("second ✓",))

        received = []
        deadline = time.monotonic() + 10
        while len(received) < 2 and time.monotonic() < deadline:
            if select.select([listener], [], [], 0.5)[0]:
                listener.poll()
                while listener.notifies:
                    received.append(listener.notifies.pop(0))
        assert [(n.channel, n.payload, n.pid) for n in received] == [
            ("occ_events", "hello from the proxy", notifier_pid),
            ("occ_events", "second ✓", notifier_pid),
        ]
        # The notifying backend can be terminated by the PID the client was given.
        lcur.execute("SELECT pg_terminate_backend(%s)", (notifier_pid,))
        assert lcur.fetchone() == (True,)
    finally:
        listener.close()
        notifier.close()


def test_cancel_pg_sleep(db, start_proxy):
    proxy = start_proxy(db)
    conn = psycopg2.connect(proxy.dsn(db))
    try:
        cur = conn.cursor()
        timer = threading.Timer(1.0, conn.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg2.errors.QueryCanceled) as info:
            cur.execute("SELECT pg_sleep(30)")
        elapsed = time.monotonic() - started
        timer.join()
        assert info.value.pgcode == "57014"
        assert info.value.pgerror.startswith("ERROR:  canceling statement due to user request")
        assert elapsed < 6
        conn.rollback()
        cur.execute("SELECT 'still usable'")
        assert cur.fetchone() == ("still usable",)
    finally:
        conn.close()


def test_a_cancel_sent_after_the_reply_does_not_cancel_the_next_statement(db, start_proxy):
    # Directly the server ignores a cancel for an idle backend. Through a proxy the cancel arrives
    # later and could hit the next statement: the proxy drops it, as the session has nothing in flight.
    proxy = start_proxy(db)
    conn = psycopg2.connect(proxy.dsn(db))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for _ in range(5):
                cur.execute("SELECT 1")
                assert cur.fetchall() == [(1,)]
                conn.cancel()
                cur.execute("SELECT pg_sleep(0.2), 'completed'")
                assert cur.fetchall() == [("", "completed")]
    finally:
        conn.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.stats_port}/stats", timeout=5) as response:
        assert json.loads(response.read())["counters"]["cancels_stale"] == 5
