# PostgreSQL's own regression suite (src/test/regress, fetched by scripts/fetch-pg-regress.sh), run
# by pg_regress and psql directly and through occproxy: every result file must be byte for byte the
# same. The suite covers what no hand-written test does (COPY in all its forms, notices, errors in
# every protocol state, \gset, large objects, cursors, prepared statements, LISTEN/NOTIFY), so a
# difference is a relay or rewriting bug. Whether the server's results match PostgreSQL's own
# expected files does not matter here (a few depend on the environment): only direct vs proxy.
import difflib
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from conftest import PG_BINDIR, REPO, SUPERUSER, SUPERUSER_PASSWORD, require
from occ_helpers import occ_proxy_fixture, requires_proxy, rules_yaml  # noqa: F401 (fixture)

# Each run of the suite takes minutes on two cores (more under ASan); the first test also runs it directly.
pytestmark = [requires_proxy, pytest.mark.slow, pytest.mark.timeout(1800)]

SUITE = REPO / "build-pgsrc" / "regress"
PG_REGRESS = PG_BINDIR.parent / "lib" / "pgxs" / "src" / "test" / "regress" / "pg_regress"
PG_LIBDIR = PG_BINDIR.parent / "lib"
QUIET = {"log": {"level": "warn"}}


@pytest.fixture(scope="module")
def suite():
    """A copy of the suite the server's OS user can read, with the C functions it loads built beside it."""
    require(SUITE.is_dir(), f"no regression suite in {SUITE}: run scripts/fetch-pg-regress.sh")
    require(PG_REGRESS.exists(), f"no pg_regress at {PG_REGRESS}")
    work = pathlib.Path(tempfile.mkdtemp(prefix="occ-regress-"))
    shutil.copytree(SUITE, work / "suite")
    libs = work / "lib"
    libs.mkdir()
    include = subprocess.run(["pg_config", "--includedir-server"], capture_output=True, text=True, check=True)
    subprocess.run(["cc", "-O1", "-fPIC", "-shared", "-I", include.stdout.strip(), "-o", str(libs / "regress.so"),
                    str(work / "suite" / "regress.c")], check=True, capture_output=True)
    for name in ("autoinc.so", "refint.so"):
        (libs / name).symlink_to(PG_LIBDIR / name)
    for path in [work, *work.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644 if path.suffix != ".so" else 0o755)
    yield work
    shutil.rmtree(work, ignore_errors=True)


def run_suite(suite, host, port, name):
    """Runs the parallel schedule against host:port; returns {result file: bytes}."""
    out = suite / name
    (out / "results").mkdir(parents=True)
    # COPY ... TO writes into results/ as the server's OS user.
    out.chmod(0o777)
    (out / "results").chmod(0o777)
    done = subprocess.run(
        [str(PG_REGRESS), f"--host={host}", f"--port={port}", f"--user={SUPERUSER}", f"--bindir={PG_BINDIR}",
         f"--inputdir={suite / 'suite'}", f"--outputdir={out}", f"--dlpath={suite / 'lib'}",
         f"--schedule={suite / 'suite' / 'parallel_schedule'}", "--max-connections=20"],
        env={**os.environ, "PGPASSWORD": SUPERUSER_PASSWORD}, capture_output=True, text=True, timeout=1200,
    )
    results = {path.name: path.read_bytes() for path in (out / "results").glob("*.out")}
    assert len(results) > 200, f"pg_regress ran {len(results)} tests:\n{done.stdout}\n{done.stderr}"
    return results


@pytest.fixture(scope="module")
def direct_results(pg, suite):
    return run_suite(suite, pg.host, pg.port, "direct")


def differences(direct, proxied, shown=3):
    """The tests whose output differs, and a unified diff of the first few."""
    names = sorted(name for name in direct.keys() | proxied.keys() if direct.get(name) != proxied.get(name))
    text = []
    for name in names[:shown]:
        text += difflib.unified_diff(direct.get(name, b"").decode(errors="replace").splitlines(),
                                     proxied.get(name, b"").decode(errors="replace").splitlines(),
                                     f"direct/{name}", f"proxy/{name}", lineterm="", n=2)
    return names, "\n".join(text[:200])


def test_the_regression_suite_reads_the_same_through_the_relay(pg, db, start_proxy, suite, direct_results):
    proxy = start_proxy(db, config=QUIET)
    names, diff = differences(direct_results, run_suite(suite, proxy.host, proxy.port, "relay"))
    assert names == [], diff


def test_the_regression_suite_reads_the_same_with_rules_loaded(pg, occ_proxy, suite, direct_results):
    # The suite never names the protected table, but the session still analyses every SAVEPOINT,
    # RELEASE, ROLLBACK, RESET, DISCARD and SET search_path, and keeps a read set.
    proxy = occ_proxy(rules_yaml(), config=QUIET)
    names, diff = differences(direct_results, run_suite(suite, proxy.host, proxy.port, "rules"))
    assert names == [], diff
