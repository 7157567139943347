# Reads and writes through views of a protected table (SPEC 3.9): the proxy finds such views in the
# catalog at start and at reload, tracks rows read through them as the table's rows (the client
# gets the bytes it would get directly) and checks writes through the auto-updatable ones against
# the version read. No SQL here names a version.
import asyncio

import asyncpg
import psycopg
import psycopg2
import pytest

from occ_helpers import (  # noqa: F401 (occ_proxy_fixture provides the occ_proxy fixture)
    SUBSCRIPTIONS,
    conflict_error,
    connect,
    counters,
    fails,
    occ_proxy_fixture,
    pg_error,
    psycopg3_error,
    read_detail,
    requires_proxy,
    rows,
    rules_yaml,
    run,
    unread_detail,
    wait_for,
    wait_for_audit,
)

pytestmark = requires_proxy

# The version column is there before migrate runs, so that the views can show it.
VIEWS = """
ALTER TABLE subscriptions ADD COLUMN version bigint NOT NULL DEFAULT 1;
CREATE VIEW current_subscriptions AS SELECT id, status, notes, version FROM subscriptions WHERE id < 100;
CREATE VIEW vip AS SELECT * FROM current_subscriptions WHERE id >= 42;
CREATE VIEW subscription_notes AS SELECT id, notes FROM subscriptions;
CREATE VIEW plan_sizes AS SELECT plan_id, count(*) AS n FROM subscriptions GROUP BY plan_id;
"""

ROW_42 = "SELECT status, notes, version FROM subscriptions WHERE id = 42"


def start(occ_proxy, **defaults):
    return occ_proxy(rules_yaml(**defaults), schema=SUBSCRIPTIONS + VIEWS)


def billing(pg, db):
    pg.psql("UPDATE subscriptions SET status = 'cancelled' WHERE id = 42", dbname=db)


def result(dsn, sql):
    """RowDescription names and types, command tag and rows, as psycopg2 gets them."""
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return [(d.name, d.type_code, d.table_oid, d.table_column) for d in cur.description], \
                cur.statusmessage, cur.fetchall()
    finally:
        conn.close()


READS = [
    ("SELECT * FROM current_subscriptions WHERE id = 42", ["status"]),
    ("SELECT notes FROM current_subscriptions WHERE id = 42", []),
    ("SELECT v.status, v.notes FROM public.current_subscriptions v WHERE v.id = 42", ["status"]),
    ("SELECT * FROM vip WHERE id = 42", ["status"]),
    ("WITH s AS (SELECT * FROM vip WHERE id = 42) SELECT * FROM s", ["status"]),
]


@pytest.mark.parametrize("sql, changed", READS)
def test_a_read_through_a_view_is_tracked_and_returns_what_the_server_sends(pg, db, occ_proxy, sql, changed):
    proxy = start(occ_proxy)
    assert result(proxy.dsn(db), sql) == result(pg.dsn(db), sql)
    agent = connect(proxy.dsn(db))
    assert run(agent, sql)[0] == "SELECT 1"
    billing(pg, db)
    with pytest.raises(psycopg2.errors.SerializationFailure) as caught:
        run(agent, "UPDATE subscriptions SET notes = 'agent' WHERE id = 42")
    assert pg_error(caught.value) == conflict_error(42, 1, 2, read_detail(2, changed))
    assert rows(pg, db, ROW_42) == [["cancelled", "old", "2"]]
    assert counters(proxy)["reads_untracked"] == 0


@pytest.mark.parametrize("write", [
    "UPDATE current_subscriptions SET notes = 'agent' WHERE id = 42",
    "UPDATE vip SET notes = 'agent' WHERE id = 42",
    "UPDATE current_subscriptions SET notes = 'agent' WHERE id IN (42, 43)",
    "DELETE FROM current_subscriptions WHERE id = 42",
])
def test_a_stale_write_through_a_view_conflicts_naming_the_table(pg, db, occ_proxy, write):
    proxy = start(occ_proxy)
    agent = connect(proxy.dsn(db))
    assert run(agent, "SELECT notes FROM subscriptions WHERE id IN (42, 43)")[0] == "SELECT 2"
    billing(pg, db)
    with pytest.raises(psycopg2.errors.SerializationFailure) as caught:
        run(agent, write)
    assert pg_error(caught.value) == conflict_error(42, 1, 2, read_detail(2, []))
    assert rows(pg, db, "SELECT id, status, notes, version FROM subscriptions WHERE id IN (42, 43) ORDER BY id") == [
        ["42", "cancelled", "old", "2"], ["43", "active", "n43", "1"]]


