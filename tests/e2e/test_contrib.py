# contrib/ (SPEC 7): the Prometheus alerting rules pass promtool, and every metric that an alert or
# a Grafana panel selects is served by a running proxy.
import json
import re
import shutil
import subprocess

import yaml

from conftest import REPO, require
from occ_helpers import (  # noqa: F401 (occ_proxy_fixture provides the occ_proxy fixture)
    occ_proxy_fixture,
    requires_proxy,
    rules_yaml,
    wait_for,
)
from test_stats_endpoint import http_get

pytestmark = requires_proxy

RULES_FILE = REPO / "contrib" / "prometheus" / "occproxy.rules.yml"
RULES_TESTS = REPO / "contrib" / "prometheus" / "occproxy.rules.test.yml"
DASHBOARD = REPO / "contrib" / "grafana" / "occproxy.json"
# Metrics of Prometheus itself, not of the proxy.
NOT_OURS = {"up"}


def metric_names(expr):
    """The metric names a PromQL expression selects (identifiers that are not functions, keywords,
    labels or range units)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_grouping = re.sub(r"\b(by|without)\s*\([^)]*\)", "", without_labels)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_grouping)
    names = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()", without_ranges))
    return {n for n in names if n not in {"and", "or", "unless", "on", "ignoring", "bool", "e"} and not n[0].isdigit()}


def test_alerting_rules_pass_promtool():
    promtool = shutil.which("promtool")
    require(promtool, "promtool is missing: scripts/install-deps.sh installs it (Debian package prometheus)")
    checked = subprocess.run([promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True,
                             timeout=60)
    assert (checked.returncode, checked.stdout, checked.stderr) == (
        0, f"Checking {RULES_FILE}\n  SUCCESS: 10 rules found\n\n", "")
    alerts = [rule["alert"] for group in yaml.safe_load(RULES_FILE.read_text())["groups"] for rule in group["rules"]]
    assert alerts == [
        "OccproxyConflictRateHigh", "OccproxyUncheckedWrites", "OccproxyUpstreamDown", "OccproxyUpstreamErrors",
        "OccproxyDown", "OccproxyRulesReloadFailing", "OccproxyConnectionsNearLimit", "OccproxyConnectionsRefused",
        "OccproxyInvariantViolated", "OccproxyInvariantFailing",
    ]


def test_alerts_fire_as_their_unit_tests_expect():
    promtool = shutil.which("promtool")
    require(promtool, "promtool is missing: scripts/install-deps.sh installs it (Debian package prometheus)")
    tested = subprocess.run([promtool, "test", "rules", RULES_TESTS.name], capture_output=True, text=True,
                            timeout=60, cwd=RULES_TESTS.parent)
    assert (tested.returncode, tested.stdout, tested.stderr) == (
        0, f"Unit Testing:  {RULES_TESTS.name}\n  SUCCESS\n\n", "")


def test_every_metric_of_the_alerts_and_the_dashboard_is_served(pg, db, occ_proxy):
    rules = rules_yaml() + yaml.safe_dump({"invariants": [
        {"name": "no_negative_ids", "query": "SELECT id FROM subscriptions WHERE id < 0", "interval": "1m"}]})
    proxy = occ_proxy(rules)
    wait_for("the invariant's first run",
             lambda: json.loads(http_get(proxy, "/invariants")[2])[0]["last_run"] is not None)
    _, _, text = http_get(proxy, "/metrics")
    served = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}

    dashboard = json.loads(DASHBOARD.read_text())
    panels = {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"]}
    assert len(panels) == 12
    used = set()
    for title, exprs in panels.items():
        names = set().union(*map(metric_names, exprs))
        assert names, title
        assert sorted(names - served) == [], title
        used |= names
    assert json.loads(DASHBOARD.read_text())["templating"]["list"][1]["definition"] == \
        "label_values(occproxy_connections_total, instance)"

    alerts = yaml.safe_load(RULES_FILE.read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            names = metric_names(rule["expr"])
            assert names and sorted(names - served - NOT_OURS) == [], rule["alert"]
            used |= names - NOT_OURS
    # The per-table and per-invariant series the panels and alerts select carry their labels.
    assert 'occproxy_unchecked_writes_total{table="public.subscriptions"} 0' in text.splitlines()
    assert 'occproxy_invariant_violations{name="no_negative_ids"} 0' in text.splitlines()
    assert "occproxy_upstream_up 1" in text.splitlines()
    assert "occproxy_client_connections_limit 1000" in text.splitlines()
    assert sorted(used) == [
        "occproxy_added_latency_seconds_bucket", "occproxy_bytes_client_to_server_total",
        "occproxy_bytes_server_to_client_total", "occproxy_client_connections_limit", "occproxy_conflicts_total",
        "occproxy_connections_current", "occproxy_connections_refused_total", "occproxy_forced_writes_total",
        "occproxy_invariant_last_run_failed", "occproxy_invariant_violations", "occproxy_parse_failures_passed_total",
        "occproxy_protocol_errors_total", "occproxy_queries_extended_total", "occproxy_queries_simple_total",
        "occproxy_rules_reload_failed_total", "occproxy_rules_reload_ok_total", "occproxy_shadow_conflicts_total",
        "occproxy_statements_rewritten_total", "occproxy_table_conflicts_total", "occproxy_unchecked_writes_total",
        "occproxy_upstream_errors_total", "occproxy_upstream_up",
    ]
    assert "occproxy_connections_total" in served  # the dashboard's instance variable
