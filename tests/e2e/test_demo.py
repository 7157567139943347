# The demo (occproxy with no --config): its printed steps provoke a conflict with SQL that names no
# version, then show a merge.
import json
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import psycopg2
import pytest

from occ_helpers import requires_proxy, split_detail

pytestmark = requires_proxy


def test_the_demo_shows_a_legacy_conflict_then_a_merge(occproxy_bin):
    demo = subprocess.Popen([str(occproxy_bin)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    printed = []
    ready = threading.Event()

    def read():
        for line in demo.stdout:
            printed.append(line)
            if line.startswith("Stop with Ctrl-C"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(120), "".join(printed)
        text = "".join(printed)
        port = re.search(r"Connect through the proxy: +psql 'host=127\.0\.0\.1 port=(\d+) ", text).group(1)
        stats_port = re.search(r"Stats: +http://127\.0\.0\.1:(\d+)/", text).group(1)
        # The printed steps name no version.
        steps = re.findall(r"^  [AB]: (.*?;)", text, re.M)
        assert steps == [
            "SELECT * FROM subscriptions WHERE id = 42;",
            "UPDATE subscriptions SET status = 'paused' WHERE id = 42;",
            "UPDATE subscriptions SET notes = 'call back' WHERE id = 42;",
            "SELECT * FROM invoices WHERE id = 2;",
            "UPDATE invoices SET paid = true WHERE id = 2;",
            "UPDATE invoices SET amount_cents = 20900 WHERE id = 2;",
            "SELECT * FROM invoices WHERE id = 2;",
        ]
        assert not any("version" in step for step in steps)

        def session(name):
            # The proxy starts listening right after it prints the steps.
            deadline = time.monotonic() + 30
            while True:
                try:
                    conn = psycopg2.connect(f"host=127.0.0.1 port={port} dbname=postgres user=postgres "
                                            f"application_name={name}")
                    break
                except psycopg2.OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            conn.autocommit = True
            return conn.cursor()

        a, b = session("agent"), session("billing")
        results = []
        for i, step in enumerate(steps):
            cur = b if i in (1, 4) else a
            try:
                cur.execute(step)
                results.append(cur.fetchall() if cur.description else cur.statusmessage)
            except psycopg2.Error as e:
                results.append((e.pgcode, e.diag.message_primary, split_detail(e.diag.message_detail)))
        conflict = results[2]
        detail, conflict_id = conflict[2]
        assert (conflict[0], conflict[1]) == (
            "40001", "occ: version conflict on public.subscriptions (id)=(42): expected version 1, current version 2")
        assert re.fullmatch(r"Current version is 2, written by postgres \(billing\) at \S+Z\. "
                            r"Changed since your read: status\.", detail)
        assert results[:2] == [[(42, "ACME Corp", 7, "active", "renews in March", 1, None, None)], "UPDATE 1"]
        assert results[3:] == [[(2, 42, 19900, False, 1)], "UPDATE 1", "UPDATE 1", [(2, 42, 20900, True, 3)]]

        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{stats_port}/conflicts/{conflict_id}", timeout=5) as r:
                    record = json.loads(r.read())
                break
            except urllib.error.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert (record["kind"], record["diff"]) == ("conflict", {
            "notes": {"base": "renews in March", "mine": "call back", "theirs": "renews in March"},
            "status": {"base": "active", "theirs": "paused"},
        })
        assert record["writer"]["by"] == "postgres (billing)"
        with urllib.request.urlopen(f"http://127.0.0.1:{stats_port}/stats", timeout=5) as r:
            counters = json.loads(r.read())["counters"]
        assert (counters["conflicts"], counters["merges"]) == (1, 1)
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            demo.kill()
            pytest.fail("the demo did not stop on SIGINT")