def test_a_write_through_a_view_after_a_fresh_read_passes_and_the_session_follows_it(pg, db, occ_proxy):
    proxy = start(occ_proxy)
    agent = connect(proxy.dsn(db))
    assert run(agent, "SELECT * FROM vip WHERE id = 42") == ("SELECT 1", [(42, "active", "old", 1)])
    assert run(agent, "UPDATE vip SET notes = 'one' WHERE id = 42") == ("UPDATE 1", None)
    assert run(agent, "UPDATE current_subscriptions SET notes = 'two' WHERE id = 42 RETURNING notes") == (
        "UPDATE 1", [("two",)])
    assert run(agent, "UPDATE subscriptions SET notes = 'three' WHERE id = 42") == ("UPDATE 1", None)
    assert rows(pg, db, ROW_42) == [["active", "three", "4"]]
    billing(pg, db)
    with pytest.raises(psycopg2.errors.SerializationFailure) as caught:
        run(agent, "UPDATE vip SET notes = 'four' WHERE id = 42")
    # After its own writes the session knows the row's version, not its values.
    assert pg_error(caught.value) == conflict_error(42, 4, 5, unread_detail(4, 5))
    assert rows(pg, db, ROW_42) == [["cancelled", "three", "5"]]


def test_the_extended_protocol_reads_and_writes_through_a_view(pg, db, occ_proxy):
    proxy = start(occ_proxy)
    sql = "SELECT status, notes FROM current_subscriptions WHERE id = %s"
    with psycopg.connect(pg.dsn(db)) as direct:
        expected = direct.execute(sql, (42,)).fetchall()
    with psycopg.connect(proxy.dsn(db), autocommit=True) as agent:
        assert agent.execute(sql, (42,)).fetchall() == expected == [("active", "old")]
        billing(pg, db)
        with pytest.raises(psycopg.errors.SerializationFailure) as caught:
            agent.execute("UPDATE current_subscriptions SET notes = %s WHERE id = %s", ("agent", 42))
    assert psycopg3_error(caught.value) == conflict_error(42, 1, 2, read_detail(2, ["status"]))
    assert rows(pg, db, ROW_42) == [["cancelled", "old", "2"]]


def test_own_writes_through_a_view_twice_in_one_transaction_are_no_conflict(pg, db, occ_proxy):
    proxy = start(occ_proxy)
    agent = connect(proxy.dsn(db), autocommit=False)
    run(agent, "SELECT * FROM current_subscriptions WHERE id = 42")
    assert run(agent, "UPDATE current_subscriptions SET notes = 'one' WHERE id = 42") == ("UPDATE 1", None)
    assert run(agent, "UPDATE vip SET notes = 'two' WHERE id = 42") == ("UPDATE 1", None)
    agent.commit()
    assert rows(pg, db, ROW_42) == [["active", "two", "3"]]

    # A pipelined batch: each write was checked against the read at its Bind (version 3); the
    # second finds the version its own first write made, which the server recognises by the
    # table row's xmin (the view has none).
    with psycopg.connect(proxy.dsn(db)) as batch:
        batch.execute("SELECT * FROM vip WHERE id = 42").fetchall()
        with batch.cursor() as cur:
            cur.executemany("UPDATE vip SET notes = %s WHERE id = %s", [("three", 42), ("four", 42)])
        batch.commit()
    assert rows(pg, db, ROW_42) == [["active", "four", "5"]]

    async def asyncpg_batch():
        conn = await asyncpg.connect(host=proxy.host, port=proxy.port, user="postgres", password="postgres",
                                     database=db)
        try:
            await conn.fetch("SELECT * FROM current_subscriptions WHERE id = 42")
            async with conn.transaction():
                await conn.executemany("UPDATE current_subscriptions SET notes = $1 WHERE id = $2",
                                       [("five", 42), ("six", 42)])
        finally:
            await conn.close()

    asyncio.run(asyncpg_batch())
    assert rows(pg, db, ROW_42) == [["active", "six", "7"]]


def test_a_batch_with_a_really_stale_write_through_a_view_fails_whole(pg, db, occ_proxy):
    proxy = start(occ_proxy)
    with psycopg.connect(proxy.dsn(db)) as batch:
        batch.execute("SELECT * FROM current_subscriptions WHERE id IN (42, 43)").fetchall()
        pg.psql("UPDATE subscriptions SET status = 'cancelled' WHERE id = 43", dbname=db)
        with pytest.raises(psycopg.errors.SerializationFailure) as caught:
            with batch.cursor() as cur:
                cur.executemany("UPDATE current_subscriptions SET notes = %s WHERE id = %s",
                                [("a", 42), ("b", 42), ("c", 43)])
    assert psycopg3_error(caught.value) == conflict_error(43, 1, 2, read_detail(2, ["status"]))
    assert rows(pg, db, "SELECT id, status, notes, version FROM subscriptions WHERE id IN (42, 43) ORDER BY id") == [
        ["42", "active", "old", "1"], ["43", "cancelled", "n43", "2"]]


