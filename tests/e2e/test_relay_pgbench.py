# Relay: pgbench initialises and runs its TPC-B-like workload through the proxy in every query mode.
import os
import re
import subprocess

import pytest


def pgbench(target, dbname, *args):
    env = dict(os.environ, PGPASSWORD="postgres")
    return subprocess.run(
        ["pgbench", "-h", target.host, "-p", str(target.port), "-U", "postgres", *args, dbname],
        capture_output=True, text=True, timeout=300, env=env,
    )


@pytest.fixture
def bench_proxy(db, start_proxy):
    proxy = start_proxy(db)
    init = pgbench(proxy, db, "-i", "-s", "1", "-q")
    assert init.returncode == 0, init.stderr
    assert "done in" in init.stderr
    return proxy


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_runs_clean(pg, db, bench_proxy, mode):
    run = pgbench(bench_proxy, db, "-t", "200", "-c", "4", "-M", mode, "-n")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert f"query mode: {mode}" in output
    assert "number of transactions actually processed: 800/800" in output
    assert "number of failed transactions: 0 (0.000%)" in output
    assert re.search(r"^tps = \d+", output, re.M), output
    # The workload really reached the server: 800 history rows, one per transaction.
    assert pg.psql("SELECT count(*) FROM pgbench_history", dbname=db) == "800\n"
