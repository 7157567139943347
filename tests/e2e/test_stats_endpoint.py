# The stats endpoint (SPEC 4) of a real occproxy: what each path shows after a scripted workload,
# Prometheus and browser checks, the bearer token, and abuse while pgbench runs through the proxy.
import concurrent.futures
import html.parser
import http.client
import json
import os
import pathlib
import re
import shutil
import socket
import struct
import subprocess
import tempfile

import psycopg
import psycopg2
import psycopg2.errors
import pytest

from occ_helpers import requires_proxy, rules_yaml, wait_for

pytestmark = requires_proxy

OUTPUT_DIR = pathlib.Path(__file__).resolve().parent / "output"

SCHEMA = """
CREATE TABLE subscriptions (
  id int PRIMARY KEY,
  status text NOT NULL,
  notes text
);
INSERT INTO subscriptions (id, status, notes) VALUES (42, 'active', 'old'), (43, 'active', 'n43'), (44, 'active', 'n44');
"""

RULES = rules_yaml(app_managed_version="enforce")

ISO_TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"
METRICS_TYPE = "text/plain; version=0.0.4"
PATHS = ("/", "/health", "/stats", "/metrics", "/rules", "/conflicts", "/invariants")


# --- HTTP ---------------------------------------------------------------------------------------

def http_get(proxy, path, headers=None, method="GET"):
    """(status, headers with lower-case names, body text) of one request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.stats_port, timeout=15)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        conn.close()


def get_json(proxy, path, status=200, headers=None):
    got_status, got_headers, body = http_get(proxy, path, headers)
    assert (got_status, got_headers["content-type"]) == (status, JSON_TYPE), body
    return json.loads(body)


def raw_exchange(proxy, data):
    """Sends raw bytes to the stats port and returns everything the server writes until it closes."""
    with socket.create_connection(("127.0.0.1", proxy.stats_port), timeout=15) as s:
        s.sendall(data)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
        return reply


def raw_reply(reply):
    """(status, JSON body) of a raw HTTP response."""
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode()
    assert status_line.startswith("HTTP/1.1 "), reply
    return int(status_line.split()[1]), json.loads(body)


def huge_header(size):
    return b"GET /stats HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * size + b"\r\n\r\n"


# What a client sends and the status it must get back before the server closes the connection.
MALFORMED = {
    "TLS hello": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n", 400),
    "no HTTP version": (b"GET /stats\r\n\r\n", 400),
    "huge header": (huge_header(256 * 1024), 431),
    "body": (b"GET /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"b" * 100000, 413),
}


# --- the scripted workload ----------------------------------------------------------------------

def counter_deltas(before, after):
    return {name: after["counters"][name] - before["counters"][name] for name in after["counters"]}


def conflict_workload(pg, db, proxy):
    """Writes through the proxy (psycopg2 simple protocol, psycopg 3 extended) ending in one conflict.

    The app's read and the competing write go straight to the server: what a read through the proxy
    adds to the counters is the SQL layer's business (tests/e2e/test_occ_*), while everything done
    here has exactly one count the SPEC fixes. Returns the conflicting session's backend pid.
    """
    assert pg.psql("SELECT version FROM subscriptions WHERE id = 42", dbname=db) == "1\n"
    simple = psycopg2.connect(proxy.dsn(db) + " application_name=occ-stats-a")
    simple.autocommit = True
    extended = psycopg.connect(proxy.dsn(db), autocommit=True)
    try:
        with simple.cursor() as cur:
            cur.execute("SELECT 1; SELECT 2")
            assert cur.fetchall() == [(2,)]
        # A job writing straight to the server: the trigger still moves the version to 2.
        pg.psql("UPDATE subscriptions SET status = 'paused' WHERE id = 42", dbname=db)
        with simple.cursor() as cur, pytest.raises(psycopg2.errors.SerializationFailure):
            cur.execute("UPDATE subscriptions SET notes = 'x' WHERE id = 42 AND version = 1")
        with simple.cursor() as cur:
            cur.execute("UPDATE subscriptions SET notes = 'y', version = version + 1 WHERE id = 43 AND version = 1")
            assert cur.statusmessage == "UPDATE 1"
            cur.execute("DELETE FROM subscriptions WHERE id = 44 AND version = 1")
            assert cur.statusmessage == "DELETE 1"
        cur = extended.execute("UPDATE subscriptions SET notes = %s WHERE id = %s AND version = %s", ("z", 43, 2))
        assert cur.statusmessage == "UPDATE 1"
        assert extended.execute("SELECT %s::int + 1", (41,)).fetchall() == [(42,)]
        pid = simple.get_backend_pid()
    finally:
        simple.close()
        extended.close()
    assert pg.psql("SELECT id, status, notes, version FROM subscriptions ORDER BY id", dbname=db) == (
        "42|paused|old|2\n43|active|z|3\n")
    return pid


@pytest.fixture
def occ_stats_proxy(pg, db, make_config, run_occproxy, start_proxy):
    """A proxy in front of `db` with public.subscriptions protected (app-managed versions enforced)."""

    def start():
        pg.psql(SCHEMA, dbname=db)
        migrated = run_occproxy("migrate", "--config", make_config(db, rules=RULES))
        assert migrated.returncode == 0, migrated.output
        return start_proxy(db, rules=RULES)

    return start


def wait_for_startup_probe(proxy):
    """Waits until the proxy has counted and closed start_proxy's probe connection: its connect can
    succeed in the kernel's backlog before the proxy accepts it."""

    def probe_done():
        stats = get_json(proxy, "/stats")
        return stats["counters"]["connections_total"] >= 1 and stats["gauges"]["connections_current"] == 0

    wait_for("the proxy's start-up probe connection to be counted and closed", probe_done)


