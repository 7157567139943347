# Fixtures for end-to-end tests: a throwaway PostgreSQL 15 cluster and occproxy processes in front of it.
import json
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
PG_BINDIR = pathlib.Path(os.environ.get("OCC_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
CLUSTER_OS_USER = "occtest"  # PostgreSQL refuses to run as root
SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "postgres"
DIRECT = os.environ.get("OCC_E2E_DIRECT") == "1"

_handed_out_ports = set()


def free_port():
    """A loopback TCP port nobody listens on, never the same one twice in this run."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port
    raise RuntimeError("no free loopback port found")


CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE, signal.SIGILL}


def require(condition, reason):
    """Missing tooling fails in CI (scripts/test.sh installs or fetches it) and skips on a developer's machine."""
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def parse_duration(text):
    """Seconds in a config duration ("500ms", "5s", "2m"), as the proxy reads them."""
    text = str(text).strip()
    for suffix, scale in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if text.endswith(suffix) and text[:-len(suffix)].replace(".", "", 1).isdigit():
            return float(text[:-len(suffix)]) * scale
    raise ValueError(f"not a duration: {text!r}")


def port_accepts(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def libpq_dsn(**fields):
    """key=value connection string, quoting values the way libpq expects."""

    def quote(value):
        value = str(value)
        if value and not any(c in value for c in " '\\"):
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return " ".join(f"{k}={quote(v)}" for k, v in fields.items())


def tail(path, lines=200):
    try:
        text = pathlib.Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def _cluster_user():
    """The OS user that owns the cluster: ourselves, or a dedicated user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(CLUSTER_OS_USER)
    except KeyError:
        subprocess.run(["useradd", "-m", CLUSTER_OS_USER], check=True, capture_output=True)
    return CLUSTER_OS_USER


class PgCluster:
    """A PostgreSQL cluster in a temp dir, listening on 127.0.0.1 and a unix socket in that dir."""

    def __init__(self, bindir, base_dir, os_user):
        self.bindir = pathlib.Path(bindir)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.base_dir = pathlib.Path(base_dir)
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "sock"
        self.log_path = self.base_dir / "postgres.log"
        self.os_user = os_user

    def _as_owner(self, argv, **kwargs):
        if self.os_user:
            argv = ["runuser", "-u", self.os_user, "--"] + argv
        kwargs.setdefault("cwd", self.base_dir)
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(argv, **kwargs)

    def _check(self, result, what):
        if result.returncode != 0:
            raise RuntimeError(
                f"{what} failed ({result.returncode}):\n{result.stdout}{result.stderr}\n"
                f"--- {self.log_path} ---\n{tail(self.log_path, 50)}"
            )
        return result

    def init(self):
        self.socket_dir.mkdir()
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n")
        if self.os_user:
            shutil.chown(self.base_dir, self.os_user)
            shutil.chown(self.socket_dir, self.os_user)
            shutil.chown(pwfile, self.os_user)
        self._check(
            self._as_owner([
                str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                "-E", "UTF8", "--locale=C", "--no-sync",
            ]),
            "initdb",
        )
        pwfile.unlink()
        (self.data_dir / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "password_encryption = 'scram-sha-256'\n"
                "max_connections = 1200\n"
                "shared_buffers = 32MB\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "max_wal_size = 1GB\n"
                "log_min_messages = warning\n"
                "log_line_prefix = '%m [%p] %q%u@%d '\n"
            )

    def start(self):
        self._check(
            self._as_owner([
                str(self.bindir / "pg_ctl"), "start", "-D", str(self.data_dir),
                "-l", str(self.log_path), "-w", "-t", "60",
            ]),
            "pg_ctl start",
        )

    def stop(self, mode="fast"):
        self._check(
            self._as_owner([
                str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode,
                "-w", "-t", "60",
            ]),
            "pg_ctl stop",
        )

    def restart(self, mode="fast"):
        self.stop(mode)
        self.start()

    def is_running(self):
        return self._as_owner([str(self.bindir / "pg_ctl"), "status", "-D", str(self.data_dir)]).returncode == 0

    def ensure_running(self):
        if not self.is_running():
            self.start()

    def dsn(self, dbname="postgres", user=SUPERUSER, password=SUPERUSER_PASSWORD):
        return libpq_dsn(host=self.host, port=self.port, dbname=dbname, user=user, password=password)

    def psql(self, sql, dbname="postgres"):
        """Runs sql (several statements allowed) as the superuser over the unix socket; returns stdout."""
        result = subprocess.run(
            ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-h", str(self.socket_dir),
             "-p", str(self.port), "-U", SUPERUSER, "-d", dbname, "-f", "-"],
            input=sql, capture_output=True, text=True, timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}) on:\n{sql}\n{result.stderr}")
        return result.stdout


class Proxy:
    """A running occproxy process and where to find what it wrote."""

    def __init__(self, dir, config, process):
        self.dir = pathlib.Path(dir)
        self.config = config
        self.process = process
        self.host, port = config["listen"].rsplit(":", 1)
        self.port = int(port)
        self.stats_port = int(config["stats"]["listen"].rsplit(":", 1)[1])
        self.log_path = self.dir / "proxy.log"
        self.audit_path = pathlib.Path(config["log"]["audit_file"])

    def dsn(self, dbname, user=SUPERUSER, password=SUPERUSER_PASSWORD):
        return libpq_dsn(host=self.host, port=self.port, dbname=dbname, user=user, password=password)

    def reload(self):
        self.process.send_signal(signal.SIGHUP)

    def stop(self, timeout=None):
        """SIGTERM, then SIGKILL if it does not exit in time (default: its shutdown_timeout + 10 s);
        returns the exit status."""
        if self.process.poll() is None:
            if timeout is None:
                timeout = parse_duration(self.config.get("shutdown_timeout", "30s")) + 10
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.hung_on_stop = True
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def trouble(self):
        """Why this proxy's end looks like a bug (a crash, or ignoring SIGTERM), or None."""
        if getattr(self, "hung_on_stop", False):
            return "did not exit after SIGTERM within shutdown_timeout + 10 s"
        if self.process.returncode is not None and -self.process.returncode in CRASH_SIGNALS:
            return f"died of {signal.Signals(-self.process.returncode).name}"
        return None

    def audit_lines(self):
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines() if line.strip()]

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class DirectTarget:
    """Stands in for a Proxy under OCC_E2E_DIRECT=1: clients go straight to the server."""

    def __init__(self, pg, dir):
        self.dir = pathlib.Path(dir)
        self.host = pg.host
        self.port = pg.port
        self.stats_port = None
        self.process = None
        self.config = {}
        self.log_path = self.dir / "proxy.log"
        self.audit_path = self.dir / "audit.jsonl"
        self._pg = pg

    def dsn(self, dbname, user=SUPERUSER, password=SUPERUSER_PASSWORD):
        return self._pg.dsn(dbname, user, password)

    def reload(self):
        pass

    def stop(self, timeout=None):
        return 0

    def trouble(self):
        return None

    def audit_lines(self):
        return []

    def log_text(self):
        return ""


def _merge(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _write_config(pg, dir, dbname, rules, config):
    dir = pathlib.Path(dir)
    main = {
        "listen": f"127.0.0.1:{free_port()}",
        "upstream": f"{pg.host}:{pg.port}",
        "admin_dsn": pg.dsn(dbname),
        "stats": {"listen": f"127.0.0.1:{free_port()}"},
        "log": {"level": "debug", "audit_file": str(dir / "audit.jsonl")},
        "shutdown_timeout": "5s",
    }
    if rules is not None:
        (dir / "rules.yaml").write_text(rules)
        main["rules"] = str(dir / "rules.yaml")
    _merge(main, config or {})
    path = dir / "config.yaml"
    path.write_text(yaml.safe_dump(main, sort_keys=False))
    return path, main


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pg():
    os_user = _cluster_user()
    base = tempfile.mkdtemp(prefix="occ-pg-")
    cluster = PgCluster(PG_BINDIR, base, os_user)
    try:
        cluster.init()
        cluster.start()
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    yield cluster
    if cluster.is_running():
        cluster.stop("immediate")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def db(pg, request):
    pg.ensure_running()
    name = "e2e_" + uuid.uuid4().hex[:12]
    pg.psql(f"CREATE DATABASE {name}")
    yield name
    pg.ensure_running()
    pg.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def occproxy_bin():
    path = pathlib.Path(os.environ.get("OCCPROXY_BIN", REPO / "build" / "occproxy"))
    if not DIRECT and not os.access(path, os.X_OK):
        pytest.fail(f"occproxy binary not found at {path}: build it (cmake) or set OCCPROXY_BIN")
    return path


@pytest.fixture
def make_config(pg):
    """make_config(dbname, rules=None, config=None) -> path of a config.yaml written as start_proxy does."""
    dirs = []

    def make(dbname, rules=None, config=None):
        dir = tempfile.mkdtemp(prefix="occ-cfg-")
        dirs.append(dir)
        path, _ = _write_config(pg, dir, dbname, rules, config)
        return path

    yield make
    for dir in dirs:
        shutil.rmtree(dir, ignore_errors=True)


@pytest.fixture
def start_proxy(pg, occproxy_bin, request):
    """start_proxy(dbname, rules=None, config=None) -> Proxy, stopped at teardown."""
    started = []
    request.node.occ_proxies = started

    def start(dbname, rules=None, config=None, wait_timeout=30):
        dir = tempfile.mkdtemp(prefix="occ-proxy-")
        if DIRECT:
            target = DirectTarget(pg, dir)
            started.append(target)
            return target
        path, main = _write_config(pg, dir, dbname, rules, config)
        log = open(pathlib.Path(dir) / "proxy.log", "wb")
        process = subprocess.Popen(
            [str(occproxy_bin), "--config", str(path)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=dir,
        )
        log.close()
        proxy = Proxy(dir, main, process)
        started.append(proxy)
        deadline = time.monotonic() + wait_timeout
        while not port_accepts(proxy.host, proxy.port):
            if process.poll() is not None:
                raise RuntimeError(
                    f"occproxy exited with {process.returncode} before listening:\n{tail(proxy.log_path)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"occproxy did not listen on {proxy.port} within {wait_timeout}s:\n{tail(proxy.log_path)}"
                )
            time.sleep(0.05)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
    troubles = [(proxy, proxy.trouble()) for proxy in started if proxy.trouble()]
    for proxy in started:
        if proxy.trouble() is None:
            shutil.rmtree(proxy.dir, ignore_errors=True)
    if troubles:
        pytest.fail("\n".join(
            f"occproxy {why} (log kept in {proxy.dir}):\n{tail(proxy.log_path, 50)}" for proxy, why in troubles))


@pytest.fixture
def run_occproxy(occproxy_bin):
    """run_occproxy(*args, timeout=60) -> CompletedProcess (text; .stdout and .stderr, .output both)."""

    def run(*args, timeout=60):
        result = subprocess.run(
            [str(occproxy_bin), *map(str, args)],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
        result.output = result.stdout + result.stderr
        return result

    return run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report carries the end of its proxies' logs and of the server's."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        proxies = [p for p in getattr(item, "occ_proxies", []) if p.process is not None]
        for i, proxy in enumerate(proxies):
            report.sections.append((f"occproxy {i} log ({proxy.log_path})", tail(proxy.log_path)))
        cluster = item.funcargs.get("pg") if hasattr(item, "funcargs") else None
        if cluster is not None:
            report.sections.append((f"postgres log ({cluster.log_path})", tail(cluster.log_path, 40)))