def test_shadow_mode_lets_a_stale_write_through_a_view_pass_and_audits_it(pg, db, occ_proxy):
    proxy = start(occ_proxy, mode="shadow")
    agent = connect(proxy.dsn(db))
    run(agent, "SELECT * FROM current_subscriptions WHERE id = 42")
    billing(pg, db)
    assert run(agent, "UPDATE current_subscriptions SET notes = 'shadow' WHERE id = 42") == ("UPDATE 1", None)
    assert rows(pg, db, ROW_42) == [["cancelled", "shadow", "3"]]
    [line] = wait_for_audit(proxy, 1)
    assert (line["kind"], line["table"], line["key"], line["expected"], line["current"]) == (
        "shadow_conflict", "public.subscriptions", {"id": 42}, "1", "2")
    assert line["diff"] == {"notes": {"mine": "shadow", "theirs": "old", "base": "old"},
                            "status": {"theirs": "cancelled", "base": "active"}}
    c = counters(proxy)
    assert (c["shadow_conflicts"], c["conflicts"]) == (1, 0)


def test_a_forced_write_through_a_view_overrides_the_check(pg, db, occ_proxy):
    proxy = start(occ_proxy, force={"allowed_roles": ["postgres"]})
    agent = connect(proxy.dsn(db))
    run(agent, "SELECT * FROM vip WHERE id = 42")
    billing(pg, db)
    assert run(agent, "/*occ:force*/ UPDATE vip SET notes = 'forced' WHERE id = 42") == ("UPDATE 1", None)
    assert rows(pg, db, ROW_42) == [["cancelled", "forced", "3"]]
    assert counters(proxy)["forced_writes"] == 1


def test_a_merge_through_a_view_keeps_the_other_writers_change(pg, db, occ_proxy):
    proxy = start(occ_proxy, on_conflict="merge")
    agent = connect(proxy.dsn(db))
    run(agent, "SELECT * FROM current_subscriptions WHERE id = 42")
    billing(pg, db)
    assert run(agent, "UPDATE current_subscriptions SET status = 'active', notes = 'merged' WHERE id = 42") == (
        "UPDATE 1", None)
    assert rows(pg, db, ROW_42) == [["cancelled", "merged", "3"]]
    assert counters(proxy)["merges"] == 1
    pg.psql("UPDATE subscriptions SET notes = 'theirs' WHERE id = 42", dbname=db)
    with pytest.raises(psycopg2.errors.SerializationFailure) as caught:
        run(agent, "UPDATE current_subscriptions SET notes = 'mine' WHERE id = 42")
    assert caught.value.diag.message_primary == (
        "occ: version conflict on public.subscriptions (id)=(42): expected version 3, current version 4")
    assert rows(pg, db, ROW_42) == [["cancelled", "theirs", "4"]]


def test_a_view_created_after_start_is_followed_after_a_reload(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    agent = connect(proxy.dsn(db))
    pg.psql("CREATE VIEW later AS SELECT id, notes, version FROM subscriptions", dbname=db)
    # Not yet known: the read is not the table's, so the stale write is a row never read (allowed).
    assert run(agent, "SELECT notes FROM later WHERE id = 42") == ("SELECT 1", [("old",)])
    billing(pg, db)
    assert run(agent, "UPDATE later SET notes = 'unchecked' WHERE id = 42") == ("UPDATE 1", None)
    assert rows(pg, db, ROW_42) == [["cancelled", "unchecked", "3"]]

    proxy.reload()
    wait_for("the reload", lambda: counters(proxy)["rules_reload_ok"] == 1)
    assert run(agent, "SELECT notes FROM later WHERE id = 42") == ("SELECT 1", [("unchecked",)])
    pg.psql("UPDATE subscriptions SET status = 'active' WHERE id = 42", dbname=db)
    with pytest.raises(psycopg2.errors.SerializationFailure) as caught:
        run(agent, "UPDATE later SET notes = 'agent' WHERE id = 42")
    assert pg_error(caught.value) == conflict_error(42, 3, 4, read_detail(4, []))
    assert rows(pg, db, ROW_42) == [["active", "unchecked", "4"]]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM subscription_notes WHERE id = 42",
    "SELECT * FROM plan_sizes",
])
def test_a_read_through_a_view_that_hides_the_row_is_counted_untracked(pg, db, occ_proxy, sql):
    proxy = start(occ_proxy, on_unknown_version="reject")
    assert result(proxy.dsn(db), sql) == result(pg.dsn(db), sql)
    agent = connect(proxy.dsn(db))
    run(agent, sql)
    assert counters(proxy)["reads_untracked"] == 2
    refused = fails(agent, "UPDATE subscriptions SET notes = 'agent' WHERE id = 42")
    assert (refused["sqlstate"], refused["table"]) == ("55000", "subscriptions"), refused
    assert rows(pg, db, ROW_42) == [["active", "old", "1"]]


