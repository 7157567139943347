# Shared steps of the OCC end-to-end tests: a migrated protected schema behind a proxy, errors, stats, audit.
import json
import os
import re
import time
import urllib.request

import psycopg2
import pytest
import yaml

# The OCC tests drive the proxy's own behaviour; against the bare server there is nothing to check.
requires_proxy = pytest.mark.skipif(
    os.environ.get("OCC_E2E_DIRECT") == "1", reason="checks what occproxy adds to the server's behaviour"
)

SUBSCRIPTIONS = """
CREATE TABLE subscriptions (
  id int PRIMARY KEY,
  plan_id int NOT NULL DEFAULT 1,
  status text NOT NULL,
  notes text
);
INSERT INTO subscriptions (id, status, notes)
VALUES (42, 'active', 'old'), (43, 'active', 'n43'), (44, 'active', 'n44');
"""

CONFLICT_HINT = (
    "Re-read the row and retry the transaction. A role listed in force.allowed_roles can override with /*occ:force*/."
)


def conflict_message(key, expected, current, table="public.subscriptions"):
    return (f"occ: version conflict on {table} (id)=({key}): "
            f"expected version {expected}, current version {current}")


def rules_yaml(tables=("public.subscriptions",), **defaults):
    """A rules file: `tables` are names (key [id]) or full table mappings; keyword arguments become defaults."""
    doc = {}
    if defaults:
        doc["defaults"] = defaults
    doc["tables"] = [t if isinstance(t, dict) else {"table": t, "key": ["id"]} for t in tables]
    return yaml.safe_dump(doc, sort_keys=False)


def migrate(make_config, run_occproxy, db, rules):
    result = run_occproxy("migrate", "--config", make_config(db, rules=rules))
    assert result.returncode == 0, result.output
    return result.output


@pytest.fixture(name="occ_proxy")
def occ_proxy_fixture(pg, db, make_config, run_occproxy, start_proxy):
    """occ_proxy(rules, schema=SUBSCRIPTIONS, config=None) -> Proxy in front of a migrated `db`."""

    def start(rules, schema=SUBSCRIPTIONS, config=None):
        pg.psql(schema, dbname=db)
        migrate(make_config, run_occproxy, db, rules)
        return start_proxy(db, rules=rules, config=config)

    return start


CONFLICT_ID = re.compile(r"(.*) Conflict id: ([0-9a-f]{16})\.", re.S)


class AnyConflictId:
    """Equal to any conflict id (16 hex digits): ids are random, the tests that need one read it."""

    def __eq__(self, other):
        return isinstance(other, str) and re.fullmatch(r"[0-9a-f]{16}", other) is not None

    def __repr__(self):
        return "<any conflict id>"


def split_detail(detail):
    """(DETAIL without its trailing ` Conflict id: <id>.`, the id or None)."""
    m = CONFLICT_ID.fullmatch(detail or "")
    return (m.group(1), m.group(2)) if m else (detail, None)


def with_id(detail):
    """A conflict's DETAIL as mask_ids shows it: the id at its end masked."""
    return detail + " Conflict id: <id>."


def mask_ids(value):
    """Driver output with every conflict id masked (ids are random), in strings, lists and dicts."""
    if isinstance(value, str):
        return re.sub(r"Conflict id: [0-9a-f]{16}\.", "Conflict id: <id>.", value)
    if isinstance(value, list):
        return [mask_ids(v) for v in value]
    if isinstance(value, dict):
        return {k: mask_ids(v) for k, v in value.items()}
    return value


def conflict_detail(detail):
    """A conflict's DETAIL without the id it ends with, which must be there."""
    if isinstance(detail, bytes):
        detail = detail.decode()
    text, conflict_id = split_detail(detail)
    assert conflict_id is not None, detail
    return text


def error_fields(sqlstate, d):
    detail, conflict_id = split_detail(d.message_detail)
    fields = {
        "sqlstate": sqlstate,
        "message": d.message_primary,
        "detail": detail,
        "hint": d.message_hint,
        "schema": d.schema_name,
        "table": d.table_name,
        "constraint": d.constraint_name,
    }
    if conflict_id is not None:
        fields["conflict_id"] = conflict_id
    return fields


def pg_error(e):
    """What a program can match a psycopg2 error on; a conflict's id, named at the end of its DETAIL,
    comes apart as conflict_id."""
    return error_fields(e.pgcode, e.diag)


def psycopg3_error(e):
    """pg_error's fields from a psycopg 3 error."""
    return error_fields(e.sqlstate, e.diag)


def conflict_error(key, expected, current, detail, sqlstate="40001", table="subscriptions"):
    """The full conflict error a psycopg2 client sees (SPEC 3.5)."""
    return {
        "sqlstate": sqlstate,
        "message": conflict_message(key, expected, current, table="public." + table),
        "detail": detail,
        "hint": CONFLICT_HINT,
        "schema": "public",
        "table": table,
        "constraint": "occ_version",
        "conflict_id": AnyConflictId(),
    }


def unread_detail(expected, current):
    """DETAIL of a conflict on a row the writer never read through the proxy."""
    return f"Current version is {current}; the row was changed after version {expected}."


def read_detail(current, changed):
    """DETAIL of a conflict on a row the writer read through the proxy."""
    if not changed:
        return f"Current version is {current}. No column differs from your read."
    return f"Current version is {current}. Changed since your read: {', '.join(changed)}."


def rows(pg, db, sql):
    """Rows of a query run directly on the server, as lists of text fields."""
    return [line.split("|") for line in pg.psql(sql, dbname=db).splitlines()]


def subscription(pg, db, id=42):
    return rows(pg, db, f"SELECT status, notes, version FROM subscriptions WHERE id = {id}")


# --- psycopg2, as a legacy app uses it --------------------------------------------------------------

def connect(dsn, autocommit=True, **extra):
    conn = psycopg2.connect(dsn + "".join(f" {k}={v}" for k, v in extra.items()))
    conn.autocommit = autocommit
    return conn


def run(conn, sql, args=None):
    """(status message, rows or None) of one statement."""
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.statusmessage, cur.fetchall() if cur.description else None


def fails(conn, sql, args=None):
    """The error fields of a statement that must fail."""
    with pytest.raises(psycopg2.Error) as caught:
        run(conn, sql, args)
    return pg_error(caught.value)


def http_json(proxy, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.stats_port}{path}", timeout=5) as response:
        return json.loads(response.read())


def stats(proxy):
    return http_json(proxy, "/stats")


def counters(proxy):
    return stats(proxy)["counters"]


def wait_for(what, condition, timeout=10):
    """Polls `condition` until it returns a true value (returned) or fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def wait_for_audit(proxy, count, timeout=10):
    """The audit records once `count` of them are written (the writer is asynchronous), and no more."""
    wait_for(f"{count} audit lines in {proxy.audit_path}", lambda: len(proxy.audit_lines()) >= count, timeout)
    # A record that should not be there would come through the same queue: give it a moment to show.
    time.sleep(0.3)
    lines = proxy.audit_lines()
    assert len(lines) == count, lines
    return lines


def only_audit_line(proxy):
    """The one audit record, without the fields that differ from run to run (checked for their form)."""
    [line] = wait_for_audit(proxy, 1)
    assert re.fullmatch(r"127\.0\.0\.1:\d+", line.pop("client_addr"))
    assert re.fullmatch(r"[0-9a-f]{16}", line.pop("fingerprint"))
    assert re.fullmatch(r"[0-9a-f]{16}", line.pop("id"))
    line.pop("ts")
    return line