def run_workload(pg, db, proxy):
    """Runs conflict_workload once the proxy is idle; returns (/stats before, /stats after, pid)."""
    idle = lambda: get_json(proxy, "/stats")["gauges"]["connections_current"] == 0  # noqa: E731
    wait_for_startup_probe(proxy)
    before = get_json(proxy, "/stats")
    pid = conflict_workload(pg, db, proxy)
    wait_for("every client connection to close", idle)
    return before, get_json(proxy, "/stats"), pid


def expected_conflict(db, pid):
    return {
        "kind": "conflict",
        "table": "public.subscriptions",
        "key": {"id": 42},
        "expected": "1",
        "current": "2",
        "user": "postgres",
        "database": db,
        "application_name": "occ-stats-a",
        "backend_pid": pid,
        "diff": {"notes": {"mine": "x", "theirs": "old"}},
    }


def without_variable_fields(record):
    """The record minus ts, client_addr and fingerprint, after checking their shape."""
    record = dict(record)
    assert re.fullmatch(ISO_TS, record.pop("ts")), record
    assert re.fullmatch(r"127\.0\.0\.1:\d+", record.pop("client_addr")), record
    assert re.fullmatch(r"[0-9a-f]{16}", record.pop("fingerprint")), record
    assert re.fullmatch(r"[0-9a-f]{16}", record.pop("id")), record
    return record


# --- tests --------------------------------------------------------------------------------------