def test_a_write_through_a_view_that_hides_the_version_follows_on_unsupported(pg, db, occ_proxy):
    schema = SUBSCRIPTIONS + VIEWS + """
        CREATE TABLE invoices (id int PRIMARY KEY, notes text, version bigint NOT NULL DEFAULT 1);
        INSERT INTO invoices VALUES (7, 'old');
        CREATE VIEW invoice_notes AS SELECT id, notes FROM invoices;
    """
    proxy = occ_proxy(rules_yaml(
        [{"table": "public.subscriptions", "key": ["id"], "on_unsupported": "reject"},
         {"table": "public.invoices", "key": ["id"], "on_unsupported": "passthrough"}]), schema=schema)
    agent = connect(proxy.dsn(db))
    refused = fails(agent, "UPDATE subscription_notes SET notes = 'agent' WHERE id = 42")
    assert refused == {
        "sqlstate": "0A000",
        "message": "occ: unsupported write on public.subscriptions: a write through view public.subscription_notes "
                   "(it does not show the version column version under its own name)",
        "detail": "The proxy cannot add its version check to this form of statement and on_unsupported is reject "
                  "for this table; nothing was written.",
        "hint": "Rewrite the statement in a supported form, or set on_unsupported: passthrough for this table.",
        "schema": "public",
        "table": "subscriptions",
        "constraint": None,
    }
    assert rows(pg, db, ROW_42) == [["active", "old", "1"]]
    assert run(agent, "UPDATE invoice_notes SET notes = 'agent' WHERE id = 7") == ("UPDATE 1", None)
    assert rows(pg, db, "SELECT notes, version FROM invoices") == [["agent", "2"]]
    c = counters(proxy)
    assert (c["unsupported_rejected"], c["unsupported_passed"]) == (1, 1)
    assert "a write through view public.invoice_notes" in proxy.log_text()


def test_a_role_with_rights_on_the_view_only_reads_and_writes_through_it(pg, db, occ_proxy):
    proxy = start(occ_proxy)
    pg.psql("""
        DO $$ BEGIN CREATE ROLE view_clerk LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
        ALTER ROLE view_clerk LOGIN PASSWORD 'view_clerk';
    """)
    pg.psql("GRANT SELECT, UPDATE ON current_subscriptions TO view_clerk", dbname=db)
    clerk = connect(proxy.dsn(db, user="view_clerk", password="view_clerk"), autocommit=False)
    # The rewrite names the view, never the table, whose rights the clerk lacks.
    assert run(clerk, "SELECT notes FROM current_subscriptions WHERE id = 42") == ("SELECT 1", [("old",)])
    clerk.commit()
    with psycopg.connect(proxy.dsn(db, user="view_clerk", password="view_clerk")) as batch:
        batch.execute("SELECT * FROM current_subscriptions WHERE id = 42").fetchall()
        with batch.cursor() as cur:
            cur.executemany("UPDATE current_subscriptions SET notes = %s WHERE id = %s", [("a", 42), ("b", 42)])
        batch.commit()
    assert rows(pg, db, ROW_42) == [["active", "b", "3"]]
    billing(pg, db)
    with pytest.raises(psycopg2.errors.SerializationFailure) as caught:
        run(clerk, "UPDATE current_subscriptions SET notes = 'clerk' WHERE id = 42")
    assert pg_error(caught.value) == conflict_error(42, 1, 4, read_detail(4, ["notes"]))
    clerk.rollback()
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        run(clerk, "SELECT notes FROM subscriptions WHERE id = 42")
    clerk.close()
    assert rows(pg, db, ROW_42) == [["cancelled", "b", "4"]]


def test_occproxy_check_names_each_view_it_follows_and_why_not_the_others(pg, db, make_config, run_occproxy):
    rules = rules_yaml()
    pg.psql(SUBSCRIPTIONS + VIEWS, dbname=db)
    config = make_config(db, rules=rules)
    assert run_occproxy("migrate", "--config", config).returncode == 0
    check = run_occproxy("check", "--config", config)
    assert check.returncode == 0, check.output
    views = [line for line in check.output.splitlines() if line.startswith("ok: view ")]
    assert views == [
        "ok: view public.current_subscriptions shows rows of public.subscriptions: reads through it are tracked, "
        "writes checked",
        "ok: view public.plan_sizes reads public.subscriptions but its reads are not tracked nor its writes checked: "
        "GROUP BY",
        "ok: view public.subscription_notes reads public.subscriptions but its reads are not tracked nor its writes "
        "checked: it does not show the version column version under its own name",
        "ok: view public.vip shows rows of public.subscriptions: reads through it are tracked, writes checked",
    ]
