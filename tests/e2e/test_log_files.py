# Log files (SPEC 7): log.format json, and SIGHUP reopening log.file and log.audit_file after a
# rotation, with every line in the old file or the new one.
import contextlib
import json
import os
import subprocess

import psycopg2
import psycopg2.errors
import pytest

from occ_helpers import (  # noqa: F401 (occ_proxy_fixture provides the occ_proxy fixture)
    occ_proxy_fixture,
    requires_proxy,
    rules_yaml,
    stats,
    wait_for,
)

pytestmark = requires_proxy


def json_lines(path):
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for record in records:
        assert sorted(record) == ["level", "msg", "ts"], record
    return records


def provoke_conflict(proxy, db, key):
    """A stale write of row `key`: one conflict, so one audit record."""
    with contextlib.closing(psycopg2.connect(proxy.dsn(db))) as a, \
            contextlib.closing(psycopg2.connect(proxy.dsn(db))) as b:
        a.autocommit = b.autocommit = True
        with a.cursor() as ca, b.cursor() as cb:
            ca.execute("SELECT notes FROM subscriptions WHERE id = %s", (key,))
            cb.execute("SELECT notes FROM subscriptions WHERE id = %s", (key,))
            cb.execute("UPDATE subscriptions SET notes = 'b' WHERE id = %s", (key,))
            with pytest.raises(psycopg2.errors.SerializationFailure):
                ca.execute("UPDATE subscriptions SET notes = 'a' WHERE id = %s", (key,))


def test_sighup_reopens_the_rotated_log_files_and_loses_no_line(pg, db, occ_proxy, tmp_path):
    log_file, audit_file = tmp_path / "occproxy.log", tmp_path / "audit.jsonl"
    proxy = occ_proxy(rules_yaml(), config={"log": {"file": str(log_file), "format": "json",
                                                    "audit_file": str(audit_file), "level": "info"}})
    # Everything goes to log.file: nothing reaches standard output or error.
    assert proxy.log_text() == ""
    started = json_lines(log_file)
    assert any(r["msg"].startswith("listening on 127.0.0.1:") and r["level"] == "info" for r in started), started

    provoke_conflict(proxy, db, 42)
    wait_for("the first audit line", lambda: audit_file.exists() and len(audit_file.read_text().splitlines()) == 1)

    # logrotate without copytruncate: rename, then SIGHUP. Until then lines go to the renamed files.
    os.rename(log_file, tmp_path / "occproxy.log.1")
    os.rename(audit_file, tmp_path / "audit.jsonl.1")
    provoke_conflict(proxy, db, 43)
    wait_for("the second audit line in the rotated file",
             lambda: len((tmp_path / "audit.jsonl.1").read_text().splitlines()) == 2)
    # Each session's end is logged too: let the conflicts' sessions end before the reload, so their
    # lines are the rotated file's and the reload's is the new file's first.
    wait_for("the sessions to end", lambda: stats(proxy)["gauges"]["connections_current"] == 0)
    proxy.reload()
    wait_for("the reload logged in the new file",
             lambda: log_file.exists() and any(r["msg"] == f"SIGHUP: rules reloaded from {proxy.dir / 'rules.yaml'}"
                                               for r in json_lines(log_file)))
    provoke_conflict(proxy, db, 44)
    wait_for("the third audit line in the new file", lambda: audit_file.exists() and audit_file.read_text())

    old_audit = [json.loads(line) for line in (tmp_path / "audit.jsonl.1").read_text().splitlines()]
    new_audit = [json.loads(line) for line in audit_file.read_text().splitlines()]
    assert [(r["kind"], r["key"]) for r in old_audit] == [("conflict", {"id": 42}), ("conflict", {"id": 43})]
    assert [(r["kind"], r["key"]) for r in new_audit] == [("conflict", {"id": 44})]

    old_log = json_lines(tmp_path / "occproxy.log.1")
    new_log = json_lines(log_file)
    assert [r["msg"] for r in new_log][0] == f"SIGHUP: rules reloaded from {proxy.dir / 'rules.yaml'}"
    assert not any(r["msg"].startswith("SIGHUP") for r in old_log)
    assert proxy.log_text() == ""
    assert proxy.stop() == 0
    last = json_lines(log_file)[-1]
    assert (last["level"], last["msg"]) == ("info", "occproxy stopped")


def test_log_file_that_cannot_be_opened_stops_the_start(db, make_config, occproxy_bin):
    config = make_config(db, config={"log": {"file": "/proc/occproxy-no-such-dir/occproxy.log"}})
    result = subprocess.run([str(occproxy_bin), "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (
        1, "", f"{config}: log.file: cannot open log file /proc/occproxy-no-such-dir/occproxy.log: "
               "No such file or directory\n")
