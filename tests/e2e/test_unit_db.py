"""Runs the Catch2 cases that need a real database ([pg]: audit inserts into occ.conflict_log)."""
import os
import pathlib
import subprocess


def test_catch2_cases_that_need_a_database(pg, db, occproxy_bin):
    unit_tests = pathlib.Path(occproxy_bin).parent / "unit_tests"
    env = dict(os.environ, OCCPROXY_TEST_ADMIN_DSN=pg.dsn(db))
    result = subprocess.run([str(unit_tests), "[pg]"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "All tests passed" in result.stdout