def test_every_endpoint_after_a_scripted_workload(pg, db, occ_stats_proxy):
    proxy = occ_stats_proxy()
    before, after, pid = run_workload(pg, db, proxy)

    deltas = counter_deltas(before, after)
    assert deltas.pop("bytes_client_to_server") > 0
    assert deltas.pop("bytes_server_to_client") > 0
    assert deltas == {
        "connections_total": 2,
        "connections_refused": 0,
        "queries_simple": 4,        # the two-statement Query counts once
        "queries_extended": 2,
        "statements_rewritten": 4,  # the stale UPDATE, the UPDATE and DELETE that pass, the extended UPDATE
        "conflicts": 1,
        "shadow_conflicts": 0,
        "merges": 0,
        "shadow_merges": 0,
        "forced_writes": 0,
        "force_refused": 0,
        "unknown_version_rejected": 0,
        "parse_failures_passed": 0,
        "unsupported_passed": 0,
        "unsupported_rejected": 0,
        "reads_tracked": 0,
        "reads_untracked": 0,
        "rules_reload_ok": 0,
        "rules_reload_failed": 0,
        "protocol_errors": 0,
        "upstream_errors": 0,
        "cancels_stale": 0,
        "replies_out_of_sync": 0,
        "audit_dropped": 0,
        "audit_table_errors": 0,
    }
    assert after["gauges"] == {"connections_current": 0}
    assert after["tables"] == {
        "public.subscriptions": {"rewritten": 4, "conflicts": 1, "shadow_conflicts": 0, "forced_writes": 0,
                                 "merges": 0, "shadow_merges": 0, "unchecked_writes": 0},
    }
    # Only the four statements that name the protected table were analysed, and timed.
    latency = after["added_latency_seconds"]
    assert latency["count"] - before["added_latency_seconds"]["count"] == 4
    counts = [bucket["count"] for bucket in latency["buckets"]]
    assert counts == sorted(counts) and counts[-1] == latency["count"]
    assert latency["buckets"][-1]["le"] == "+Inf"
    assert latency["sum"] > 0

    assert get_json(proxy, "/health") == {"status": "ok", "upstream": "up"}

    rules = get_json(proxy, "/rules")
    assert re.fullmatch(ISO_TS, rules.pop("loaded_at")), rules
    assert rules == {
        "path": str(proxy.dir / "rules.yaml"),
        "tables": [{
            "table": "public.subscriptions",
            "key": ["id"],
            "version_column": "version",
            "version_kind": "counter",
            "on_unknown_version": "allow",
            "app_managed_version": "enforce",
            "check_deletes": True,
            "mode": "enforce",
            "version_bump": "trigger",
            "on_unsupported": "passthrough",
            "conflict_sqlstate": "40001",
            "read_ttl": "1m",
            "force": {"allowed_roles": []},
            "redact": [],
            "on_conflict": "reject",
            "track_writer": False,
        }],
    }

    conflicts = get_json(proxy, "/conflicts")
    assert [without_variable_fields(r) for r in conflicts] == [expected_conflict(db, pid)]
    # The page and the audit file show the very same record.
    wait_for("the audit line", lambda: proxy.audit_lines() == conflicts)

    status, headers, page = http_get(proxy, "/")
    assert (status, headers["content-type"], headers["cache-control"]) == (200, HTML_TYPE, "no-store")
    record = conflicts[0]
    assert ("<p>Conflicts: 1 &middot; shadow conflicts: 0 &middot; merges: 0 &middot; shadow merges: 0 &middot; "
            "forced writes: 0 &middot; client connections open: 0</p>") in page
    assert "<h3>Conflict (write refused) on public.subscriptions (id)=(42)</h3>" in page
    assert (f"<dl><dt>Id</dt><dd>{record['id']}</dd><dt>Time</dt><dd>{record['ts']}</dd><dt>Expected version</dt><dd>1</dd>"
            "<dt>Current version</dt><dd>2</dd><dt>User</dt><dd>postgres</dd>"
            f"<dt>Application</dt><dd>occ-stats-a</dd><dt>Client</dt><dd>{record['client_addr']}</dd>"
            f"<dt>Statement fingerprint</dt><dd>{record['fingerprint']}</dd></dl>") in page
    assert ("<tbody><tr><td>notes</td><td></td><td>x</td><td class=\"theirs\">old</td></tr></tbody>") in page


def test_unknown_paths_and_other_methods_are_refused(db, start_proxy):
    proxy = start_proxy(db)
    status, headers, body = http_get(proxy, "/nope?x=1")
    assert (status, json.loads(body)) == (404, {"error": "unknown path /nope"})
    for path in PATHS:
        status, headers, body = http_get(proxy, path, method="POST")
        assert (status, headers["allow"], json.loads(body)) == (
            405, "GET", {"error": "method POST not allowed, use GET"})
    # A query string does not change the route.
    assert get_json(proxy, "/health?verbose=1") == {"status": "ok", "upstream": "up"}


def test_health_follows_the_upstream(pg, db, start_proxy):
    proxy = start_proxy(db)
    assert get_json(proxy, "/health") == {"status": "ok", "upstream": "up"}
    pg.stop()
    try:
        # The probe remembers its answer for a second.
        down = {"status": "unavailable", "upstream": "down"}
        wait_for("/health to report the upstream down", lambda: http_get(proxy, "/health")[0] == 503)
        assert get_json(proxy, "/health", status=503) == down
        for path in PATHS:
            if path != "/health":
                assert http_get(proxy, path)[0] == 200, path
    finally:
        pg.start()
    wait_for("/health to report the upstream up", lambda: http_get(proxy, "/health")[0] == 200)
    assert get_json(proxy, "/health") == {"status": "ok", "upstream": "up"}
    with psycopg2.connect(proxy.dsn(db)) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchall() == [(1,)]
    conn.close()
    assert proxy.process.poll() is None


