# Reconciliation invariants (SPEC 7): run on admin_dsn off the client path, exported on /metrics
# and /invariants, each new violation logged once, failures reported and never retried in a loop.
import re
import time

import psycopg2
import yaml

from occ_helpers import http_json, requires_proxy, wait_for
from test_stats_endpoint import http_get, prometheus_samples

pytestmark = requires_proxy

LEDGER = """
CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);
CREATE TABLE transactions (account_id int NOT NULL REFERENCES accounts, amount int NOT NULL);
INSERT INTO accounts VALUES (1, 100), (2, 50);
INSERT INTO transactions VALUES (1, 60), (1, 40), (2, 50);
"""

LEDGER_QUERY = ("SELECT a.id, a.balance, sum(t.amount) AS ledger FROM accounts a "
                "JOIN transactions t ON t.account_id = a.id "
                "GROUP BY a.id, a.balance HAVING a.balance <> sum(t.amount) ORDER BY a.id")
INTERVAL = 2.0  # seconds: the invariants below run this often


def invariants_rules(*invariants):
    return yaml.safe_dump({"invariants": list(invariants)}, sort_keys=False)


def ledger_invariant(**extra):
    return {"name": "balance_matches_ledger", "query": LEDGER_QUERY, "interval": "2s", **extra}


def invariant(proxy, name):
    [found] = [i for i in http_json(proxy, "/invariants") if i["name"] == name]
    return found


def runs_after(proxy, name, when):
    """The invariant's state once a run that started after `when` (its last_run text) has finished."""
    return wait_for(f"a run of {name} after {when}",
                    lambda: (lambda i: i if i["last_run"] not in (None, when) else None)(invariant(proxy, name)),
                    timeout=INTERVAL + 3)


def invariant_samples(proxy, name):
    _, _, text = http_get(proxy, "/metrics")
    label = f'{{name="{name}"}}'
    return {k[:-len(label)]: v for k, v in prometheus_samples(text).items() if k.endswith(label)
            and not k.endswith("timestamp_seconds" + label) and not k.endswith("duration_seconds" + label)}


def log_lines(proxy, pattern):
    return [line for line in proxy.log_text().splitlines() if re.search(pattern, line)]


def test_a_direct_write_that_breaks_an_invariant_shows_within_one_interval_and_clears(pg, db, start_proxy):
    pg.psql(LEDGER, dbname=db)
    proxy = start_proxy(db, rules=invariants_rules(ledger_invariant()))
    wait_for("the first run", lambda: invariant(proxy, "balance_matches_ledger")["last_run"])
    holds = invariant(proxy, "balance_matches_ledger")
    assert (holds["violations"], holds["rows"], holds["last_error"], holds["errors"]) == (0, [], None, 0)
    assert (holds["query"], holds["interval"], holds["timeout"]) == (LEDGER_QUERY, "2s", "2s")
    assert invariant_samples(proxy, "balance_matches_ledger") == {
        "occproxy_invariant_violations": 0, "occproxy_invariant_last_run_failed": 0,
        "occproxy_invariant_errors_total": 0}

    # A write that bypasses the application's bookkeeping, straight to the server.
    pg.psql("UPDATE accounts SET balance = balance + 5 WHERE id = 1", dbname=db)
    broken_at = time.monotonic()
    broken = wait_for("the violation on /invariants",
                      lambda: (lambda i: i if i["violations"] else None)(invariant(proxy, "balance_matches_ledger")),
                      timeout=INTERVAL + 3)
    # One interval, plus the run itself and the polling.
    assert time.monotonic() - broken_at < INTERVAL + 1.5
    assert (broken["violations"], broken["rows"], broken["last_error"]) == (
        1, [{"id": "1", "balance": "105", "ledger": "100"}], None)
    assert invariant_samples(proxy, "balance_matches_ledger") == {
        "occproxy_invariant_violations": 1, "occproxy_invariant_last_run_failed": 0,
        "occproxy_invariant_errors_total": 0}
    _, _, page = http_get(proxy, "/")
    assert "<tr><td>balance_matches_ledger</td><td>1</td><td>" + broken["last_run"] + "</td><td></td></tr>" in page
    assert ("<h3>Invariant balance_matches_ledger: 1 violating rows</h3><table><thead><tr><th>balance</th><th>id</th>"
            "<th>ledger</th></tr></thead><tbody><tr><td>105</td><td>1</td><td>100</td></tr></tbody></table>") in page

    # Two more runs find the same row: it was logged once, when it was new.
    again = runs_after(proxy, "balance_matches_ledger", broken["last_run"])
    runs_after(proxy, "balance_matches_ledger", again["last_run"])
    assert len(log_lines(proxy, r'invariant balance_matches_ledger: violated by '
                                r'\{"balance":"105","id":"1","ledger":"100"\}$')) == 1

    pg.psql("UPDATE accounts SET balance = balance - 5 WHERE id = 1", dbname=db)
    fixed = wait_for("the violation to clear",
                     lambda: (lambda i: i if i["violations"] == 0 else None)(invariant(proxy, "balance_matches_ledger")),
                     timeout=INTERVAL + 3)
    assert (fixed["rows"], fixed["last_error"], fixed["errors"]) == ([], None, 0)
    assert invariant_samples(proxy, "balance_matches_ledger")["occproxy_invariant_violations"] == 0
    assert len(log_lines(proxy, r"invariant balance_matches_ledger: holds again$")) == 1


