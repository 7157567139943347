# Running OCC: rules reloaded on SIGHUP (a bad file keeps the old rules) and counters that add up (SPEC 2, 4).
import urllib.request

import psycopg
import psycopg.errors
import psycopg2
import psycopg2.errors
import pytest

from occ_helpers import (  # noqa: F401 (occ_proxy_fixture provides the occ_proxy fixture)
    SUBSCRIPTIONS,
    conflict_error,
    conflict_message,
    counters,
    http_json,
    migrate,
    occ_proxy_fixture,
    pg_error,
    requires_proxy,
    rows,
    rules_yaml,
    stats,
    unread_detail,
    wait_for,
    wait_for_audit,
)

pytestmark = requires_proxy

RELOAD_SCHEMA = SUBSCRIPTIONS + """
CREATE TABLE invoices (id int PRIMARY KEY, total numeric NOT NULL, version bigint NOT NULL DEFAULT 1);
INSERT INTO invoices VALUES (1, 10, 1);
CREATE TABLE plans (id int PRIMARY KEY, name text);
"""
STALE_INVOICE = "UPDATE invoices SET total = 5 WHERE id = 1 AND version = 1"


def connect(dsn):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def run(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.statusmessage


def invoice_conflict(conn):
    with pytest.raises(psycopg2.errors.SerializationFailure) as caught:
        run(conn, STALE_INVOICE)
    return pg_error(caught.value)


def test_sighup_reload_protects_a_new_table_and_a_bad_file_keeps_the_old_rules(
        pg, db, occ_proxy, make_config, run_occproxy):
    proxy = occ_proxy(rules_yaml(["public.subscriptions"], app_managed_version="enforce"), schema=RELOAD_SCHEMA)
    rules_path = proxy.dir / "rules.yaml"
    conn = connect(proxy.dsn(db))
    # Without a trigger on invoices yet, the direct write advances its version itself.
    pg.psql("UPDATE invoices SET total = 11, version = 2 WHERE id = 1", dbname=db)
    assert run(conn, STALE_INVOICE) == "UPDATE 0"

    both = rules_yaml(["public.subscriptions", "public.invoices"], app_managed_version="enforce")
    assert "installed trigger occ_bump_version on public.invoices" in migrate(make_config, run_occproxy, db, both)
    rules_path.write_text(both)
    proxy.reload()
    wait_for("the reload", lambda: counters(proxy)["rules_reload_ok"] == 1)
    assert [t["table"] for t in http_json(proxy, "/rules")["tables"]] == ["public.subscriptions", "public.invoices"]
    assert f"SIGHUP: rules reloaded from {rules_path}" in proxy.log_text()

    # A session opened before the reload follows the new rules.
    expected = conflict_error(1, 1, 2, unread_detail(1, 2), table="invoices")
    assert invoice_conflict(conn) == expected
    assert rows(pg, db, "SELECT total, version FROM invoices") == [["11", "2"]]

    # A rules file that does not load: the log says where, and the old rules stay in force.
    rules_path.write_text("defaults:\n"
                          "  app_managed_version: enforce\n"
                          "tables:\n"
                          "  - table: public.subscriptions\n"
                          "    key: [id]\n"
                          "  - table: public.invoices\n"
                          "    key: [id]\n"
                          "    colour: blue\n")
    proxy.reload()
    wait_for("the failed reload", lambda: counters(proxy)["rules_reload_failed"] == 1)
    log = proxy.log_text()
    assert f"{rules_path}:8: " in log and "colour: unknown key" in log, log
    assert "SIGHUP: reload failed, the previous rules stay in force" in log

    # Rules that load but do not match the catalog (plans has no version column): same.
    rules_path.write_text(rules_yaml(["public.subscriptions", "public.invoices", "public.plans"],
                                     app_managed_version="enforce"))
    proxy.reload()
    wait_for("the second failed reload", lambda: counters(proxy)["rules_reload_failed"] == 2)
    assert "version column version is missing" in proxy.log_text()

    assert counters(proxy)["rules_reload_ok"] == 1
    assert [t["table"] for t in http_json(proxy, "/rules")["tables"]] == ["public.subscriptions", "public.invoices"]
    assert invoice_conflict(conn) == expected
    assert invoice_conflict(connect(proxy.dsn(db))) == expected
    assert counters(proxy)["conflicts"] == 3


def test_stats_add_up_after_a_scripted_workload(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml(app_managed_version="enforce"),
                      schema=SUBSCRIPTIONS + "CREATE TABLE notes (id int PRIMARY KEY, body text);"
                                             "INSERT INTO notes VALUES (1, 'a');")
    conn = connect(proxy.dsn(db))
    conflicts = []

    def step(sql):
        try:
            return run(conn, sql)
        except psycopg2.errors.SerializationFailure as e:
            conflicts.append(e.diag.message_primary)
            return "conflict"

    assert [step(sql) for sql in (
        "UPDATE subscriptions SET notes = 'a' WHERE id = 42 AND version = 1",
        "UPDATE subscriptions SET notes = 'b' WHERE id = 42 AND version = 2",
        "UPDATE subscriptions SET notes = 'c' WHERE id = 42 AND version = 1",
        "DELETE FROM subscriptions WHERE id = 43 AND version = 5",
        "UPDATE notes SET body = 'b' WHERE id = 1",
        "SELECT 1",
    )] == ["UPDATE 1", "UPDATE 1", "conflict", "conflict", "UPDATE 1", "SELECT 1"]
    conn.close()

    with psycopg.connect(proxy.dsn(db), autocommit=True) as extended:
        with pytest.raises(psycopg.errors.SerializationFailure):
            extended.execute("UPDATE subscriptions SET notes = %s WHERE id = %s AND version = %s", ("d", 42, 2))

    snapshot = stats(proxy)
    c = snapshot["counters"]
    assert {k: c[k] for k in ("statements_rewritten", "conflicts", "shadow_conflicts", "forced_writes",
                              "parse_failures_passed", "unsupported_passed", "unsupported_rejected",
                              "queries_simple", "queries_extended")} == {
        "statements_rewritten": 5, "conflicts": 3, "shadow_conflicts": 0, "forced_writes": 0,
        "parse_failures_passed": 0, "unsupported_passed": 0, "unsupported_rejected": 0,
        "queries_simple": 6, "queries_extended": 1}
    assert snapshot["tables"] == {"public.subscriptions": {
        "rewritten": 5, "conflicts": 3, "shadow_conflicts": 0, "forced_writes": 0, "merges": 0, "shadow_merges": 0}}
    wait_for("both clients to be gone", lambda: stats(proxy)["gauges"]["connections_current"] == 0)

    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.stats_port}/metrics", timeout=5) as response:
        metrics = response.read().decode().splitlines()
    assert "occproxy_conflicts_total 3" in metrics
    assert "occproxy_statements_rewritten_total 5" in metrics
    assert 'occproxy_table_conflicts_total{table="public.subscriptions"} 3' in metrics

    lines = wait_for_audit(proxy, 3)
    assert [(r["kind"], r["key"], r["expected"], r["current"]) for r in lines] == [
        ("conflict", {"id": 42}, "1", "3"), ("conflict", {"id": 43}, "5", "1"), ("conflict", {"id": 42}, "2", "3")]
    recent = http_json(proxy, "/conflicts")
    assert [(r["key"], r["expected"]) for r in recent] == [({"id": 42}, "2"), ({"id": 43}, "5"), ({"id": 42}, "1")]
    assert [r["diff"] for r in recent] == [
        {"notes": {"mine": "d", "theirs": "b"}}, {}, {"notes": {"mine": "c", "theirs": "b"}}]
    assert rows(pg, db, "SELECT id, notes, version FROM subscriptions ORDER BY id") == [
        ["42", "b", "3"], ["43", "n43", "1"], ["44", "n44", "1"]]
    assert conflicts == [conflict_message(42, 1, 3), conflict_message(43, 5, 1)]
