# Writes the proxy cannot see into (SPEC 3.9): an UPDATE of a protected table from inside a
# function, procedure or DO block still advances the version, is counted per table as an unchecked
# write with a log line naming the statement's fingerprint, and under on_unsupported: reject is
# refused by the server with nothing written. Direct sessions see none of it.
import re
import urllib.request

import psycopg2
import pytest

from occ_helpers import (  # noqa: F401 (occ_proxy_fixture provides the occ_proxy fixture)
    connect,
    occ_proxy_fixture,
    requires_proxy,
    rows,
    rules_yaml,
    run,
    stats,
)

pytestmark = requires_proxy

FUNCTIONS = """
CREATE FUNCTION touch(k int) RETURNS void LANGUAGE sql AS $$ UPDATE subscriptions SET status = 'touched' WHERE id = k $$;
CREATE PROCEDURE settle(k int) LANGUAGE plpgsql AS $$ BEGIN UPDATE subscriptions SET status = 'settled' WHERE id = k; END $$;
"""


def unchecked(proxy):
    """The table's unchecked writes, in /stats and in /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.stats_port}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    [exported] = re.findall(r'^occproxy_unchecked_writes_total\{table="public\.subscriptions"\} (\d+)$', metrics, re.M)
    return stats(proxy)["tables"]["public.subscriptions"]["unchecked_writes"], int(exported)


def test_writes_inside_functions_procedures_and_do_blocks_are_counted(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())
    pg.psql(FUNCTIONS, dbname=db)
    conn = connect(proxy.dsn(db))
    run(conn, "SELECT touch(42)")
    run(conn, "CALL settle(43)")
    run(conn, "DO $$ BEGIN UPDATE subscriptions SET status = 'done' WHERE id = 44; END $$")
    # A write the proxy sees is not one of them, and no client sees the proxy's notices.
    run(conn, "SELECT * FROM subscriptions WHERE id = 42")
    assert run(conn, "UPDATE subscriptions SET notes = 'plain' WHERE id = 42") == ("UPDATE 1", None)
    assert conn.notices == []
    assert unchecked(proxy) == (3, 3)
    assert rows(pg, db, "SELECT id, status, notes, version FROM subscriptions ORDER BY id") == [
        ["42", "touched", "plain", "3"], ["43", "settled", "n43", "2"], ["44", "done", "n44", "2"]]
    logged = re.findall(r"unchecked write of public\.subscriptions from inside a function, procedure, DO block or "
                        r"trigger \(statement ([0-9a-f]{16})\)", proxy.log_text())
    assert len(logged) == 3 and len(set(logged)) == 3

    # The same calls from a session that does not come through the proxy: no notice, nothing counted.
    direct = connect(pg.dsn(db))
    run(direct, "SELECT touch(42)")
    assert direct.notices == []
    assert unchecked(proxy) == (3, 3)


def test_under_reject_the_server_refuses_them_and_nothing_is_written(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml(on_unsupported="reject"))
    pg.psql(FUNCTIONS, dbname=db)
    conn = connect(proxy.dsn(db))
    for sql in ["SELECT touch(42)", "CALL settle(42)", "DO $$ BEGIN UPDATE subscriptions SET status = 'x' WHERE id = 42; END $$"]:
        with pytest.raises(psycopg2.errors.FeatureNotSupported) as caught:
            run(conn, sql)
        d = caught.value.diag
        assert (d.message_primary, d.message_detail, d.schema_name, d.table_name) == (
            "occ: a write to public.subscriptions from inside a function, procedure, DO block or trigger cannot be "
            "checked against the version this session read (on_unsupported: reject)",
            "Nothing was written.", "public", "subscriptions")
    assert rows(pg, db, "SELECT status, version FROM subscriptions WHERE id = 42") == [["active", "1"]]
    # Plain statements through the proxy, and direct sessions, write as before.
    assert run(conn, "UPDATE subscriptions SET status = 'plain' WHERE id = 42") == ("UPDATE 1", None)
    run(connect(pg.dsn(db)), "SELECT touch(43)")
    assert rows(pg, db, "SELECT id, status, version FROM subscriptions WHERE id IN (42, 43) ORDER BY id") == [
        ["42", "plain", "2"], ["43", "touched", "2"]]
