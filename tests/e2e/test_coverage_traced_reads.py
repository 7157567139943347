# Reads through CTEs and subqueries in FROM (SPEC 3.9): where the result carries the protected
# table's key and version columns (the server names their table in RowDescription), its rows are
# noted in place, nothing appended, and a stale write after such a read is a conflict.
import psycopg2
import pytest

from occ_helpers import (  # noqa: F401 (occ_proxy_fixture provides the occ_proxy fixture)
    conflict_error,
    connect,
    counters,
    occ_proxy_fixture,
    pg_error,
    read_detail,
    requires_proxy,
    rows,
    rules_yaml,
    run,
)

pytestmark = requires_proxy

READS = [
    "WITH s AS (SELECT * FROM subscriptions WHERE id = 42) SELECT * FROM s",
    "SELECT * FROM (SELECT * FROM subscriptions WHERE id = 42) q",
    "SELECT q.notes, q.version, q.id FROM (SELECT id, notes, version FROM subscriptions) q WHERE q.id = 42",
    "WITH s AS (SELECT * FROM subscriptions) SELECT s.*, o.label FROM s JOIN other o USING (id) WHERE s.id = 42",
]

SCHEMA_EXTRA = "CREATE TABLE other (id int PRIMARY KEY, label text); INSERT INTO other VALUES (42, 'vip');"


def result(dsn, sql):
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return [(d.name, d.type_code) for d in cur.description], cur.statusmessage, cur.fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("sql", READS)
def test_a_read_through_a_cte_or_subquery_is_tracked(pg, db, occ_proxy, sql):
    proxy = occ_proxy(rules_yaml())
    pg.psql(SCHEMA_EXTRA, dbname=db)
    assert result(proxy.dsn(db), sql) == result(pg.dsn(db), sql)
    agent = connect(proxy.dsn(db))
    assert run(agent, sql)[0] == "SELECT 1"
    pg.psql("UPDATE subscriptions SET status = 'cancelled' WHERE id = 42", dbname=db)
    with pytest.raises(psycopg2.errors.SerializationFailure) as caught:
        run(agent, "UPDATE subscriptions SET notes = 'agent' WHERE id = 42")
    changed = ["status"] if "*" in sql else []
    assert pg_error(caught.value) == conflict_error(42, 1, 2, read_detail(2, changed))
    assert rows(pg, db, "SELECT status, notes, version FROM subscriptions WHERE id = 42") == [["cancelled", "old", "2"]]


def test_a_result_without_the_key_and_version_notes_nothing(pg, db, occ_proxy):
    # Nothing to note: the next write of the row is one the session never read (on_unknown_version).
    proxy = occ_proxy(rules_yaml(on_unknown_version="reject"))
    agent = connect(proxy.dsn(db))
    sql = "WITH s AS (SELECT * FROM subscriptions WHERE id = 42) SELECT notes FROM s"
    assert run(agent, sql) == ("SELECT 1", [("old",)])
    with pytest.raises(psycopg2.Error) as caught:
        run(agent, "UPDATE subscriptions SET notes = 'agent' WHERE id = 42")
    assert caught.value.pgcode == "55000"
    assert counters(proxy)["conflicts"] == 0
