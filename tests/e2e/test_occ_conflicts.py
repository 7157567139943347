# OCC through the proxy: lost updates become conflict errors with the agreed fields, audit and counters (SPEC 3).

import psycopg
import psycopg.errors
import psycopg2
import psycopg2.errors
import pytest

from occ_helpers import (  # noqa: F401 (occ_proxy_fixture provides the occ_proxy fixture)
    connect,
    fails,
    run,
    subscription,
    conflict_error,
    conflict_message,
    counters,
    occ_proxy_fixture,
    only_audit_line,
    pg_error,
    psycopg3_error,
    read_detail,
    requires_proxy,
    rows,
    rules_yaml,
    stats,
    unread_detail,
    wait_for_audit,
)

pytestmark = requires_proxy


STALE_NOTES = "UPDATE subscriptions SET notes = 'x' WHERE id = 42 AND version = 1"


def test_lost_update_becomes_a_conflict_under_enforce(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml(app_managed_version="enforce"))
    first = connect(proxy.dsn(db))
    second = connect(proxy.dsn(db), application_name="occ-e2e-second")
    read = "SELECT id, status, notes, version FROM subscriptions WHERE id = 42"
    assert run(first, read) == ("SELECT 1", [(42, "active", "old", 1)])
    assert run(second, read) == ("SELECT 1", [(42, "active", "old", 1)])

    assert run(first, "UPDATE subscriptions SET status = 'paused' WHERE id = 42") == ("UPDATE 1", None)
    assert fails(second, STALE_NOTES) == conflict_error(42, 1, 2, read_detail(2, ["status"]))
    assert subscription(pg, db) == [["paused", "old", "2"]]

    assert only_audit_line(proxy) == {
        "kind": "conflict",
        "table": "public.subscriptions",
        "key": {"id": 42},
        "expected": "1",
        "current": "2",
        "user": "postgres",
        "database": db,
        "application_name": "occ-e2e-second",
        "backend_pid": second.get_backend_pid(),
        # The column the other session changed is listed too, without a "mine".
        "diff": {"notes": {"mine": "x", "theirs": "old", "base": "old"},
                 "status": {"theirs": "paused", "base": "active"}},
    }
    snapshot = stats(proxy)
    assert snapshot["counters"]["conflicts"] == 1
    assert snapshot["tables"]["public.subscriptions"]["conflicts"] == 1


