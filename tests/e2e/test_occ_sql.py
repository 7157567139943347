# The SQL layer on a real server without the proxy: the migrations and the rewriter's own output, run directly.
import json
import os
import pathlib
import subprocess
import tempfile
import threading
import time

import psycopg
import psycopg2
import pytest

from occ_helpers import AnyConflictId, conflict_detail

REPO = pathlib.Path(__file__).resolve().parents[2]
MIGRATIONS = sorted((REPO / "migrations").glob("[0-9][0-9][0-9]_*.sql"))

RULES = """\
defaults:
  app_managed_version: enforce
  force:
    allowed_roles: [dba]
tables:
  - table: public.subscriptions
    key: [id]
  - table: public.invoices
    key: [id]
    version_bump: proxy
  - table: public.tokens
    key: [id]
    version_bump: proxy
    version_kind: uuid
  - table: public.trials
    key: [id]
    mode: shadow
    redact: [secret]
  - table: public.lines
    key: [invoice, line]
    on_unsupported: reject
"""

# What `occproxy migrate` gives each table: a version column, and (version_bump: trigger) a trigger
# that advances the version when an UPDATE leaves it unchanged.
SCHEMA = """
CREATE FUNCTION bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.version IS NOT DISTINCT FROM OLD.version THEN
    NEW.version := OLD.version + 1;
  END IF;
  RETURN NEW;
END $$;
CREATE TABLE subscriptions (id int PRIMARY KEY, status text, notes text, version bigint NOT NULL DEFAULT 1);
CREATE TRIGGER occ_bump_version BEFORE UPDATE ON subscriptions FOR EACH ROW EXECUTE FUNCTION bump_version();
CREATE TABLE trials (id int PRIMARY KEY, status text, secret text, version bigint NOT NULL DEFAULT 1);
CREATE TRIGGER occ_bump_version BEFORE UPDATE ON trials FOR EACH ROW EXECUTE FUNCTION bump_version();
CREATE TABLE lines (invoice int, line int, amount int, version bigint NOT NULL DEFAULT 1, PRIMARY KEY (invoice, line));
CREATE TRIGGER occ_bump_version BEFORE UPDATE ON lines FOR EACH ROW EXECUTE FUNCTION bump_version();
CREATE TABLE invoices (id int PRIMARY KEY, total int, version bigint NOT NULL DEFAULT 1);
CREATE TABLE tokens (id int PRIMARY KEY, secret text, version uuid NOT NULL DEFAULT gen_random_uuid());
CREATE TABLE staging (id int, status text, gone bool DEFAULT false);
"""

HINT = (
    "Re-read the row and retry the transaction. A role listed in force.allowed_roles can override "
    "with /*occ:force*/."
)