def test_a_failing_or_slow_query_is_reported_not_retried_and_the_proxy_keeps_serving(pg, db, start_proxy):
    pg.psql(LEDGER, dbname=db)
    broken = {"name": "broken", "query": "SELECT * FROM no_such_table", "interval": "1s"}
    slow = {"name": "slow", "query": "SELECT pg_sleep(5)", "interval": "1s", "timeout": "300ms"}
    proxy = start_proxy(db, rules=invariants_rules(broken, slow, ledger_invariant()))
    started = time.monotonic()
    for name in ("broken", "slow"):
        wait_for(f"{name} to fail", lambda: invariant(proxy, name)["errors"] >= 1, timeout=5)
    assert invariant(proxy, "broken")["last_error"] == 'ERROR:  relation "no_such_table" does not exist'
    assert invariant(proxy, "slow")["last_error"] == "ERROR:  canceling statement due to statement timeout"
    assert invariant(proxy, "slow")["timeout"] == "300ms"

    # The proxy relays all along, and the healthy invariant still runs.
    with psycopg2.connect(proxy.dsn(db)) as conn, conn.cursor() as cur:
        cur.execute("SELECT balance FROM accounts WHERE id = 1")
        assert cur.fetchall() == [(100,)]
    assert invariant(proxy, "balance_matches_ledger")["last_error"] is None

    time.sleep(3)
    elapsed = time.monotonic() - started
    for name in ("broken", "slow"):
        # One attempt per interval at most: a failure is never retried at once.
        assert 1 <= invariant(proxy, name)["errors"] <= int(elapsed / 1.0) + 1, name
        assert invariant_samples(proxy, name)["occproxy_invariant_last_run_failed"] == 1
        # The same failure at every run is logged once.
        assert len(log_lines(proxy, rf"invariant {name}: query failed \(next run in 1000 ms\): ")) == 1
    assert invariant_samples(proxy, "broken")["occproxy_invariant_errors_total"] == invariant(proxy, "broken")["errors"]
    assert http_get(proxy, "/health")[0] == 200

    # SIGHUP picks up the mended query; the unchanged invariants keep their state.
    errors_before = invariant(proxy, "slow")["errors"]
    (proxy.dir / "rules.yaml").write_text(invariants_rules(
        {**broken, "query": "SELECT 1 AS one WHERE false"}, slow, ledger_invariant()))
    proxy.reload()
    wait_for("the reload", lambda: log_lines(proxy, r"SIGHUP: rules reloaded"))
    mended = wait_for("the mended query to run",
                      lambda: (lambda i: i if i["last_error"] is None and i["last_run"] else None)(
                          invariant(proxy, "broken")))
    assert (mended["query"], mended["errors"], mended["violations"]) == ("SELECT 1 AS one WHERE false", 0, 0)
    assert invariant(proxy, "slow")["errors"] >= errors_before
    assert len(log_lines(proxy, r"invariant slow: query failed")) == 1


def test_check_runs_each_invariant_once(pg, db, make_config, run_occproxy):
    pg.psql(LEDGER + "UPDATE accounts SET balance = 0 WHERE id = 2;", dbname=db)
    config = make_config(db, rules=invariants_rules(
        ledger_invariant(), {"name": "broken", "query": "SELEC 1", "interval": "1m"}))
    result = run_occproxy("check", "--config", config)
    assert result.returncode == 1, result.output
    assert result.stdout.splitlines()[-2:] == [
        "invariant balance_matches_ledger: ok, 1 violating rows",
        'invariant broken: query failed: ERROR:  syntax error at or near "SELEC"',
    ]


def test_invariants_need_admin_dsn(pg, db, make_config, run_occproxy):
    config = make_config(db, rules=invariants_rules(ledger_invariant()), config={"admin_dsn": ""})
    text = config.read_text().replace("admin_dsn: ''\n", "")
    config.write_text(text)
    result = run_occproxy("check", "--config", config)
    assert (result.returncode, result.stderr) == (
        2, f"{config.parent / 'rules.yaml'}: invariants: they run on admin_dsn, which {config} does not set\n")
