# The Debian package (SPEC 7): built by cpack from the build tree, checked by lintian, installed with
# dpkg on this machine, the installed binary run against the test cluster, then purged.
import os
import pathlib
import pwd
import shutil
import subprocess

import pytest
import yaml

from conftest import REPO, require
from occ_helpers import requires_proxy, rows

pytestmark = [requires_proxy, pytest.mark.slow]

VERSION = next(line.split("VERSION ")[1].split()[0] for line in (REPO / "CMakeLists.txt").read_text().splitlines()
               if line.startswith("project(occproxy VERSION "))
DEB_NAME = f"occproxy_{VERSION}_amd64.deb"
UNIT = pathlib.Path("/lib/systemd/system/occproxy.service")
INSTALLED_MIGRATIONS = pathlib.Path("/usr/share/occproxy/migrations")

SCHEMA = """
CREATE TABLE subscriptions (id int PRIMARY KEY, status text NOT NULL);
CREATE TABLE invoices (id int PRIMARY KEY, amount int NOT NULL);
INSERT INTO subscriptions VALUES (42, 'active');
"""


def run(*argv, check=True, **kwargs):
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300, **kwargs)
    if check:
        assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="module")
def deb(occproxy_bin, tmp_path_factory):
    """The package, built by cpack from the tree that built the binary under test."""
    if os.environ.get("OCCPROXY_SANITIZED"):
        pytest.skip("the package is built from the release build; the sanitized rerun does not rebuild it")
    require(shutil.which("cpack") and shutil.which("dpkg-shlibdeps"), "cpack or dpkg-dev is missing")
    build = pathlib.Path(occproxy_bin).parent
    out = tmp_path_factory.mktemp("deb")
    run("cpack", "-G", "DEB", "-B", out, cwd=build)
    return out / DEB_NAME


@pytest.fixture(scope="module")
def installed(deb):
    """The package installed on this machine with dpkg (CI runs as root), purged afterwards."""
    require(os.geteuid() == 0, "installing the package needs root")
    already = run("dpkg-query", "-W", "-f=${Status}", "occproxy", check=False)
    require(already.stdout != "install ok installed", "occproxy is already installed here; the test would replace it")
    run("dpkg", "-i", deb)
    yield deb
    run("dpkg", "-P", "occproxy")


def test_the_package_has_its_control_fields_and_files(deb):
    fields = {name: run("dpkg-deb", "-f", deb, name).stdout.strip()
              for name in ("Package", "Version", "Architecture", "Section", "Priority", "Maintainer")}
    assert fields == {"Package": "occproxy", "Version": VERSION, "Architecture": "amd64", "Section": "database",
                      "Priority": "optional", "Maintainer": "occproxy developers <occproxy@example.org>"}
    depends = sorted(d.strip().split(" ")[0] for d in run("dpkg-deb", "-f", deb, "Depends").stdout.split(","))
    # dpkg-shlibdeps' list of the shared libraries the binary links, and adduser for postinst.
    assert depends == ["adduser", "libc6", "libfmt9", "libgcc-s1", "libpg-query1504.0", "libpq5",
                       "libspdlog1.10-fmt9", "libssl3", "libstdc++6", "libyaml-cpp0.7"]
    files = sorted(line.split()[-1].lstrip(".") for line in run("dpkg-deb", "-c", deb).stdout.splitlines()
                   if not line.startswith("d"))
    migrations = sorted(f"/usr/share/occproxy/migrations/{p.name}" for p in (REPO / "migrations").glob("*.sql"))
    assert files == sorted([
        "/etc/logrotate.d/occproxy", "/etc/occproxy/occproxy.yaml", "/etc/occproxy/rules.yaml",
        "/lib/systemd/system/occproxy.service", "/usr/bin/occproxy",
        "/usr/share/doc/occproxy/changelog.gz", "/usr/share/doc/occproxy/copyright",
        "/usr/share/man/man1/occproxy.1.gz", "/usr/share/man/man5/occproxy-rules.5.gz",
        "/usr/share/man/man5/occproxy.yaml.5.gz",
        "/usr/share/occproxy/contrib/grafana/occproxy.json",
        "/usr/share/occproxy/contrib/prometheus/occproxy.rules.yml",
        *migrations,
    ])
    control = run("dpkg-deb", "-I", deb).stdout
    for script in ("conffiles", "postinst", "prerm", "postrm", "md5sums"):
        assert f" {script}\n" in control or f" {script} " in control, control