def prometheus_samples(text):
    """{sample name with labels: value} of a Prometheus text exposition."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_pass_promtool_and_match_stats(pg, db, occ_stats_proxy):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: scripts/install-deps.sh installs it (Debian package prometheus)")
    proxy = occ_stats_proxy()
    _, snapshot, _ = run_workload(pg, db, proxy)

    status, headers, text = http_get(proxy, "/metrics")
    assert (status, headers["content-type"]) == (200, METRICS_TYPE)
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                             timeout=60)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", ""), text

    samples = prometheus_samples(text)
    expected = {}
    for name, value in snapshot["counters"].items():
        expected["occproxy_" + name + ("" if name.endswith("_total") else "_total")] = value
    expected["occproxy_connections_current"] = 0
    table = dict(snapshot["tables"]["public.subscriptions"])
    # Unchecked writes (none here) have a family of their own, by table.
    expected['occproxy_unchecked_writes_total{table="public.subscriptions"}'] = table.pop("unchecked_writes")
    for name, value in table.items():
        expected[f'occproxy_table_{name}_total{{table="public.subscriptions"}}'] = value
    # Not on /stats: what the endpoint itself knows.
    expected["occproxy_upstream_up"] = 1
    expected["occproxy_client_connections_limit"] = 1000
    for bucket in snapshot["added_latency_seconds"]["buckets"]:
        le = bucket["le"] if bucket["le"] == "+Inf" else repr(bucket["le"])
        expected[f'occproxy_added_latency_seconds_bucket{{le="{le}"}}'] = bucket["count"]
    expected["occproxy_added_latency_seconds_count"] = snapshot["added_latency_seconds"]["count"]
    expected["occproxy_added_latency_seconds_sum"] = pytest.approx(snapshot["added_latency_seconds"]["sum"])
    assert samples == expected
    assert samples["occproxy_conflicts_total"] == 1
    assert samples['occproxy_table_conflicts_total{table="public.subscriptions"}'] == 1


class PageReader(html.parser.HTMLParser):
    """Headings, definition lists and table rows of the conflicts page, as text."""

    def __init__(self):
        super().__init__()
        self.headings, self.definitions, self.rows = [], [], []
        self._text = None
        self._row = None

    def handle_starttag(self, tag, attrs):
        if tag in ("h3", "dt", "dd", "td", "th"):
            self._text = ""
        elif tag == "tr":
            self._row = []

    def handle_data(self, data):
        if self._text is not None:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "h3":
            self.headings.append(self._text)
        elif tag == "dt":
            self.definitions.append([self._text])
        elif tag == "dd":
            self.definitions[-1].append(self._text)
        elif tag in ("td", "th"):
            self._row.append(self._text)
        elif tag == "tr":
            self.rows.append(self._row)
        if tag in ("h3", "dt", "dd", "td", "th"):
            self._text = None


def chromium(url, *args, timeout=120):
    """Runs headless Chromium on `url` with a throwaway profile; returns the completed process."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("chromium is missing: scripts/install-deps.sh installs it")
    with tempfile.TemporaryDirectory(prefix="occ-chromium-") as profile:
        result = subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--window-size=1200,900", *args, url],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
    assert result.returncode == 0, result.stderr
    return result


def png_size(path):
    data = pathlib.Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_conflicts_page_in_headless_chromium(pg, db, occ_stats_proxy):
    proxy = occ_stats_proxy()
    run_workload(pg, db, proxy)
    [record] = get_json(proxy, "/conflicts")
    url = f"http://127.0.0.1:{proxy.stats_port}/"

    OUTPUT_DIR.mkdir(exist_ok=True)
    # Screenshots are looked at, never committed.
    screenshot = OUTPUT_DIR / "conflicts.png"
    screenshot.unlink(missing_ok=True)
    chromium(url, f"--screenshot={screenshot}")
    assert png_size(screenshot) == (1200, 900)
    print(f"conflicts page screenshot: {screenshot}")

    page = PageReader()
    page.feed(chromium(url, "--dump-dom").stdout)
    assert page.headings == ["Conflict (write refused) on public.subscriptions (id)=(42)"]
    assert page.definitions == [
        ["Id", record["id"]],
        ["Time", record["ts"]],
        ["Expected version", "1"],
        ["Current version", "2"],
        ["User", "postgres"],
        ["Application", "occ-stats-a"],
        ["Client", record["client_addr"]],
        ["Statement fingerprint", record["fingerprint"]],
    ]
    assert page.rows == [
        ["Table", "Conflicts", "Merges", "Shadow conflicts", "Shadow merges", "Forced writes"],
        ["public.subscriptions", "1", "0", "0", "0", "0"],
        ["Column", "Base (read)", "Mine (written)", "Theirs (current)"],
        ["notes", "", "x", "old"],
    ]