@pytest.fixture(scope="module")
def rewriter():
    """rewrite(sql, user="app", rules=RULES, reads=None, extended=False) -> dict: the real rewriter's result.

    reads: the session's read set, {"schema.table": {key: {"v": version, "b": {column: value}}}};
    None: no read tracking."""
    default = pathlib.Path(os.environ.get("OCCPROXY_BIN", REPO / "build" / "occproxy")).parent / "unit_tests"
    binary = pathlib.Path(os.environ.get("OCC_UNIT_TESTS_BIN", default))
    if not os.access(binary, os.X_OK):
        pytest.fail(f"unit test binary not found at {binary}: build it (cmake) or set OCC_UNIT_TESTS_BIN")
    out_dir = tempfile.mkdtemp(prefix="occ-rewrite-")
    out = pathlib.Path(out_dir) / "rewrite.json"

    def rewrite(sql, user="app", rules=RULES, reads=None, extended=False):
        env = dict(os.environ, OCC_REWRITE_RULES=rules, OCC_REWRITE_SQL=sql, OCC_REWRITE_USER=user,
                   OCC_REWRITE_OUT=str(out), OCC_REWRITE_EXTENDED="1" if extended else "0")
        env.pop("OCC_REWRITE_READS", None)
        if reads is not None:
            env["OCC_REWRITE_READS"] = json.dumps(reads)
        result = subprocess.run([str(binary), "[rewrite-cli]"], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(out.read_text())

    yield rewrite
    out.unlink(missing_ok=True)
    os.rmdir(out_dir)


@pytest.fixture
def occdb(pg, db):
    for migration in MIGRATIONS:
        pg.psql(migration.read_text(), dbname=db)
    pg.psql(SCHEMA, dbname=db)
    return db


def connect(pg, db):
    conn = psycopg2.connect(pg.dsn(db))
    conn.autocommit = True
    return conn


def query(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def execute(conn, sql):
    """Runs sql; returns its rowcount."""
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.rowcount


def conflict(conn, sql):
    """Runs sql, which must fail; returns the psycopg2 error."""
    with pytest.raises(psycopg2.Error) as caught:
        execute(conn, sql)
    return caught.value


def collect_notices(conn):
    """(severity, sqlstate, message) of each notice on a psycopg 3 connection, from now on."""
    notices = []
    # A Diagnostic is only valid inside the handler: copy what the test needs.
    conn.add_notice_handler(lambda d: notices.append((d.severity, d.sqlstate, d.message_primary)))
    return notices


def events(notices):
    """The OC000 events among collected notices, decoded."""
    return [json.loads(message) for _, sqlstate, message in notices if sqlstate == "OC000"]


def test_migration_is_idempotent_and_complete(pg, occdb):
    for migration in MIGRATIONS:
        pg.psql(migration.read_text(), dbname=occdb)
    functions = pg.psql(
        "SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'occ'::regnamespace ORDER BY 1",
        dbname=occdb,
    ).split("\n")
    assert "occ.conflict(anycompatible,anycompatible,anycompatible,jsonb,text)" in functions
    assert "occ.conflict(anycompatible,anycompatible,anycompatible,jsonb,text,jsonb)" in functions
    assert "occ.unknown_version(anycompatible,anycompatible,jsonb,text)" in functions
    assert "occ.forced(anyelement,jsonb,text)" in functions
    assert "occ.forced(anycompatible,jsonb,text,anycompatible)" in functions
    assert "occ.reject(text,text,text,text,text,text)" in functions
    columns = pg.psql(
        "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
        "WHERE attrelid = 'occ.conflict_log'::regclass AND attnum > 0",
        dbname=occdb,
    ).strip()
    assert columns == ("id,at,kind,table_name,key,expected,current,username,application_name,client_addr,"
                       "fingerprint,diff,record")


def test_conflict_error_carries_every_field(pg, occdb, rewriter):
    pg.psql("INSERT INTO subscriptions VALUES (42, 'active', 'n', 4)", dbname=occdb)
    r = rewriter("UPDATE subscriptions SET status = 'paused', notes = 'x' WHERE id = 42 AND version = 3")
    assert r["action"] == "rewrite"
    assert r["writes"] == [{"table": "public.subscriptions", "forced": False,
                            "assigned": [["status", "'paused'"], ["notes", "'x'"]]}]
    conn = connect(pg, occdb)
    e = conflict(conn, r["sql"])
    assert e.pgcode == "40001"
    assert e.diag.message_primary == (
        "occ: version conflict on public.subscriptions (id)=(42): expected version 3, current version 4"
    )
    assert conflict_detail(e.diag.message_detail) == "Current version is 4; the row was changed after version 3."
    assert e.diag.message_hint == HINT
    assert e.diag.schema_name == "public"
    assert e.diag.table_name == "subscriptions"
    assert e.diag.constraint_name == "occ_version"
    assert query(conn, "SELECT status, notes, version FROM subscriptions") == [("active", "n", 4)]


def test_detail_names_the_columns_changed_since_the_read(pg, occdb):
    pg.psql("INSERT INTO subscriptions VALUES (42, 'active', 'n', 4)", dbname=occdb)
    conn = connect(pg, occdb)
    meta = json.dumps({"schema": "public", "table": "subscriptions", "key": ["id", "status"],
                       "version_column": "version", "sqlstate": "40P01", "mode": "enforce", "op": "update",
                       "base": {"id": "42", "status": "trial", "notes": "old", "version": "3"}})
    e = conflict(conn, "SELECT occ.conflict(s.version, 3, s.version, to_jsonb(s.*), %s) FROM subscriptions s"
                 % psycopg2.extensions.adapt(meta).getquoted().decode())
    assert e.pgcode == "40P01"
    assert e.diag.message_primary == (
        "occ: version conflict on public.subscriptions (id, status)=(42, active): expected version 3, current version 4"
    )
    assert conflict_detail(e.diag.message_detail) == "Current version is 4. Changed since your read: status, notes."


def test_missing_row_is_not_a_conflict_and_a_current_one_is_written_once(pg, occdb, rewriter):
    pg.psql("INSERT INTO subscriptions VALUES (1, 'active', 'n', 4)", dbname=occdb)
    conn = connect(pg, occdb)
    assert execute(conn, rewriter("UPDATE subscriptions SET status = 'x' WHERE id = 999 AND version = 4")["sql"]) == 0
    assert execute(conn, rewriter("DELETE FROM subscriptions WHERE id = 999 AND version = 4")["sql"]) == 0
    assert execute(conn, rewriter("UPDATE subscriptions SET status = 'x' WHERE id = 1 AND version = 4")["sql"]) == 1
    assert query(conn, "SELECT status, version FROM subscriptions") == [("x", 5)]


def test_no_false_conflict_when_every_row_is_scanned(pg, occdb, rewriter):
    pg.psql("INSERT INTO subscriptions SELECT i, 'active', 'n', 1 + i % 5 FROM generate_series(1, 2000) i",
            dbname=occdb)
    conn = connect(pg, occdb)
    execute(conn, "SET enable_indexscan = off")
    execute(conn, "SET enable_bitmapscan = off")
    update = rewriter("UPDATE subscriptions SET status = 'paused' WHERE id = 1010 AND version = 1")["sql"]
    delete = rewriter("DELETE FROM subscriptions WHERE id = 1011 AND version = 2")["sql"]
    for sql in (update, delete):
        plan = "\n".join(row[0] for row in query(conn, "EXPLAIN " + sql))
        assert "Seq Scan on subscriptions" in plan
    assert execute(conn, update) == 1
    assert execute(conn, delete) == 1
    assert query(conn, "SELECT status, version FROM subscriptions WHERE id = 1010") == [("paused", 2)]
    assert query(conn, "SELECT count(*), sum(version)::int FROM subscriptions") == [(1999, 5999)]
    assert query(conn, "SELECT count(*) FROM subscriptions WHERE status <> 'active'") == [(1,)]


def wait_until_blocked(conn, pid):
    for _ in range(200):
        if query(conn, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)) == [("Lock",)]:
            return
        time.sleep(0.05)
    raise AssertionError(f"backend {pid} never waited for the row lock")


@pytest.mark.parametrize("statement", [
    "UPDATE subscriptions SET status = 'b' WHERE id = 7 AND version = 1",
    "DELETE FROM subscriptions WHERE id = 7 AND version = 1",
])
def test_read_committed_recheck_sees_the_concurrent_write(pg, occdb, rewriter, statement):
    pg.psql("INSERT INTO subscriptions VALUES (7, 'open', 'n', 1)", dbname=occdb)
    first = connect(pg, occdb)
    second = connect(pg, occdb)
    watcher = connect(pg, occdb)
    first.autocommit = False
    execute(first, "UPDATE subscriptions SET notes = 'first' WHERE id = 7")
    sql = rewriter(statement)["sql"]
    outcome = {}

    def run():
        try:
            outcome["rows"] = execute(second, sql)
        except psycopg2.Error as e:
            outcome["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    wait_until_blocked(watcher, second.get_backend_pid())
    first.commit()
    thread.join(30)
    assert "rows" not in outcome
    assert outcome["error"].pgcode == "40001"
    assert outcome["error"].diag.message_primary == (
        "occ: version conflict on public.subscriptions (id)=(7): expected version 1, current version 2"
    )
    assert query(watcher, "SELECT status, notes, version FROM subscriptions") == [("open", "first", 2)]


def test_read_committed_recheck_of_a_row_that_no_longer_matches_is_not_found(pg, occdb, rewriter):
    pg.psql("INSERT INTO subscriptions VALUES (8, 'open', 'n', 1)", dbname=occdb)
    first = connect(pg, occdb)
    second = connect(pg, occdb)
    first.autocommit = False
    execute(first, "UPDATE subscriptions SET status = 'closed' WHERE id = 8")
    sql = rewriter("UPDATE subscriptions SET notes = 'b' WHERE id = 8 AND status = 'open' AND version = 1")["sql"]
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("rows", execute(second, sql)))
    thread.start()
    wait_until_blocked(first, second.get_backend_pid())
    first.commit()
    thread.join(30)
    assert outcome == {"rows": 0}


def test_bulk_updates_advance_each_row_once(pg, occdb, rewriter):
    pg.psql("INSERT INTO subscriptions SELECT i, 'a', 'n', 2 FROM generate_series(1, 100) i;"
            "INSERT INTO invoices SELECT i, 0, 1 + i % 3 FROM generate_series(1, 100) i", dbname=occdb)
    conn = connect(pg, occdb)
    unchecked = rewriter("UPDATE subscriptions SET notes = 'bulk' WHERE id <= 100")
    assert unchecked["action"] == "forward"
    assert execute(conn, unchecked["sql"]) == 100
    checked = rewriter("UPDATE subscriptions SET notes = 'bulk 2' WHERE id <= 100 AND version = 3")
    assert checked["action"] == "rewrite"
    assert execute(conn, checked["sql"]) == 100
    assert query(conn, "SELECT min(version), max(version) FROM subscriptions") == [(4, 4)]
    proxy_bump = rewriter("UPDATE invoices SET total = total + 1")
    assert proxy_bump["sql"] == "UPDATE invoices SET version = invoices.version + 1, total = total + 1"
    assert execute(conn, proxy_bump["sql"]) == 100
    assert query(conn, "SELECT count(*) FROM invoices WHERE version = 2 + id % 3 AND total = 1") == [(100,)]


def test_shadow_mode_lets_the_write_through_and_reports_it(pg, occdb, rewriter):
    pg.psql("INSERT INTO trials VALUES (1, 'trial', 's3cret', 2)", dbname=occdb)
    with psycopg.connect(pg.dsn(occdb), autocommit=True) as conn:
        notices = collect_notices(conn)
        conn.execute("SET client_min_messages = error")
        sql = rewriter("UPDATE trials SET status = 'paid' WHERE id = 1 AND version = 1")["sql"]
        assert conn.execute(sql).rowcount == 1
        assert conn.execute("SELECT status, version FROM trials").fetchall() == [("paid", 3)]
        assert conn.execute("SHOW client_min_messages").fetchone() == ("error",)
    assert [severity for severity, _, _ in notices] == ["WARNING"]
    assert events(notices) == [{
        "event": "shadow_conflict", "schema": "public", "table": "trials", "key": {"id": 1},
        "expected": "1", "current": "2", "op": "update", "base": None,
        "current_row": {"id": 1, "status": "trial", "secret": "<redacted>", "version": 2},
        "id": AnyConflictId(), "changed": [], "both_changed": None, "writer": None,
    }]
    assert "s3cret" not in pathlib.Path(pg.log_path).read_text()


def test_forced_writes_are_reported_and_other_roles_refused(pg, occdb, rewriter):
    pg.psql("INSERT INTO subscriptions VALUES (1, 'a', 'n', 5); INSERT INTO invoices VALUES (2, 10, 7)", dbname=occdb)
    with psycopg.connect(pg.dsn(occdb), autocommit=True) as conn:
        notices = collect_notices(conn)
        # Under app_managed_version: enforce the statement's version condition is the proxy's check,
        # which the force overrides.
        forced = rewriter("UPDATE subscriptions SET status = 'f' WHERE id = 1 AND version = 2 /*occ:force*/", user="dba")
        assert forced["writes"][0]["forced"] is True
        assert conn.execute(forced["sql"]).rowcount == 1
        forced = rewriter("/*occ:force*/ UPDATE invoices SET total = 0 WHERE id = 2", user="dba")
        assert conn.execute(forced["sql"]).rowcount == 1
        refused = rewriter("UPDATE subscriptions SET status = 'bob' WHERE id = 1 /*occ:force*/", user="bob")
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(refused["sql"])
        assert caught.value.sqlstate == "42501"
        assert caught.value.diag.message_primary == 'occ: role "bob" may not force writes to public.subscriptions'
        assert caught.value.diag.table_name == "subscriptions"
        assert conn.execute("SELECT status, version FROM subscriptions").fetchall() == [("f", 6)]
        assert conn.execute("SELECT total, version FROM invoices").fetchall() == [(0, 8)]
    assert [(e["event"], e["table"], e["key"], e["current"]) for e in events(notices)] == [
        ("forced_write", "subscriptions", {"id": 1}, "5"),
        ("forced_write", "invoices", {"id": 2}, "7"),
    ]


def test_upsert_and_merge_are_checked_like_updates(pg, occdb, rewriter):
    pg.psql("INSERT INTO subscriptions VALUES (1, 'a', 'n', 3), (2, 'b', 'n', 1);"
            "INSERT INTO staging VALUES (1, 'merged', false), (2, 'gone', true), (3, 'new', false)", dbname=occdb)
    conn = connect(pg, occdb)
    upsert = ("INSERT INTO subscriptions AS s (id, status) VALUES (1, 'up') ON CONFLICT (id) "
              "DO UPDATE SET status = excluded.status WHERE s.version = {}")
    e = conflict(conn, rewriter(upsert.format(2))["sql"])
    assert e.diag.message_primary == (
        "occ: version conflict on public.subscriptions (id)=(1): expected version 2, current version 3")
    assert execute(conn, rewriter(upsert.format(3))["sql"]) == 1
    merge = ("MERGE INTO subscriptions t USING staging s ON t.id = s.id "
             "WHEN MATCHED AND s.gone AND t.version = {0} THEN DELETE "
             "WHEN MATCHED AND t.version = {0} THEN UPDATE SET status = s.status "
             "WHEN NOT MATCHED THEN INSERT (id, status) VALUES (s.id, s.status)")
    e = conflict(conn, rewriter(merge.format(4))["sql"])
    assert e.diag.message_primary == (
        "occ: version conflict on public.subscriptions (id)=(2): expected version 4, current version 1")
    execute(conn, "UPDATE subscriptions SET version = 4 WHERE id = 2")  # both rows at version 4 now
    assert execute(conn, rewriter(merge.format(4))["sql"]) == 3
    assert query(conn, "SELECT id, status, version FROM subscriptions ORDER BY id") == [
        (1, "merged", 5), (3, "new", 1)]


def test_uuid_versions(pg, occdb, rewriter):
    pg.psql("INSERT INTO tokens VALUES (1, 's', '8d5f3a1e-0c4b-4f7e-9a51-2b6c7d8e9f01')", dbname=occdb)
    conn = connect(pg, occdb)
    stale = "UPDATE tokens SET secret = 't' WHERE id = 1 AND version = '00000000-0000-0000-0000-000000000000'"
    e = conflict(conn, rewriter(stale)["sql"])
    assert e.diag.message_primary == (
        "occ: version conflict on public.tokens (id)=(1): expected version 00000000-0000-0000-0000-000000000000, "
        "current version 8d5f3a1e-0c4b-4f7e-9a51-2b6c7d8e9f01")
    current = "UPDATE tokens SET secret = 't' WHERE id = 1 AND version = '8d5f3a1e-0c4b-4f7e-9a51-2b6c7d8e9f01'"
    assert execute(conn, rewriter(current)["sql"]) == 1
    [(version,)] = query(conn, "SELECT version::text FROM tokens")
    assert version != "8d5f3a1e-0c4b-4f7e-9a51-2b6c7d8e9f01"


def test_unsupported_form_is_refused_under_reject(pg, occdb, rewriter):
    pg.psql("INSERT INTO lines VALUES (1, 1, 10, 1)", dbname=occdb)
    conn = connect(pg, occdb)
    r = rewriter("SELECT 1; UPDATE lines SET amount = 0 WHERE invoice = 1 AND (version = 1 OR version = 2)")
    assert r["sql"].startswith("SELECT 1; SELECT occ.reject('0A000', ")
    e = conflict(conn, r["sql"])
    assert e.pgcode == "0A000"
    assert e.diag.message_primary == (
        "occ: unsupported write on public.lines: a version condition other than one top-level "
        "`version = constant or parameter` conjunct")
    assert query(conn, "SELECT amount, version FROM lines") == [(10, 1)]


# Read tracking (SPEC 3.2 item 3): the session's read set reaches the rewritten statement as a map
# {key: {"v": version read, "b": {column: value read}}} looked up per row.
PASSTHROUGH = RULES.replace("  app_managed_version: enforce\n", "")
REJECT_UNKNOWN = PASSTHROUGH.replace("defaults:\n", "defaults:\n  on_unknown_version: reject\n")


def read_of(version, **base):
    return {"v": str(version), "b": base}


def test_bulk_update_checks_each_row_against_what_the_session_read(pg, occdb, rewriter):
    pg.psql("INSERT INTO subscriptions SELECT i, 'a', 'n', 1 FROM generate_series(1, 4) i;"
            "UPDATE subscriptions SET status = 'b', version = 2 WHERE id = 2", dbname=occdb)
    conn = connect(pg, occdb)
    sql = "UPDATE subscriptions SET notes = 'bulk' WHERE id <= 4"
    # Rows 1 and 2 were read at version 1; 2 changed since. Rows 3 and 4 were never read.
    stale = rewriter(sql, rules=PASSTHROUGH, reads={"public.subscriptions": {
        "1": read_of(1, id="1", status="a", notes="n"), "2": read_of(1, id="2", status="a", notes="n")}})
    assert stale["effects"] == [{"tables": ["public.subscriptions"], "added_columns": 2, "drop_result": True,
                                 "rows_deleted": False, "command": 0, "savepoint": ""}]
    e = conflict(conn, stale["sql"])
    assert e.pgcode == "40001"
    assert e.diag.message_primary == (
        "occ: version conflict on public.subscriptions (id)=(2): expected version 1, current version 2")
    assert conflict_detail(e.diag.message_detail) == "Current version is 2. Changed since your read: status."
    assert query(conn, "SELECT id, notes, version FROM subscriptions ORDER BY id") == [
        (1, "n", 1), (2, "n", 2), (3, "n", 1), (4, "n", 1)]

    # Read again: every row is written and bumped once; RETURNING tells the session the new versions.
    fresh = rewriter(sql, rules=PASSTHROUGH, reads={"public.subscriptions": {"1": read_of(1), "2": read_of(2)}})
    assert sorted(query(conn, fresh["sql"])) == [("1", "2"), ("2", "3"), ("3", "2"), ("4", "2")]
    assert query(conn, "SELECT id, notes, version FROM subscriptions ORDER BY id") == [
        (1, "bulk", 2), (2, "bulk", 3), (3, "bulk", 2), (4, "bulk", 2)]


def test_the_check_runs_only_on_rows_written_even_when_the_scan_filters(pg, occdb, rewriter):
    pg.psql("INSERT INTO subscriptions SELECT i, 'a', 'n', 1 + i % 5 FROM generate_series(1, 2000) i", dbname=occdb)
    conn = connect(pg, occdb)
    execute(conn, "SET enable_indexscan = off")
    execute(conn, "SET enable_bitmapscan = off")
    # Every row read at a version it no longer has: only row 1010's entry may be looked at.
    reads = {str(i): read_of(99) for i in range(1, 2001)}
    reads["1010"] = read_of(1)
    update = rewriter("UPDATE subscriptions SET status = 'x' WHERE id = 1010 OR id < 0",
                      rules=PASSTHROUGH, reads={"public.subscriptions": reads})["sql"]
    plan = "\n".join(row[0] for row in query(conn, "EXPLAIN " + update))
    assert "Seq Scan on subscriptions" in plan
    assert query(conn, update) == [("1010", "2")]


def test_own_writes_return_key_and_version_as_text_after_the_clients_own_columns(pg, occdb, rewriter):
    pg.psql("INSERT INTO subscriptions VALUES (1, 'a', 'n', 4), (2, 'b', 'n', 1)", dbname=occdb)
    conn = connect(pg, occdb)
    r = rewriter("UPDATE subscriptions s SET notes = 'r' WHERE s.id = 1 RETURNING s.status", rules=PASSTHROUGH,
                 reads={"public.subscriptions": {"1": read_of(4)}})
    assert r["effects"][0]["drop_result"] is False
    assert query(conn, r["sql"]) == [("a", "1", "5")]
    deleted = rewriter("DELETE FROM subscriptions WHERE id = 2", rules=PASSTHROUGH, reads={"public.subscriptions": {}})
    assert deleted["effects"][0]["rows_deleted"] is True
    assert query(conn, deleted["sql"]) == [("2", "1")]
    inserted = rewriter("INSERT INTO subscriptions (id, notes) VALUES (3, 'i') ON CONFLICT DO NOTHING", reads={})
    assert query(conn, inserted["sql"]) == [("3", "1")]
    assert query(conn, "SELECT id, notes, version FROM subscriptions ORDER BY id") == [(1, "r", 5), (3, "i", 1)]


def test_a_select_carries_key_and_version_whatever_the_result_format(pg, occdb, rewriter):
    pg.psql("INSERT INTO subscriptions VALUES (1, 'a', 'n', 4), (2, 'b', 'n', 1);"
            "INSERT INTO lines VALUES (1, 1, 10, 3), (2, 7, 20, 1)", dbname=occdb)
    r = rewriter("SELECT s.id, l.amount FROM subscriptions s JOIN lines l ON l.invoice = s.id ORDER BY id",
                 reads={})
    assert r["effects"][0]["tables"] == ["public.subscriptions", "public.lines"]
    assert r["effects"][0]["added_columns"] == 5
    expected = [(1, 10, "1", "4", "1", "1", "3"), (2, 20, "2", "1", "2", "7", "1")]
    with psycopg.connect(pg.dsn(occdb), autocommit=True) as conn:
        assert conn.execute(r["sql"]).fetchall() == expected
        assert conn.execute(r["sql"], binary=True).fetchall() == expected
    counted = rewriter("SELECT count(*) FROM subscriptions", reads={})
    assert (counted["action"], counted["untracked_reads"], counted["effects"]) == ("forward", 1, [])


def test_rows_the_session_never_read_are_refused_under_reject(pg, occdb, rewriter):
    pg.psql("INSERT INTO subscriptions VALUES (1, 'a', 'n', 4), (2, 'b', 'n', 1)", dbname=occdb)
    conn = connect(pg, occdb)
    reads = {"public.subscriptions": {"1": read_of(4)}}
    for sql in ("UPDATE subscriptions SET notes = 'x' WHERE id IN (1, 2)", "DELETE FROM subscriptions"):
        e = conflict(conn, rewriter(sql, rules=REJECT_UNKNOWN, reads=reads)["sql"])
        assert e.pgcode == "55000"
        assert e.diag.message_primary == (
            "occ: public.subscriptions (id)=(2) was not read by this session: on_unknown_version is reject")
        assert e.diag.message_detail == (
            "The proxy has no version of this row that this session read (never read through the proxy, or longer "
            "ago than read_ttl); current version is 1. Nothing was written.")
        assert e.diag.message_hint == (
            "Read the row through the proxy and retry, or name the version you expect in the statement "
            "(AND version = ...).")
        assert (e.diag.schema_name, e.diag.table_name, e.diag.constraint_name) == ("public", "subscriptions", None)
    assert query(conn, "SELECT id, notes, version FROM subscriptions ORDER BY id") == [(1, "n", 4), (2, "n", 1)]
    # A row it read is written, with no RETURNING: "UPDATE 1" tells the session the next version.
    known = rewriter("UPDATE subscriptions SET notes = 'x' WHERE id = 1", rules=REJECT_UNKNOWN, reads=reads)
    assert known["effects"][0]["row_write"] == {"table": "public.subscriptions", "deletes": False, "key": ["1"],
                                                "version": "4"}
    with conn.cursor() as cur:
        cur.execute(known["sql"])
        assert (cur.statusmessage, cur.description) == ("UPDATE 1", None)
    assert query(conn, "SELECT id, notes, version FROM subscriptions ORDER BY id") == [(1, "x", 5), (2, "n", 1)]


def test_shadow_mode_reports_an_unread_row_and_a_stale_read_and_writes_both(pg, occdb, rewriter):
    pg.psql("INSERT INTO trials VALUES (1, 'trial', 's', 2), (2, 'trial', 's', 1)", dbname=occdb)
    reads = {"public.trials": {"1": read_of(1, status="new", secret="read-s3cret")}}
    sql = rewriter("UPDATE trials SET status = 'paid'", rules=REJECT_UNKNOWN, reads=reads)["sql"]
    with psycopg.connect(pg.dsn(occdb), autocommit=True) as conn:
        notices = collect_notices(conn)
        assert sorted(conn.execute(sql).fetchall()) == [("1", "3"), ("2", "2")]
    got = sorted(events(notices), key=lambda e: e["key"]["id"])
    assert got == [
        {"event": "shadow_conflict", "schema": "public", "table": "trials", "key": {"id": 1}, "expected": "1",
         "current": "2", "op": "update", "base": {"status": "new"},
         "current_row": {"id": 1, "status": "trial", "secret": "<redacted>", "version": 2},
         "id": AnyConflictId(), "changed": ["status"], "both_changed": None, "writer": None},
        {"event": "shadow_unknown_version", "schema": "public", "table": "trials", "key": {"id": 2},
         "expected": None, "current": "1", "op": "update", "base": None,
         "current_row": {"id": 2, "status": "trial", "secret": "<redacted>", "version": 1}},
    ]
    assert "read-s3cret" not in pathlib.Path(pg.log_path).read_text()


def test_a_pinned_write_on_a_table_with_redacted_columns_passes_its_read_without_them(pg, occdb, rewriter):
    pg.psql("INSERT INTO trials VALUES (1, 'trial', 's', 2)", dbname=occdb)
    reads = {"public.trials": {"1": read_of(1, status="new", secret="read-s3cret")}}
    sql = rewriter("UPDATE trials SET status = 'paid' WHERE id = 1", rules=REJECT_UNKNOWN, reads=reads)["sql"]
    assert "::text) END" in sql  # the read as a text literal, not in the meta
    with psycopg.connect(pg.dsn(occdb), autocommit=True) as conn:
        notices = collect_notices(conn)
        assert conn.execute(sql).fetchall() == [("1", "3")]
    assert events(notices) == [
        {"event": "shadow_conflict", "schema": "public", "table": "trials", "key": {"id": 1}, "expected": "1",
         "current": "2", "op": "update", "base": {"status": "new"},
         "current_row": {"id": 1, "status": "trial", "secret": "<redacted>", "version": 2},
         "id": AnyConflictId(), "changed": ["status"], "both_changed": None, "writer": None},
    ]
    assert "read-s3cret" not in pathlib.Path(pg.log_path).read_text()


def test_the_extended_protocol_passes_the_read_row_as_parameters(pg, occdb, rewriter):
    pg.psql("INSERT INTO subscriptions VALUES (1, 'a', 'n', 4), (2, 'b', 'n', 1)", dbname=occdb)
    r = rewriter("UPDATE subscriptions SET notes = $1 WHERE id = $2", rules=PASSTHROUGH, reads={}, extended=True)
    assert (r["client_param_count"], r["expected_params"]) == (2, [
        {"table": "public.subscriptions", "carries": "version", "param_number": 3, "type_oid": 20, "keys": [[[2, ""]]]},
        {"table": "public.subscriptions", "carries": "base", "param_number": 4, "type_oid": 25, "keys": [[[2, ""]]]},
    ])
    with psycopg.connect(pg.dsn(occdb), autocommit=True) as conn:
        def run(notes, key, read):
            # As the session sends it: the added parameters are typed (int8, text), the client's untyped.
            version, base = (None, None) if read is None else (read["v"].encode(), json.dumps(read["b"]).encode())
            return conn.pgconn.exec_params(r["sql"].encode(), [notes, key, version, base], [0, 0, 20, 25])

        stale = run(b"x", b"1", read_of(3, notes="old", status="a"))
        assert stale.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"40001"
        assert conflict_detail(stale.error_field(psycopg.pq.DiagnosticField.MESSAGE_DETAIL)) == (
            "Current version is 4. Changed since your read: notes.")
        # No RETURNING: the command tag tells the session the next version of the row it read.
        assert r["effects"][0]["row_write"] == {"table": "public.subscriptions", "deletes": False, "key": [],
                                                "version": ""}
        current = run(b"x", b"1", read_of(4))
        assert (current.status, current.command_status) == (psycopg.pq.ExecStatus.COMMAND_OK, b"UPDATE 1")
        never_read = run(b"y", b"2", None)
        assert (never_read.status, never_read.command_status) == (psycopg.pq.ExecStatus.COMMAND_OK, b"UPDATE 1")
        assert conn.execute("SELECT id, notes, version FROM subscriptions ORDER BY id").fetchall() == [
            (1, "x", 5), (2, "y", 2)]


def test_the_extended_protocol_passes_a_map_for_writes_on_several_keys(pg, occdb, rewriter):
    pg.psql("INSERT INTO subscriptions VALUES (1, 'a', 'n', 4), (2, 'b', 'n', 1), (3, 'c', 'n', 1)", dbname=occdb)
    r = rewriter("UPDATE subscriptions SET notes = $1 WHERE id IN ($2, $3)", rules=PASSTHROUGH, reads={},
                 extended=True)
    assert r["expected_params"] == [{"table": "public.subscriptions", "carries": "map", "param_number": 4,
                                     "type_oid": 3802, "keys": [[[2, ""]], [[3, ""]]]}]
    with psycopg.connect(pg.dsn(occdb), autocommit=True) as conn:
        def run(notes, keys, reads):
            return conn.pgconn.exec_params(r["sql"].encode(), [notes, *keys, json.dumps(reads).encode()],
                                           [0, 0, 0, 3802])

        stale = run(b"x", [b"1", b"2"], {"1": read_of(4), "2": read_of(0, status="a")})
        assert stale.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"40001"
        assert conflict_detail(stale.error_field(psycopg.pq.DiagnosticField.MESSAGE_DETAIL)) == (
            "Current version is 1. Changed since your read: status.")
        both = run(b"x", [b"1", b"2"], {"1": read_of(4), "2": read_of(1)})
        assert sorted(tuple(both.get_value(i, c) for c in (0, 1)) for i in range(both.ntuples)) == [
            (b"1", b"5"), (b"2", b"2")]
        never_read = run(b"y", [b"3", b"9"], {})
        assert never_read.ntuples == 1
        assert conn.execute("SELECT id, notes, version FROM subscriptions ORDER BY id").fetchall() == [
            (1, "x", 5), (2, "x", 2), (3, "y", 2)]


def test_upserts_and_uuid_versions_check_against_the_read_set(pg, occdb, rewriter):
    pg.psql("INSERT INTO subscriptions VALUES (1, 'a', 'n', 3);"
            "INSERT INTO tokens VALUES (1, 's', '8d5f3a1e-0c4b-4f7e-9a51-2b6c7d8e9f01')", dbname=occdb)
    conn = connect(pg, occdb)
    upsert = ("INSERT INTO subscriptions AS s (id, status) VALUES (1, 'up'), (5, 'new') ON CONFLICT (id) "
              "DO UPDATE SET status = excluded.status")
    e = conflict(conn, rewriter(upsert, rules=PASSTHROUGH, reads={"public.subscriptions": {"1": read_of(2)}})["sql"])
    assert e.diag.message_primary == (
        "occ: version conflict on public.subscriptions (id)=(1): expected version 2, current version 3")
    written = rewriter(upsert, rules=PASSTHROUGH, reads={"public.subscriptions": {"1": read_of(3)}})["sql"]
    assert sorted(query(conn, written)) == [("1", "4"), ("5", "1")]

    token = "UPDATE tokens SET secret = 't' WHERE id = 1"
    stale = {"public.tokens": {"1": read_of("00000000-0000-0000-0000-000000000000")}}
    e = conflict(conn, rewriter(token, rules=PASSTHROUGH, reads=stale)["sql"])
    assert e.diag.message_primary == (
        "occ: version conflict on public.tokens (id)=(1): expected version 00000000-0000-0000-0000-000000000000, "
        "current version 8d5f3a1e-0c4b-4f7e-9a51-2b6c7d8e9f01")
    current = {"public.tokens": {"1": read_of("8d5f3a1e-0c4b-4f7e-9a51-2b6c7d8e9f01")}}
    [(key, version)] = query(conn, rewriter(token, rules=PASSTHROUGH, reads=current)["sql"])
    assert key == "1" and version != "8d5f3a1e-0c4b-4f7e-9a51-2b6c7d8e9f01"
    assert query(conn, "SELECT version::text FROM tokens") == [(version,)]