def test_lintian_finds_no_error(deb):
    require(shutil.which("lintian"), "lintian is missing: scripts/install-deps.sh installs it")
    result = run("lintian", "--fail-on", "error", "--tag-display-limit", "0", deb, check=False)
    errors = [line for line in result.stdout.splitlines() if line.startswith("E:")]
    assert (result.returncode, errors) == (0, []), result.stdout + result.stderr


def test_systemd_accepts_the_unit(installed):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (package systemd)")
    result = run(analyze, "verify", UNIT, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    unit = UNIT.read_text()
    for line in ("Type=simple", "User=occproxy", "ExecStart=/usr/bin/occproxy --config /etc/occproxy/occproxy.yaml",
                 "ExecReload=/bin/kill -HUP $MAINPID", "ProtectSystem=strict", "NoNewPrivileges=yes",
                 "PrivateTmp=yes", "LogsDirectory=occproxy"):
        assert line in unit.splitlines(), line


def test_installing_creates_the_user_and_marks_the_conffiles(installed):
    user = pwd.getpwnam("occproxy")
    assert (user.pw_dir, user.pw_shell) == ("/nonexistent", "/usr/sbin/nologin")
    conffiles = sorted(line.split()[0] for line in
                       run("dpkg-query", "-W", "-f=${Conffiles}", "occproxy").stdout.splitlines() if line.strip())
    assert conffiles == ["/etc/logrotate.d/occproxy", "/etc/occproxy/occproxy.yaml", "/etc/occproxy/rules.yaml"]
    config = pathlib.Path("/etc/occproxy/occproxy.yaml")
    stat = config.stat()
    assert (oct(stat.st_mode & 0o777), stat.st_uid, stat.st_gid) == ("0o640", 0, user.pw_gid)
    assert run("/usr/bin/occproxy", "--version").stdout == f"occproxy {VERSION}\n"
    assert run("man", "-P", "cat", "occproxy", env={**os.environ, "MANWIDTH": "80"}).stdout.splitlines()[0].split() \
        == ["OCCPROXY(1)", "User", "Commands", "OCCPROXY(1)"]
    # logrotate reads the shipped file (debug mode only reports what it would do).
    if shutil.which("logrotate"):
        result = run("logrotate", "--debug", "/etc/logrotate.d/occproxy", check=False)
        assert result.returncode == 0, result.stderr
        assert "error" not in result.stderr.lower(), result.stderr


def test_the_installed_binary_migrates_and_checks_with_the_installed_files(pg, db, installed, tmp_path):
    pg.psql(SCHEMA, dbname=db)
    # The installed example, pointed at the test cluster; its rules file is the installed one.
    config = yaml.safe_load(pathlib.Path("/etc/occproxy/occproxy.yaml").read_text())
    assert config["rules"] == "rules.yaml"
    config.update({"upstream": f"{pg.host}:{pg.port}", "admin_dsn": pg.dsn(db), "rules": "/etc/occproxy/rules.yaml",
                   "log": {**config["log"], "file": str(tmp_path / "occproxy.log"),
                           "audit_file": str(tmp_path / "audit.jsonl")}})
    path = tmp_path / "occproxy.yaml"
    path.write_text(yaml.safe_dump(config))

    # The installed binary reads its migrations from /usr/share, not from this checkout.
    aside = INSTALLED_MIGRATIONS.with_name("migrations.aside")
    INSTALLED_MIGRATIONS.rename(aside)
    try:
        missing = run("/usr/bin/occproxy", "migrate", "--config", path, check=False)
    finally:
        aside.rename(INSTALLED_MIGRATIONS)
    assert (missing.returncode, missing.stderr) == (
        1, f"migrate failed: cannot read migrations folder {INSTALLED_MIGRATIONS}: No such file or directory; "
           "nothing was changed\n")

    migrated = run("/usr/bin/occproxy", "migrate", "--config", path)
    applied = [f"applied migration {p.name}" for p in sorted((REPO / "migrations").glob("*.sql"))]
    assert migrated.stdout.splitlines()[:len(applied)] == applied
    assert run("/usr/bin/occproxy", "migrate", "--config", path).stdout == "nothing to do: the database is up to date\n"
    checked = run("/usr/bin/occproxy", "check", "--config", path)
    assert checked.returncode == 0
    assert rows(pg, db, "SELECT id, version FROM subscriptions") == [["42", "1"]]