def test_bearer_token_guards_every_path(db, start_proxy):
    proxy = start_proxy(db, config={"stats": {"token": "s3cret"}})
    refused = {"error": "missing or wrong bearer token"}
    for path in PATHS:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0"},
                        {"Authorization": "Bearer s3cret2"}, {"Authorization": "s3cret"}):
            status, got_headers, body = http_get(proxy, path, headers)
            assert (status, got_headers["www-authenticate"], json.loads(body)) == (
                401, 'Bearer realm="occproxy"', refused), (path, headers)
        for scheme in ("Bearer", "bearer"):
            status, _, _ = http_get(proxy, path, {"Authorization": f"{scheme} s3cret"})
            assert status == 200, (path, scheme)


def pgbench_env(target):
    return dict(os.environ, PGHOST=target.host, PGPORT=str(target.port), PGUSER="postgres", PGPASSWORD="postgres")


@pytest.mark.slow
def test_malformed_and_concurrent_requests_while_pgbench_runs(pg, db, start_proxy):
    init = subprocess.run([str(pg.bindir / "pgbench"), "-i", "-q", "-s", "1", db], env=pgbench_env(pg),
                          capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    proxy = start_proxy(db)

    for name, (data, status) in MALFORMED.items():
        reply = raw_exchange(proxy, data)
        assert raw_reply(reply)[0] == status, (name, reply[:200])
    # More than the socket buffers hold: the server reads the rest before closing, so the client
    # finishes sending and reads the answer instead of getting a reset.
    assert raw_reply(raw_exchange(proxy, huge_header(8 * 1024 * 1024))) == (431, {"error": "request header too large"})

    wait_for_startup_probe(proxy)
    before = get_json(proxy, "/stats")
    bench = subprocess.Popen(
        [str(pg.bindir / "pgbench"), "-c", "4", "-T", "10", "-S", db],
        env=pgbench_env(proxy), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for("pgbench's four clients", lambda: get_json(proxy, "/stats")["gauges"]["connections_current"] == 4)

        malformed = list(MALFORMED.values())

        def one(i):
            """(what was asked, status expected, status and content type got) of request i."""
            if i % 10 == 0:
                data, status = malformed[i // 10 % len(malformed)]
                return data[:20], status, raw_reply(raw_exchange(proxy, data))[0]
            path = PATHS[i % len(PATHS)]
            status, headers, body = http_get(proxy, path)
            content_type = {"/": HTML_TYPE, "/metrics": METRICS_TYPE}.get(path, JSON_TYPE)
            if content_type == JSON_TYPE:
                json.loads(body)
            return path, (200, content_type), (status, headers["content-type"])

        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            answers = list(pool.map(one, range(1000)))
        assert len(answers) == 1000
        assert [answer for answer in answers if answer[1] != answer[2]] == []
        assert bench.poll() is None, "pgbench ended before the requests were done"
        out, err = bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    assert bench.returncode == 0, err
    assert "number of failed transactions: 0 (0.000%)" in out, out
    assert "error" not in err.lower(), err
    processed = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
    assert processed > 0
    assert proxy.process.poll() is None
    assert get_json(proxy, "/health") == {"status": "ok", "upstream": "up"}

    wait_for("pgbench's connections to close",
             lambda: get_json(proxy, "/stats")["gauges"]["connections_current"] == 0)
    deltas = counter_deltas(before, get_json(proxy, "/stats"))
    assert deltas["bytes_client_to_server"] > 0 and deltas["bytes_server_to_client"] > 0
    # pgbench's set-up connection (scale and partitioning queries, two VACUUMs, a TRUNCATE), then its
    # four clients, one Query per select-only transaction; the HTTP requests count nowhere.
    assert {name: value for name, value in deltas.items() if not name.startswith("bytes_")} == {
        name: 0 for name in deltas if not name.startswith("bytes_")
    } | {"connections_total": 5, "queries_simple": processed + 5}
