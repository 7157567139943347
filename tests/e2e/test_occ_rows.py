# Row by row: racing writers lose nothing, bulk writes check and bump each row once, and scans that
# filter never raise a conflict for a row the statement does not write (SPEC 3.1, 3.3, 3.5).
import threading

import psycopg2
import psycopg2.errors
import pytest

from occ_helpers import (  # noqa: F401 (occ_proxy_fixture provides the occ_proxy fixture)
    conflict_error,
    counters,
    occ_proxy_fixture,
    pg_error,
    read_detail,
    requires_proxy,
    rows,
    rules_yaml,
)

pytestmark = requires_proxy

ENFORCE = rules_yaml(app_managed_version="enforce")


def connect(dsn):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def run(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.statusmessage, cur.fetchall() if cur.description else None


def read_modify_write(dsn, versioned, threads=16, per_thread=50):
    """Each thread makes `per_thread` successful increments of counter 1, retrying on conflicts."""
    outcome = {"writes": 0, "conflicts": 0, "zero_rows": 0, "errors": []}
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker():
        try:
            conn = connect(dsn)
        except psycopg2.Error as e:
            start.abort()
            with lock:
                outcome["errors"].append(repr(e))
            return
        cur = conn.cursor()
        try:
            start.wait()
            done = 0
            while done < per_thread:
                cur.execute("SELECT value, version FROM counters WHERE id = 1")
                value, version = cur.fetchone()
                try:
                    if versioned:
                        cur.execute("UPDATE counters SET value = %s WHERE id = 1 AND version = %s",
                                    (value + 1, version))
                    else:
                        cur.execute("UPDATE counters SET value = %s WHERE id = 1", (value + 1,))
                except psycopg2.errors.SerializationFailure:
                    with lock:
                        outcome["conflicts"] += 1
                    continue
                with lock:
                    if cur.rowcount == 1:
                        outcome["writes"] += 1
                        done += 1
                    else:
                        outcome["zero_rows"] += 1
        except Exception as e:  # noqa: BLE001 (reported by the test, not lost in a thread)
            with lock:
                outcome["errors"].append(repr(e))
        finally:
            conn.close()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert not any(w.is_alive() for w in workers), "a worker is stuck"
    return outcome


@pytest.mark.slow
def test_racing_writers_lose_no_update_through_the_proxy(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml(["public.counters"], app_managed_version="enforce"),
                      schema="CREATE TABLE counters (id int PRIMARY KEY, value int NOT NULL);"
                             "INSERT INTO counters VALUES (1, 0);")

    through_proxy = read_modify_write(proxy.dsn(db), versioned=True)
    assert (through_proxy["errors"], through_proxy["zero_rows"], through_proxy["writes"]) == ([], 0, 800)
    assert rows(pg, db, "SELECT value, version FROM counters") == [["800", "801"]]
    assert counters(proxy)["conflicts"] == through_proxy["conflicts"]

    # The same application straight against the server, without a version check, loses updates.
    pg.psql("UPDATE counters SET value = 0", dbname=db)
    direct = read_modify_write(pg.dsn(db), versioned=False)
    assert (direct["errors"], direct["zero_rows"], direct["writes"]) == ([], 0, 800)
    final = int(pg.psql("SELECT value FROM counters", dbname=db))
    assert final < 800


BULK_SCHEMA = """
CREATE TABLE subscriptions (
  id int PRIMARY KEY, plan_id int NOT NULL, status text NOT NULL, notes text, version bigint NOT NULL DEFAULT 1);
INSERT INTO subscriptions SELECT g, CASE WHEN g <= 100 THEN 7 ELSE 8 END, 'active', 'n', 1 + g % 5
  FROM generate_series(1, 105) g;
"""


def versions_shifted_by(pg, db, shift):
    """Ids of plan 7 whose version is not its initial one plus `shift`, and of plan 8 changed at all."""
    return rows(pg, db, f"""
        SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM subscriptions
         WHERE version <> 1 + id % 5 + CASE WHEN plan_id = 7 THEN {shift} ELSE 0 END""")


@pytest.mark.parametrize("bump", ["trigger", "proxy"])
def test_bulk_update_checks_and_bumps_each_row_once(pg, db, occ_proxy, bump):
    proxy = occ_proxy(rules_yaml(version_bump=bump), schema=BULK_SCHEMA)
    installed = pg.psql("SELECT count(*) FROM pg_trigger WHERE tgname = 'occ_bump_version'", dbname=db).strip()
    assert installed == ("1" if bump == "trigger" else "0")
    conn = connect(proxy.dsn(db))

    # Versions never read by this session: allowed (on_unknown_version: allow), still bumped once.
    assert run(conn, "UPDATE subscriptions SET status = 'x' WHERE plan_id = 7") == ("UPDATE 100", None)
    assert versions_shifted_by(pg, db, 1) == [[""]]

    # Every row read: each is checked against its own version.
    status, read = run(conn, "SELECT id, status FROM subscriptions WHERE plan_id = 7 ORDER BY id")
    assert (status, len(read)) == ("SELECT 100", 100)
    assert run(conn, "UPDATE subscriptions SET status = 'y' WHERE plan_id = 7") == ("UPDATE 100", None)
    assert versions_shifted_by(pg, db, 2) == [[""]]
    # The session's own writes refreshed what it knows: the versions it read are gone, no conflict.
    assert run(conn, "UPDATE subscriptions SET status = 'y2' WHERE plan_id = 7") == ("UPDATE 100", None)
    assert versions_shifted_by(pg, db, 3) == [[""]]

    # One row changed behind the session's back since its last read fails the whole statement.
    status, read = run(conn, "SELECT id, status, notes FROM subscriptions WHERE plan_id = 7 ORDER BY id")
    assert (status, len(read)) == ("SELECT 100", 100)
    # Under version_bump: proxy no trigger bumps a direct write: this one advances the version itself.
    pg.psql("UPDATE subscriptions SET notes = 'direct', version = version + 1 WHERE id = 50", dbname=db)
    with pytest.raises(psycopg2.errors.SerializationFailure) as caught:
        run(conn, "UPDATE subscriptions SET status = 'z' WHERE plan_id = 7")
    assert pg_error(caught.value) == conflict_error(50, 4, 5, read_detail(5, ["notes"]))
    assert rows(pg, db, "SELECT status, count(*) FROM subscriptions GROUP BY status ORDER BY status") == [
        ["active", "5"], ["y2", "100"]]
    assert versions_shifted_by(pg, db, 3) == [["50"]]


SCAN_SCHEMA = """
CREATE TABLE subscriptions (
  id int PRIMARY KEY, plan_id int NOT NULL, status text NOT NULL, notes text, version bigint NOT NULL DEFAULT 1);
INSERT INTO subscriptions SELECT g, g % 10, 'active', 'n', 1 + g % 7 FROM generate_series(1, 2000) g;
ANALYZE subscriptions;
"""
NO_INDEXES = "SET enable_indexscan = off; SET enable_bitmapscan = off"


def test_no_false_conflicts_when_the_scan_filters(pg, db, occ_proxy):
    proxy = occ_proxy(ENFORCE, schema=SCAN_SCHEMA)
    direct = connect(pg.dsn(db))
    run(direct, NO_INDEXES)
    assert run(direct, "EXPLAIN (COSTS OFF) UPDATE subscriptions SET notes = 'y' WHERE id = 1010") == (
        "EXPLAIN",
        [("Update on subscriptions",), ("  ->  Seq Scan on subscriptions",), ("        Filter: (id = 1010)",)])

    conn = connect(proxy.dsn(db))
    run(conn, NO_INDEXES)
    # Every other row has a version that differs from 3: a check placed in WHERE would trip on one.
    assert run(conn, "UPDATE subscriptions SET notes = 'y' WHERE id = 1010 AND version = 3") == ("UPDATE 1", None)
    assert run(conn, "DELETE FROM subscriptions WHERE id = 1500 AND version = 3") == ("DELETE 1", None)

    # The read set holds 1999 rows, one of them stale: writes to other rows are not affected by it.
    status, read = run(conn, "SELECT id, notes FROM subscriptions")
    assert (status, len(read)) == ("SELECT 1999", 1999)
    pg.psql("UPDATE subscriptions SET notes = 'direct' WHERE id = 5", dbname=db)
    assert run(conn, "UPDATE subscriptions SET notes = 'z' WHERE id = 1011") == ("UPDATE 1", None)
    assert run(conn, "UPDATE subscriptions SET notes = 'z' WHERE plan_id = 1 AND id > 1500") == ("UPDATE 50", None)
    assert run(conn, "DELETE FROM subscriptions WHERE id = 1600") == ("DELETE 1", None)

    # 100, 107 and 114 were all at version 3; 107 changed since: the bulk write fails as a whole.
    pg.psql("UPDATE subscriptions SET notes = 'direct' WHERE id = 107", dbname=db)
    with pytest.raises(psycopg2.errors.SerializationFailure) as caught:
        run(conn, "UPDATE subscriptions SET notes = 'bulk' WHERE id IN (100, 107, 114) AND version = 3")
    assert pg_error(caught.value) == conflict_error(107, 3, 4, read_detail(4, ["notes"]))
    assert rows(pg, db, "SELECT id, notes, version FROM subscriptions WHERE id IN (100, 107, 114) ORDER BY id") == [
        ["100", "n", "3"], ["107", "direct", "4"], ["114", "n", "3"]]
    assert counters(proxy)["conflicts"] == 1
