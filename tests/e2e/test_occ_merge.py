# on_conflict: merge (SPEC 3.10), the whole story in every conflict record, track_writer and conflict ids (SPEC 3.7).
import json
import os
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import psycopg2
import psycopg2.errors
import pytest

from conftest import require
from occ_helpers import (  # noqa: F401 (occ_proxy_fixture provides the occ_proxy fixture)
    AnyConflictId,
    conflict_error,
    connect,
    counters,
    fails,
    http_json,
    occ_proxy_fixture,
    only_audit_line,
    psycopg3_error,
    read_detail,
    requires_proxy,
    rows,
    rules_yaml,
    run,
    stats,
    wait_for_audit,
)

pytestmark = requires_proxy

NODE_DIR = Path(__file__).resolve().parent / "node"
READ = "SELECT * FROM subscriptions WHERE id = 42"


def merge_rules(**table):
    return rules_yaml([{"table": "public.subscriptions", "key": ["id"], "on_conflict": "merge", **table}])


def both_detail(current, columns):
    return f"Current version is {current}. Changed both by this write and since your read: {', '.join(columns)}."


def http_status(proxy, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{proxy.stats_port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def merged_line(db, conn, app, expected, current, diff, kind="merged"):
    return {
        "kind": kind, "table": "public.subscriptions", "key": {"id": 42}, "expected": expected, "current": current,
        "user": "postgres", "database": db, "application_name": app, "backend_pid": conn.get_backend_pid(),
        "diff": diff,
    }


# --- two writers, SQL with no version ------------------------------------------------------------

@pytest.mark.parametrize("bump", ["trigger", "proxy"])
def test_psycopg2_changes_to_other_columns_are_merged(pg, db, occ_proxy, bump):
    proxy = occ_proxy(merge_rules(version_bump=bump))
    agent = connect(proxy.dsn(db), application_name="agent")
    billing = connect(proxy.dsn(db), application_name="billing")
    assert run(agent, READ) == ("SELECT 1", [(42, 1, "active", "old", 1)])
    assert run(billing, "UPDATE subscriptions SET status = 'paused' WHERE id = 42") == ("UPDATE 1", None)

    assert run(agent, "UPDATE subscriptions SET notes = 'agent note' WHERE id = 42") == ("UPDATE 1", None)
    # Both changes stand; the version advanced once for each write.
    assert rows(pg, db, "SELECT status, notes, version FROM subscriptions WHERE id = 42") == [
        ["paused", "agent note", "3"]]
    assert only_audit_line(proxy) == merged_line(db, agent, "agent", "1", "2", {
        "notes": {"base": "old", "mine": "agent note", "theirs": "old"},
        "status": {"base": "active", "theirs": "paused"},
    })
    snapshot = stats(proxy)
    assert (snapshot["counters"]["merges"], snapshot["counters"]["conflicts"]) == (1, 0)
    assert snapshot["tables"]["public.subscriptions"]["merges"] == 1
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{proxy.stats_port}/metrics", timeout=5).read().decode()
    assert 'occproxy_table_merges_total{table="public.subscriptions"} 1\n' in metrics
    assert "occproxy_merges_total 1\n" in metrics
    page = urllib.request.urlopen(f"http://127.0.0.1:{proxy.stats_port}/", timeout=5).read().decode()
    assert "merges: 1" in page and "Merged (stale write applied column by column)" in page

    # The session knows the version its merged write produced: its next write is checked against it.
    assert run(agent, "UPDATE subscriptions SET notes = 'again' WHERE id = 42") == ("UPDATE 1", None)
    assert rows(pg, db, "SELECT status, notes, version FROM subscriptions WHERE id = 42") == [
        ["paused", "again", "4"]]
    assert counters(proxy)["merges"] == 1


def test_reject_keeps_todays_conflict(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    agent = connect(proxy.dsn(db))
    billing = connect(proxy.dsn(db))
    run(agent, READ)
    run(billing, "UPDATE subscriptions SET status = 'paused' WHERE id = 42")
    assert fails(agent, "UPDATE subscriptions SET notes = 'agent note' WHERE id = 42") == conflict_error(
        42, 1, 2, read_detail(2, ["status"]))
    assert rows(pg, db, "SELECT status, notes, version FROM subscriptions WHERE id = 42") == [["paused", "old", "2"]]
    assert counters(proxy)["merges"] == 0


def test_extended_protocol_merges_with_the_read_as_parameters(pg, db, occ_proxy):
    proxy = occ_proxy(merge_rules())
    with psycopg.connect(proxy.dsn(db), autocommit=True) as agent, \
            psycopg.connect(proxy.dsn(db), autocommit=True) as billing:
        assert agent.execute("SELECT * FROM subscriptions WHERE id = %s", (42,)).fetchall() == [
            (42, 1, "active", "old", 1)]
        billing.execute("UPDATE subscriptions SET status = %s WHERE id = %s", ("paused", 42))
        assert agent.execute("UPDATE subscriptions SET notes = %s WHERE id = %s", ("agent note", 42)).rowcount == 1
        # A column changed on both sides: the conflict, in the extended protocol too.
        agent.execute("SELECT * FROM subscriptions WHERE id = %s", (43,))
        billing.execute("UPDATE subscriptions SET notes = %s WHERE id = %s", ("billing", 43))
        with pytest.raises(psycopg.errors.SerializationFailure) as caught:
            agent.execute("UPDATE subscriptions SET notes = %s, plan_id = %s WHERE id = %s", ("agent", 2, 43))
    assert psycopg3_error(caught.value) == conflict_error(43, 1, 2, both_detail(2, ["notes"]))
    assert rows(pg, db, "SELECT id, plan_id, status, notes, version FROM subscriptions WHERE id IN (42, 43) ORDER BY id") == [
        ["42", "1", "paused", "agent note", "3"], ["43", "1", "active", "billing", "2"]]
    c = counters(proxy)
    assert (c["merges"], c["conflicts"]) == (1, 1)


def test_node_postgres_changes_to_other_columns_are_merged(pg, db, occ_proxy):
    require(shutil.which("node"), "node is not installed")
    require((NODE_DIR / "node_modules" / "pg").is_dir(), "run `npm ci` in tests/e2e/node first")
    proxy = occ_proxy(merge_rules())
    env = dict(os.environ, PGHOST=proxy.host, PGPORT=str(proxy.port), PGUSER="postgres",
               PGPASSWORD="postgres", PGDATABASE=db)
    result = subprocess.run(["node", "merge.js"], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "read": [[42, 1, "active", "old", "1"]],
        "billing": "UPDATE 1",
        "agent": "UPDATE 1",
        "after": [["paused", "agent note", "3"]],
    }
    [line] = wait_for_audit(proxy, 1)
    assert (line["kind"], line["application_name"], line["diff"]) == ("merged", "agent", {
        "notes": {"base": "old", "mine": "agent note", "theirs": "old"},
        "status": {"base": "active", "theirs": "paused"},
    })
    assert counters(proxy)["merges"] == 1


def test_node_postgres_under_reject_gets_the_conflict(pg, db, occ_proxy):
    require(shutil.which("node"), "node is not installed")
    require((NODE_DIR / "node_modules" / "pg").is_dir(), "run `npm ci` in tests/e2e/node first")
    proxy = occ_proxy(rules_yaml())
    env = dict(os.environ, PGHOST=proxy.host, PGPORT=str(proxy.port), PGUSER="postgres",
               PGPASSWORD="postgres", PGDATABASE=db)
    result = subprocess.run(["node", "merge.js"], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["agent"] == {
        "code": "40001",
        "message": "occ: version conflict on public.subscriptions (id)=(42): expected version 1, current version 2",
        "detail": out["agent"]["detail"],
    }
    assert re.fullmatch(r"Current version is 2\. Changed since your read: status\. Conflict id: [0-9a-f]{16}\.",
                        out["agent"]["detail"])
    assert out["after"] == [["paused", "old", "2"]]


# --- an ORM that writes every column ------------------------------------------------------------

FULL_ROW = "UPDATE subscriptions SET plan_id = %s, status = %s, notes = %s WHERE id = %s"


def test_full_row_write_keeps_the_other_sessions_change_and_refuses_a_column_changed_on_both_sides(
        pg, db, occ_proxy):
    proxy = occ_proxy(merge_rules())
    orm = connect(proxy.dsn(db), application_name="orm")
    assert run(orm, "SELECT id, plan_id, status, notes FROM subscriptions WHERE id = 42") == (
        "SELECT 1", [(42, 1, "active", "old")])
    pg.psql("UPDATE subscriptions SET status = 'paused' WHERE id = 42", dbname=db)
    # Every column written, status with the value read: the other session's status survives.
    assert run(orm, FULL_ROW, (2, "active", "orm note", 42)) == ("UPDATE 1", None)
    assert rows(pg, db, "SELECT plan_id, status, notes, version FROM subscriptions WHERE id = 42") == [
        ["2", "paused", "orm note", "3"]]

    # Read again, then both change notes: the conflict names exactly that column.
    run(orm, "SELECT id, plan_id, status, notes FROM subscriptions WHERE id = 42")
    pg.psql("UPDATE subscriptions SET notes = 'other note', plan_id = 5 WHERE id = 42", dbname=db)
    e = fails(orm, FULL_ROW, (2, "paused", "orm again", 42))
    assert e == conflict_error(42, 3, 4, both_detail(4, ["notes"]))
    assert rows(pg, db, "SELECT plan_id, status, notes, version FROM subscriptions WHERE id = 42") == [
        ["5", "paused", "other note", "4"]]

    [merged, conflict] = wait_for_audit(proxy, 2)
    assert merged["kind"] == "merged"
    status, record = http_status(proxy, f"/conflicts/{e['conflict_id']}")
    assert status == 200
    assert record == conflict
    assert {k: record[k] for k in ("id", "kind", "key", "expected", "current", "both_changed", "diff")} == {
        "id": e["conflict_id"], "kind": "conflict", "key": {"id": 42}, "expected": "3", "current": "4",
        "both_changed": ["notes"],
        # Every column the write set, and every column changed since the read (plan_id both).
        "diff": {
            "plan_id": {"base": "2", "mine": "2", "theirs": 5},
            "status": {"base": "paused", "mine": "paused", "theirs": "paused"},
            "notes": {"base": "orm note", "mine": "orm again", "theirs": "other note"},
        },
    }
    assert http_status(proxy, "/conflicts/0123456789abcdef") == (
        404, {"error": "no recent conflict with id 0123456789abcdef (unknown, or expired from the 200 kept)"})
    c = counters(proxy)
    assert (c["merges"], c["conflicts"]) == (1, 1)


def test_conflict_by_id_follows_the_token_rule(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml(), config={"stats": {"token": "s3cret"}})
    agent = connect(proxy.dsn(db))
    run(agent, READ)
    pg.psql("UPDATE subscriptions SET status = 'paused' WHERE id = 42", dbname=db)
    e = fails(agent, "UPDATE subscriptions SET notes = 'x' WHERE id = 42")
    url = f"http://127.0.0.1:{proxy.stats_port}/conflicts/{e['conflict_id']}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    assert refused.value.code == 401
    wait_for_audit(proxy, 1)
    request = urllib.request.Request(url, headers={"Authorization": "Bearer s3cret"})
    with urllib.request.urlopen(request, timeout=5) as response:
        record = json.loads(response.read())
    assert (record["id"], record["kind"], record["diff"]) == (e["conflict_id"], "conflict", {
        "notes": {"base": "old", "mine": "x", "theirs": "old"},
        "status": {"base": "active", "theirs": "paused"},
    })


# --- races ---------------------------------------------------------------------------------------

CLIENTS = 16
ROUNDS = 5
HOT = ("CREATE TABLE hot (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, "
       + ", ".join(f"c{i} text" for i in range(CLIENTS)) + "); INSERT INTO hot (id) VALUES (1);")


def race(proxy, db, work):
    errors = []
    barrier = threading.Barrier(CLIENTS)

    def client(i):
        try:
            conn = connect(proxy.dsn(db))
            barrier.wait()
            work(i, conn)
            conn.close()
        except Exception as e:  # reported by the test thread
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []


def test_sixteen_clients_each_changing_its_own_column_all_merge(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml([{"table": "hot", "key": ["id"], "on_conflict": "merge"}]), schema=HOT)

    def work(i, conn):
        for k in range(ROUNDS):
            run(conn, "SELECT * FROM hot WHERE id = 1")
            assert run(conn, f"UPDATE hot SET c{i} = '{i}-{k}' WHERE id = 1") == ("UPDATE 1", None)

    race(proxy, db, work)
    columns = ", ".join(f"c{i}" for i in range(CLIENTS))
    assert rows(pg, db, f"SELECT {columns}, n, version FROM hot") == [
        [f"{i}-{ROUNDS - 1}" for i in range(CLIENTS)] + ["0", str(1 + CLIENTS * ROUNDS)]]
    c = counters(proxy)
    assert c["conflicts"] == 0
    assert c["merges"] == len(wait_for_audit(proxy, c["merges"]))


def test_sixteen_clients_incrementing_one_column_lose_no_increment(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml([{"table": "hot", "key": ["id"], "on_conflict": "merge"}]), schema=HOT)
    retries = []

    def work(i, conn):
        for _ in range(ROUNDS):
            while True:
                run(conn, "SELECT n FROM hot WHERE id = 1")
                try:
                    # Evaluated on the row version written: another increment since the read makes mine
                    # differ from both base and theirs, a conflict; the retry re-reads.
                    assert run(conn, "UPDATE hot SET n = n + 1 WHERE id = 1") == ("UPDATE 1", None)
                    break
                except psycopg2.errors.SerializationFailure as e:
                    assert re.fullmatch(r"Current version is \d+\. Changed both by this write and since your "
                                        r"read: n\. Conflict id: [0-9a-f]{16}\.", e.diag.message_detail)
                    retries.append(i)

    race(proxy, db, work)
    assert rows(pg, db, "SELECT n, version FROM hot") == [[str(CLIENTS * ROUNDS), str(1 + CLIENTS * ROUNDS)]]
    c = counters(proxy)
    assert (c["conflicts"], c["merges"]) == (len(retries), 0)


# --- bulk writes, shadow mode --------------------------------------------------------------------

def test_bulk_write_with_one_row_changed_on_both_sides_fails_as_a_whole(pg, db, occ_proxy):
    proxy = occ_proxy(merge_rules())
    agent = connect(proxy.dsn(db), application_name="agent")
    assert run(agent, "SELECT * FROM subscriptions ORDER BY id")[0] == "SELECT 3"
    pg.psql("UPDATE subscriptions SET status = 'paused' WHERE id IN (42, 43);"
            "UPDATE subscriptions SET notes = 'billing' WHERE id = 44", dbname=db)
    e = fails(agent, "UPDATE subscriptions SET notes = 'bulk' WHERE id IN (42, 43, 44)")
    assert e == conflict_error(44, 1, 2, both_detail(2, ["notes"]))
    assert rows(pg, db, "SELECT id, status, notes, version FROM subscriptions ORDER BY id") == [
        ["42", "paused", "old", "2"], ["43", "paused", "n43", "2"], ["44", "active", "billing", "2"]]
    # The rows merged before the refusal were rolled back with it: no merge is audited or counted.
    [line] = wait_for_audit(proxy, 1)
    assert (line["kind"], line["key"], line["both_changed"]) == ("conflict", {"id": 44}, ["notes"])
    c = counters(proxy)
    assert (c["merges"], c["conflicts"]) == (0, 1)

    # Without the both-changed row, each row is merged on its own.
    run(agent, "SELECT * FROM subscriptions WHERE id = 44")
    assert run(agent, "UPDATE subscriptions SET notes = 'bulk' WHERE id IN (42, 43, 44)") == ("UPDATE 3", None)
    assert rows(pg, db, "SELECT id, status, notes, version FROM subscriptions ORDER BY id") == [
        ["42", "paused", "bulk", "3"], ["43", "paused", "bulk", "3"], ["44", "active", "bulk", "3"]]
    lines = wait_for_audit(proxy, 3)
    assert sorted((l["kind"], l["key"]["id"]) for l in lines[1:]) == [("merged", 42), ("merged", 43)]
    assert counters(proxy)["merges"] == 2


def test_shadow_mode_logs_the_would_be_merge_and_writes_as_today(pg, db, occ_proxy):
    proxy = occ_proxy(merge_rules(mode="shadow"))
    orm = connect(proxy.dsn(db), application_name="orm")
    run(orm, "SELECT id, plan_id, status, notes FROM subscriptions WHERE id = 42")
    pg.psql("UPDATE subscriptions SET status = 'paused' WHERE id = 42", dbname=db)
    assert run(orm, FULL_ROW, (1, "active", "orm note", 42)) == ("UPDATE 1", None)
    # Written as sent, as without the merge: the full-row write reverts status.
    assert rows(pg, db, "SELECT status, notes, version FROM subscriptions WHERE id = 42") == [
        ["active", "orm note", "3"]]
    assert only_audit_line(proxy) == merged_line(db, orm, "orm", "1", "2", {
        "plan_id": {"base": "1", "mine": "1", "theirs": 1},
        "status": {"base": "active", "mine": "active", "theirs": "paused"},
        "notes": {"base": "old", "mine": "orm note", "theirs": "old"},
    }, kind="shadow_merged")
    c = counters(proxy)
    assert (c["shadow_merges"], c["merges"], c["conflicts"], c["shadow_conflicts"]) == (1, 0, 0, 0)
    assert stats(proxy)["tables"]["public.subscriptions"]["shadow_merges"] == 1
    assert "would merge on public.subscriptions" in proxy.log_text()


# --- track_writer --------------------------------------------------------------------------------

def test_track_writer_names_who_made_the_conflicting_change_and_when(pg, db, occ_proxy, make_config, run_occproxy):
    rules = rules_yaml([{"table": "public.subscriptions", "key": ["id"], "track_writer": True}])
    proxy = occ_proxy(rules)
    again = run_occproxy("migrate", "--config", make_config(db, rules=rules))
    assert again.returncode == 0 and "nothing to do" in again.output, again.output
    agent = connect(proxy.dsn(db), application_name="agent")
    # The bookkeeping columns are ordinary columns to read tracking: SELECT * shows them as the server does.
    [direct_row] = rows(pg, db, "SELECT id, status, occ_modified_by, occ_modified_at::text FROM subscriptions "
                                "WHERE id = 42")
    assert direct_row == ["42", "active", "", ""]
    with agent.cursor() as cur:
        cur.execute(READ)
        assert [d.name for d in cur.description] == [
            "id", "plan_id", "status", "notes", "version", "occ_modified_by", "occ_modified_at"]
        assert cur.fetchall() == [(42, 1, "active", "old", 1, None, None)]

    billing = psycopg2.connect(pg.dsn(db) + " application_name=billing")
    billing.autocommit = True
    with billing.cursor() as cur:
        cur.execute("UPDATE subscriptions SET status = 'paused' WHERE id = 42")
    [[by, at]] = rows(pg, db, "SELECT occ_modified_by, to_char(occ_modified_at AT TIME ZONE 'UTC', "
                              "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM subscriptions WHERE id = 42")
    assert by == "postgres (billing)"

    e = fails(agent, "UPDATE subscriptions SET notes = 'agent note' WHERE id = 42")
    assert e == conflict_error(42, 1, 2, f"Current version is 2, written by postgres (billing) at {at}. "
                                         "Changed since your read: status.")
    line = only_audit_line(proxy)
    assert (line["writer"], line["diff"]) == ({"by": "postgres (billing)", "at": at}, {
        "notes": {"base": "old", "mine": "agent note", "theirs": "old"},
        "status": {"base": "active", "theirs": "paused"},
    })
    # The proxy's own write is tracked too, with the agent's application_name.
    run(agent, READ)
    assert run(agent, "UPDATE subscriptions SET notes = 'agent note' WHERE id = 42") == ("UPDATE 1", None)
    assert rows(pg, db, "SELECT status, notes, version, occ_modified_by FROM subscriptions WHERE id = 42") == [
        ["paused", "agent note", "3", "postgres (agent)"]]


# --- the merge decision, row by row --------------------------------------------------------------

DECISIONS = [
    # (base, mine, theirs, outcome): one column `notes`, text; None is SQL NULL; base "unknown": never read.
    ("a", "b", "a", "merged"),            # changed by me only
    ("a", "a", "c", "merged"),            # written with its base value, changed by them: theirs kept
    ("a", "b", "c", "conflict"),          # changed on both sides
    ("a", "b", "b", "merged"),            # both sides wrote the same value
    ("a", "a", "a", "merged"),            # nobody changed it (the version moved for another column)
    (None, "b", None, "merged"),          # NULL read, set by me
    (None, None, "c", "merged"),          # NULL read and written back, changed by them
    (None, "b", "c", "conflict"),         # NULL read, both changed
    ("a", None, "c", "conflict"),         # set to NULL by me, changed by them
    ("a", None, None, "merged"),          # both set it to NULL
    ("unknown", "a", "a", "whole-row"),   # base unknown: the whole-row check
]


@pytest.mark.parametrize("base, mine, theirs, outcome", DECISIONS)
def test_the_merge_decision(pg, db, occ_proxy, base, mine, theirs, outcome):
    occ_proxy(merge_rules())
    conn = psycopg2.connect(pg.dsn(db))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("UPDATE subscriptions SET notes = %s, version = 2 WHERE id = 42", (theirs,))
        meta = json.dumps({"schema": "public", "table": "subscriptions", "key": ["id"], "version_column": "version",
                           "sqlstate": "40001", "mode": "enforce", "op": "update", "base": None})
        read = None if base == "unknown" else json.dumps({"id": "42", "notes": base, "version": "1"})
        sql = ("SELECT occ.merge(s.version, 1::bigint, s.version + 1, to_jsonb(s.*), %s, %s, "
               "jsonb_build_object('notes', %s::text)) FROM subscriptions s WHERE id = 42")
        if outcome == "merged":
            cur.execute(sql, (meta, read, mine))
            assert cur.fetchall() == [(3,)]
            events = [n for n in conn.notices if '"event": "merged"' in n]
            assert len(events) == 1, conn.notices
            # Theirs is kept where they changed it and I wrote the base back (or the same value).
            cur.execute("SELECT occ.theirs_changed(to_jsonb(s.*), %s, 'notes', %s) FROM subscriptions s WHERE id = 42",
                        (read, meta))
            assert cur.fetchall() == [(theirs != base,)]
            return
        with pytest.raises(psycopg2.errors.SerializationFailure) as caught:
            cur.execute(sql, (meta, read, mine))
        detail = caught.value.diag.message_detail
        if outcome == "conflict":
            assert re.fullmatch(r"Current version is 2\. Changed both by this write and since your read: notes\. "
                                r"Conflict id: [0-9a-f]{16}\.", detail)
        else:
            assert re.fullmatch(r"Current version is 2; the row was changed after version 1\. "
                                r"Conflict id: [0-9a-f]{16}\.", detail)


def test_check_and_migrate_follow_track_writer(pg, db, make_config, run_occproxy):
    from occ_helpers import SUBSCRIPTIONS
    pg.psql(SUBSCRIPTIONS, dbname=db)
    plain = rules_yaml()
    tracked = rules_yaml([{"table": "public.subscriptions", "key": ["id"], "track_writer": True}])
    assert run_occproxy("migrate", "--config", make_config(db, rules=plain)).returncode == 0

    stale = run_occproxy("check", "--config", make_config(db, rules=tracked))
    assert stale.returncode == 1, stale.output
    assert "public.subscriptions: column occ_modified_by (track_writer) is missing; run `occproxy migrate" in stale.output
    assert "public.subscriptions: trigger occ_track_writer (track_writer) is missing" in stale.output

    migrated = run_occproxy("migrate", "--config", make_config(db, rules=tracked))
    assert migrated.returncode == 0, migrated.output
    for line in ("added column occ_modified_by text to public.subscriptions (track_writer)",
                 "added column occ_modified_at timestamptz to public.subscriptions (track_writer)",
                 "installed trigger occ_track_writer on public.subscriptions"):
        assert line in migrated.output
    assert run_occproxy("check", "--config", make_config(db, rules=tracked)).returncode == 0
    # A write from anywhere is tracked, an INSERT too.
    pg.psql("INSERT INTO subscriptions (id, status) VALUES (50, 'new')", dbname=db)
    assert rows(pg, db, "SELECT occ_modified_by, occ_modified_at IS NOT NULL FROM subscriptions WHERE id = 50") == [
        ["postgres (psql)", "t"]]

    untracked = run_occproxy("migrate", "--config", make_config(db, rules=plain))
    assert "dropped trigger occ_track_writer on public.subscriptions (track_writer: false; the columns stay)" in (
        untracked.output)
    assert run_occproxy("check", "--config", make_config(db, rules=plain)).returncode == 0


def test_the_sessions_own_earlier_write_in_its_transaction_is_neither_merged_nor_kept(pg, db, occ_proxy):
    proxy = occ_proxy(merge_rules())
    conn = connect(proxy.dsn(db), autocommit=False)
    run(conn, READ)
    # A write the proxy cannot see into, then a stale write of the same row in the same transaction.
    run(conn, "DO $$ BEGIN UPDATE subscriptions SET notes = 'from do', status = 'do' WHERE id = 42; END $$")
    assert run(conn, "UPDATE subscriptions SET status = 'mine' WHERE id = 42") == ("UPDATE 1", None)
    conn.commit()
    assert rows(pg, db, "SELECT status, notes, version FROM subscriptions WHERE id = 42") == [
        ["mine", "from do", "3"]]
    wait_for_audit(proxy, 0)
    c = counters(proxy)
    assert (c["merges"], c["conflicts"]) == (0, 0)