def test_app_managed_versions_pass_through_by_default(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    first = connect(proxy.dsn(db))
    second = connect(proxy.dsn(db))
    run(second, "SELECT status, notes, version FROM subscriptions WHERE id = 42")
    assert run(first, "UPDATE subscriptions SET status = 'paused' WHERE id = 42") == ("UPDATE 1", None)
    # The app does its own OCC: it sees the zero row count it expects, exactly as without the proxy.
    assert run(second, STALE_NOTES) == ("UPDATE 0", None)
    assert subscription(pg, db) == [["paused", "old", "2"]]
    assert counters(proxy)["conflicts"] == 0
    wait_for_audit(proxy, 0)


def test_stale_delete_conflicts_and_missing_rows_are_not_found(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml(app_managed_version="enforce"))
    pg.psql("UPDATE subscriptions SET status = 'paused' WHERE id = 42", dbname=db)
    conn = connect(proxy.dsn(db))

    assert fails(conn, "DELETE FROM subscriptions WHERE id = 42 AND version = 1") == conflict_error(
        42, 1, 2, unread_detail(1, 2))
    assert subscription(pg, db) == [["paused", "old", "2"]]

    # "Not found" stays distinguishable from "conflict".
    assert run(conn, "UPDATE subscriptions SET notes = 'x' WHERE id = 7 AND version = 1") == ("UPDATE 0", None)
    assert run(conn, "DELETE FROM subscriptions WHERE id = 7 AND version = 1") == ("DELETE 0", None)
    assert run(conn, "UPDATE subscriptions SET notes = 'x' WHERE id = 7") == ("UPDATE 0", None)
    assert run(conn, "DELETE FROM subscriptions WHERE id = 7") == ("DELETE 0", None)

    assert run(conn, "DELETE FROM subscriptions WHERE id = 42 AND version = 2") == ("DELETE 1", None)
    assert subscription(pg, db) == []
    assert counters(proxy)["conflicts"] == 1
    [line] = wait_for_audit(proxy, 1)
    assert (line["kind"], line["key"], line["expected"], line["current"]) == ("conflict", {"id": 42}, "1", "2")


def ensure_role(pg, name):
    """Roles are cluster-wide and outlive the test's database: create once, reset the password."""
    pg.psql(f"""
        DO $$ BEGIN CREATE ROLE {name} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
        ALTER ROLE {name} LOGIN PASSWORD '{name}';
    """)


def test_force_override_only_for_allowed_roles(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml(app_managed_version="enforce", force={"allowed_roles": ["dba"]}))
    for role in ("dba", "clerk"):
        ensure_role(pg, role)
        pg.psql(f"GRANT SELECT, UPDATE, DELETE ON subscriptions TO {role}; GRANT USAGE ON SCHEMA occ TO {role}",
                dbname=db)
    pg.psql("UPDATE subscriptions SET status = 'paused' WHERE id = 42", dbname=db)
    forced = "/*occ:force*/ UPDATE subscriptions SET notes = 'forced' WHERE id = 42 AND version = 1"

    dba = connect(proxy.dsn(db, user="dba", password="dba"), application_name="occ-e2e-dba")
    assert run(dba, forced) == ("UPDATE 1", None)
    assert subscription(pg, db) == [["paused", "forced", "3"]]

    assert only_audit_line(proxy) == {
        "kind": "forced_write",
        "table": "public.subscriptions",
        "key": {"id": 42},
        "expected": None,
        "current": "2",
        "overwritten_version": "2",
        "user": "dba",
        "database": db,
        "application_name": "occ-e2e-dba",
        "backend_pid": dba.get_backend_pid(),
        "diff": {"notes": {"mine": "forced", "theirs": "old"}},
    }

    refusal = {
        "sqlstate": "42501",
        "message": 'occ: role "clerk" may not force writes to public.subscriptions',
        "detail": "Only roles listed in force.allowed_roles may override the version check; nothing was written.",
        "hint": "Remove the /*occ:force*/ comment to write with the version check.",
        "schema": "public",
        "table": "subscriptions",
        "constraint": None,
    }
    clerk = connect(proxy.dsn(db, user="clerk", password="clerk"))
    assert fails(clerk, forced) == refusal
    # The extended protocol refuses at Parse; inside a transaction block that aborts it like any error.
    with psycopg.connect(proxy.dsn(db, user="clerk", password="clerk")) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
            conn.execute(forced.replace("'forced'", "%s"), ("extended",))
        assert psycopg3_error(caught.value) == refusal
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    assert subscription(pg, db) == [["paused", "forced", "3"]]
    c = counters(proxy)
    assert (c["forced_writes"], c["force_refused"], c["conflicts"]) == (1, 2, 0)
    wait_for_audit(proxy, 1)


def test_unparsable_sql_gets_the_servers_own_error(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml(app_managed_version="enforce"))
    bad = "UPDATE subscriptions SET notes = 'x' WHERE id = = 42"
    errors = []
    for dsn in (pg.dsn(db), proxy.dsn(db)):
        conn = connect(dsn)
        with pytest.raises(psycopg2.errors.SyntaxError) as caught:
            run(conn, bad)
        errors.append((caught.value.pgcode, caught.value.pgerror, caught.value.diag.statement_position))
        conn.close()
    direct, proxied = errors
    assert proxied == direct
    assert direct == ("42601", 'ERROR:  syntax error at or near "="\n'
                      "LINE 1: UPDATE subscriptions SET notes = 'x' WHERE id = = 42\n"
                      "                                                        ^\n", "49")
    assert counters(proxy)["parse_failures_passed"] == 1
    assert subscription(pg, db) == [["active", "old", "1"]]


def test_writes_that_bypass_the_proxy_still_advance_the_version(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml(app_managed_version="enforce"))
    app = connect(proxy.dsn(db))
    assert run(app, "SELECT notes FROM subscriptions WHERE id = 42") == ("SELECT 1", [("old",)])

    direct = connect(pg.dsn(db))
    assert run(direct, "UPDATE subscriptions SET status = 'cron' WHERE id = 42") == ("UPDATE 1", None)
    assert subscription(pg, db) == [["cron", "old", "2"]]

    # The app read version 1 through the proxy: its plain write is checked against that read. It read
    # only `notes`, which the cron job left alone, so DETAIL can name no changed column.
    assert fails(app, "UPDATE subscriptions SET notes = 'mine' WHERE id = 42") == conflict_error(
        42, 1, 2, read_detail(2, []))
    assert fails(app, "UPDATE subscriptions SET notes = 'mine' WHERE id = 42 AND version = 1") == conflict_error(
        42, 1, 2, read_detail(2, []))
    assert subscription(pg, db) == [["cron", "old", "2"]]

    # A direct write that advances the version itself is not bumped a second time.
    assert run(direct, "UPDATE subscriptions SET version = version + 1 WHERE id = 42") == ("UPDATE 1", None)
    assert subscription(pg, db) == [["cron", "old", "3"]]

    # After a fresh read the app's write goes through, and the version advances once.
    assert run(app, "SELECT notes, version FROM subscriptions WHERE id = 42") == ("SELECT 1", [("old", 3)])
    assert run(app, "UPDATE subscriptions SET notes = 'mine' WHERE id = 42") == ("UPDATE 1", None)
    assert subscription(pg, db) == [["cron", "mine", "4"]]
    assert counters(proxy)["conflicts"] == 2


UPSERT = ("INSERT INTO subscriptions (id, status, notes) VALUES ({id}, 'active', '{notes}') "
          "ON CONFLICT (id) DO UPDATE SET notes = EXCLUDED.notes WHERE subscriptions.version = 1")


def test_upsert_checks_the_existing_row(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml(app_managed_version="enforce"))
    pg.psql("UPDATE subscriptions SET status = 'paused' WHERE id = 42", dbname=db)
    conn = connect(proxy.dsn(db))

    assert fails(conn, UPSERT.format(id=42, notes="upsert")) == conflict_error(42, 1, 2, unread_detail(1, 2))
    assert subscription(pg, db) == [["paused", "old", "2"]]

    assert run(conn, UPSERT.format(id=50, notes="new")) == ("INSERT 0 1", None)
    assert subscription(pg, db, 50) == [["active", "new", "1"]]
    # The row at version 1 takes the upsert's update, and its version advances once.
    assert run(conn, UPSERT.format(id=43, notes="upserted")) == ("INSERT 0 1", None)
    assert subscription(pg, db, 43) == [["active", "upserted", "2"]]
    assert counters(proxy)["conflicts"] == 1


UNSUPPORTED = "UPDATE {table} SET notes = 'x' WHERE id = 42 AND (version = 1 OR version = 2)"


def test_unsupported_forms_follow_on_unsupported(pg, db, occ_proxy):
    schema = """
        CREATE TABLE subscriptions (id int PRIMARY KEY, status text, notes text);
        CREATE TABLE invoices (id int PRIMARY KEY, status text, notes text);
        INSERT INTO subscriptions VALUES (42, 'active', 'old');
        INSERT INTO invoices VALUES (42, 'open', 'old');
    """
    proxy = occ_proxy(rules_yaml(
        [{"table": "public.subscriptions", "key": ["id"], "on_unsupported": "reject"},
         {"table": "public.invoices", "key": ["id"], "on_unsupported": "passthrough"}],
        app_managed_version="enforce"), schema=schema)
    conn = connect(proxy.dsn(db))

    refused = fails(conn, UNSUPPORTED.format(table="subscriptions"))
    assert refused["message"].startswith("occ: unsupported write on public.subscriptions: "), refused
    assert "version" in refused["message"][len("occ: unsupported write on public.subscriptions: "):]
    assert (refused["sqlstate"], refused["schema"], refused["table"]) == ("0A000", "public", "subscriptions")
    with psycopg.connect(proxy.dsn(db), autocommit=True) as extended:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
            extended.execute(UNSUPPORTED.format(table="subscriptions").replace("'x'", "%s"), ("extended",))
        assert psycopg3_error(caught.value) == refused
    assert rows(pg, db, "SELECT notes, version FROM subscriptions") == [["old", "1"]]

    assert run(conn, UNSUPPORTED.format(table="invoices")) == ("UPDATE 1", None)
    assert rows(pg, db, "SELECT notes, version FROM invoices") == [["x", "2"]]

    c = counters(proxy)
    assert (c["unsupported_rejected"], c["unsupported_passed"]) == (2, 1)
    assert "is not supported; statement forwarded unchanged" in proxy.log_text()


def test_shadow_mode_logs_the_conflict_and_lets_the_write_through(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml(mode="shadow"))
    conn = connect(proxy.dsn(db))
    assert run(conn, "SELECT status, notes FROM subscriptions WHERE id = 42") == ("SELECT 1", [("active", "old")])
    pg.psql("UPDATE subscriptions SET status = 'paused' WHERE id = 42", dbname=db)

    assert run(conn, "UPDATE subscriptions SET notes = 'shadow' WHERE id = 42") == ("UPDATE 1", None)
    assert subscription(pg, db) == [["paused", "shadow", "3"]]
    assert conn.notices == []

    [line] = wait_for_audit(proxy, 1)
    assert (line["kind"], line["table"], line["key"], line["expected"], line["current"]) == (
        "shadow_conflict", "public.subscriptions", {"id": 42}, "1", "2")
    assert line["diff"] == {"notes": {"mine": "shadow", "theirs": "old", "base": "old"},
                            "status": {"theirs": "paused", "base": "active"}}
    c = counters(proxy)
    assert (c["shadow_conflicts"], c["conflicts"]) == (1, 0)


def test_conflict_sqlstate_is_configurable(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml(app_managed_version="enforce", conflict_sqlstate="40P01"))
    pg.psql("UPDATE subscriptions SET status = 'paused' WHERE id = 42", dbname=db)
    conn = connect(proxy.dsn(db))
    with pytest.raises(psycopg2.errors.DeadlockDetected) as caught:
        run(conn, STALE_NOTES)
    assert pg_error(caught.value) == conflict_error(42, 1, 2, unread_detail(1, 2), sqlstate="40P01")
    assert caught.value.diag.message_primary == conflict_message(42, 1, 2)
    assert counters(proxy)["conflicts"] == 1
