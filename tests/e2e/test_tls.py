# TLS through the proxy (SPEC 6): both hops with every driver, clear refusals, server checks, certificate reload.
"""What a client sees through occproxy with auth.mode: passthrough, by TLS on each hop.

"client on" is tls.client_mode: require with the client at sslmode=require (node: ssl
{rejectUnauthorized: false}); "client off" is tls.client_mode: disable with the client at
sslmode=disable. "upstream off" relays to a server without TLS; "require" and "verify-full"
(tls.upstream_ca_file: the test CA) relay to a server that only accepts TLS (hostssl, host reject).
"OCC" means: logs in, the server's pg_stat_ssl agrees with the upstream mode, and the lost-update
scenario ends in 40001 "occ: version conflict on public.subscriptions (id)=(42): expected version 1,
current version 2". "CB refused" is FATAL 28000 "occproxy: SCRAM channel binding cannot pass
through a proxy that terminates TLS; connect with channel_binding=disable, or set auth.mode:
terminate on the proxy".

"libpq" is psql and psycopg2 (channel_binding=prefer is libpq's default); "node" is node-postgres 8,
"CB on" its enableChannelBinding: true.

| client | upstream    | libpq, cb=prefer | libpq, cb=require | libpq, cb=disable | node | node, CB on | pgjdbc 42.5 |
|--------|-------------|------------------|-------------------|-------------------|------|-------------|-------------|
| off    | off         | OCC              | (1)               | OCC               | OCC  | OCC         | OCC         |
| off    | require     | OCC (4)          | (1)               | OCC (4)           | OCC  | (2)         | OCC         |
| off    | verify-full | OCC (4)          | (1)               | OCC (4)           | OCC  | (2)         | OCC         |
| on     | off         | OCC              | (3)               | OCC               | OCC  | OCC         | OCC         |
| on     | require     | CB refused       | CB refused        | OCC               | OCC  | CB refused  | OCC         |
| on     | verify-full | CB refused       | CB refused        | OCC               | OCC  | CB refused  | OCC         |

(1) libpq itself: "channel binding required, but SSL not in use" (as against the server directly).
(2) The server's "SCRAM channel binding negotiation error": node-postgres with enableChannelBinding
    answers with gs2 flag "y" (it supports binding, the plaintext hop offered none), which the
    server, on its TLS hop, must take for a downgrade.
(3) libpq itself: "channel binding is required, but server did not offer an authentication method
    that supports channel binding" (the server's hop is plaintext, so it offers no -PLUS).
(4) The server offers SCRAM-SHA-256-PLUS on the proxy's TLS hop; the proxy drops it from the
    AuthenticationSASL it relays to a plaintext client (libpq refuses a -PLUS offer over plaintext).
pgjdbc 42.5 never uses channel binding (it always answers SCRAM-SHA-256 with gs2 flag "n").

With auth.mode: terminate every cell is OCC except libpq cb=require over a plaintext client hop (1):
the proxy is the SCRAM server for the client (-PLUS bound to its own certificate over TLS) and the
SCRAM client for the server (-PLUS bound to the server's certificate when offered).
"""
import asyncio
import json
import os
import pathlib
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile

import asyncpg
import psycopg
import psycopg2
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from conftest import PG_BINDIR, PgCluster, _cluster_user, require
from occ_helpers import (
    conflict_message,
    migrate,
    requires_proxy,
    rules_yaml,
    SUBSCRIPTIONS,
    wait_for,
)
from tls_certs import make_test_certs

pytestmark = requires_proxy

HERE = pathlib.Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
JDBC_JAR = pathlib.Path("/usr/share/java/postgresql.jar")

SSL_REQUEST = struct.pack("!II", 8, 80877103)
CHANNEL_BINDING_REFUSED = (
    "occproxy: SCRAM channel binding cannot pass through a proxy that terminates TLS; connect with "
    "channel_binding=disable, or set auth.mode: terminate on the proxy"
)
TLS_REQUIRED = "occproxy: TLS is required; connect with sslmode=require"
OCC_RULES = rules_yaml(app_managed_version="enforce")
STALE_WRITE = "UPDATE subscriptions SET notes = 'x' WHERE id = 42 AND version = 1"
FIRST_WRITE = "UPDATE subscriptions SET status = 'paused' WHERE id = 42"
BACKEND_SSL = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
READ_VERSION = "SELECT version FROM subscriptions WHERE id = 42"


# --- the protocol by hand, for exact SQLSTATEs and the certificate a listener shows --------------

def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def read_message(sock):
    kind, length = struct.unpack("!cI", recv_exact(sock, 5))
    return kind, recv_exact(sock, length - 4)


def startup_packet(**params):
    body = struct.pack("!I", 3 << 16)
    body += b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
    return struct.pack("!I", len(body) + 4) + body


def error_fields(body):
    """Severity, SQLSTATE and message of an ErrorResponse body."""
    fields = {}
    for field in body.rstrip(b"\0").split(b"\0"):
        fields[chr(field[0])] = field[1:].decode()
    return {"severity": fields["V"], "sqlstate": fields["C"], "message": fields["M"]}


def open_tls(host, port, timeout=10):
    """A socket that sent SSLRequest, got 'S' and finished the handshake without checking the certificate."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.sendall(SSL_REQUEST)
    answer = recv_exact(sock, 1)
    assert answer == b"S", answer
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(sock)


def served_certificate(target):
    """The DER certificate a new TLS connection to `target` is shown."""
    with open_tls(target.host, target.port) as sock:
        return sock.getpeercert(binary_form=True)


def pem_to_der(path):
    return ssl.PEM_cert_to_DER_cert(pathlib.Path(path).read_text())


def first_reply(target, dbname, tls, user="postgres"):
    """The first message the server (or the proxy) answers a startup packet with."""
    sock = open_tls(target.host, target.port) if tls else socket.create_connection((target.host, target.port), 10)
    with sock:
        sock.sendall(startup_packet(user=user, database=dbname))
        return read_message(sock)


def startup_error(target, dbname, tls=False):
    kind, body = first_reply(target, dbname, tls)
    assert kind == b"E", (kind, body)
    return error_fields(body)


def scram_plus_attempt(target, dbname):
    """Starts SCRAM-SHA-256-PLUS over TLS as libpq does with channel_binding=prefer; returns the answer."""
    with open_tls(target.host, target.port) as sock:
        sock.sendall(startup_packet(user="postgres", database=dbname))
        kind, body = read_message(sock)
        assert (kind, body) == (b"R", struct.pack("!I", 10) + b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0")
        client_first = b"p=tls-server-end-point,,n=,r=tlsTestNonce0123456789"
        body = b"SCRAM-SHA-256-PLUS\0" + struct.pack("!i", len(client_first)) + client_first
        sock.sendall(b"p" + struct.pack("!I", len(body) + 4) + body)
        kind, body = read_message(sock)
        assert kind == b"E", (kind, body)
        return error_fields(body)


# --- a second cluster that only speaks TLS --------------------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    # The server's certificate names 127.0.0.1 only: "localhost" is the name verify-full must refuse.
    return make_test_certs(tmp_path_factory.mktemp("tls-certs"), server_names=("127.0.0.1",))


@pytest.fixture(scope="module")
def tls_pg(certs):
    """A PostgreSQL cluster with ssl = on that refuses every TCP connection without TLS."""
    os_user = _cluster_user()
    base = tempfile.mkdtemp(prefix="occ-pg-tls-")
    cluster = PgCluster(PG_BINDIR, base, os_user)
    try:
        cluster.init()
        for source, name in ((certs.server_cert, "server.crt"), (certs.server_key, "server.key")):
            shutil.copyfile(source, cluster.data_dir / name)
            os.chmod(cluster.data_dir / name, 0o600)
            if os_user:
                shutil.chown(cluster.data_dir / name, os_user)
        (cluster.data_dir / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all +md5_users 127.0.0.1/32 md5\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 reject\n"
        )
        with open(cluster.data_dir / "postgresql.conf", "a") as conf:
            conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        cluster.start()
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    yield cluster
    if cluster.is_running():
        cluster.stop("immediate")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def tls_db(tls_pg):
    name = "e2e_tls_" + os.urandom(6).hex()
    tls_pg.psql(f"CREATE DATABASE {name}")
    yield name
    tls_pg.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def tls_section(certs, client, upstream):
    """The `tls` config for client TLS "on"/"off" and an upstream mode ("off" or a tls.upstream_mode)."""
    section = {}
    if client == "on":
        section.update(cert_file=str(certs.proxy_cert), key_file=str(certs.proxy_key), client_mode="require")
    if upstream != "off":
        section["upstream_mode"] = upstream
    if upstream in ("verify-ca", "verify-full"):
        section["upstream_ca_file"] = str(certs.ca_cert)
    return section


def upstream_config(cluster, dbname, host="127.0.0.1"):
    return {"upstream": f"{host}:{cluster.port}", "admin_dsn": cluster.dsn(dbname)}


@pytest.fixture
def hops(pg, tls_pg, certs, make_config, run_occproxy, start_proxy, request):
    """hops(client, upstream, rules=None, auth="passthrough") -> (proxy, cluster, dbname): the plaintext
    `pg` when upstream is "off", the TLS-only cluster otherwise; with rules, the subscriptions table
    migrated first (auth "terminate" needs the migrations' occ.auth_lookup: it migrates either way)."""

    def start(client, upstream, rules=None, auth="passthrough"):
        if upstream == "off":
            cluster, dbname = pg, request.getfixturevalue("db")
        else:
            cluster, dbname = tls_pg, request.getfixturevalue("tls_db")
        config = {"tls": tls_section(certs, client, upstream), "auth": {"mode": auth}}
        if cluster is tls_pg:
            config.update(upstream_config(tls_pg, dbname))
        if rules is None and auth == "terminate":
            rules = OCC_RULES
        if rules is not None:
            cluster.psql(SUBSCRIPTIONS, dbname=dbname)
            migrate(lambda d, rules: make_config(d, rules=rules, config=config), run_occproxy, dbname, rules)
        return start_proxy(dbname, rules=rules, config=config), cluster, dbname

    return start


def wait_for_log(proxy, text):
    wait_for(f"{text!r} in {proxy.log_path}", lambda: text in proxy.log_text())


# --- the drivers, each running the lost-update scenario -------------------------------------------
#
# Every runner returns the same shape, so one table of expectations covers all of them:
# {"server_ssl": bool, "version": 1, "updated": 1, "stale": [sqlstate, message]} after a login, or
# {"login_error": text} when the login failed.

LIBPQ_PREFIX = re.compile(r'^(psql: error: )?connection to server at "[^"]*", port \d+ failed: ')


def libpq_login_error(text):
    """libpq's message without the part that names the address, and without its newline."""
    return LIBPQ_PREFIX.sub("", text).strip()


def libpq_dsn_for(proxy, dbname, client, channel_binding):
    sslmode = "require" if client == "on" else "disable"
    return proxy.dsn(dbname) + f" sslmode={sslmode} channel_binding={channel_binding}"


def run_psql(proxy, dbname, client, channel_binding):
    dsn = libpq_dsn_for(proxy, dbname, client, channel_binding)

    def psql(script):
        return subprocess.run(["psql", "-X", "-At", "-f", "-", dsn], input=script,
                              capture_output=True, text=True, timeout=60)

    first = psql(f"{BACKEND_SSL};\n{READ_VERSION};\n{FIRST_WRITE};\n")
    if first.returncode == 2:
        return {"login_error": libpq_login_error(first.stderr)}
    assert (first.returncode, first.stderr) == (0, ""), first
    ssl_on, version, tag = first.stdout.splitlines()
    assert tag == "UPDATE 1"
    second = psql(f"{STALE_WRITE};\n\\echo :LAST_ERROR_SQLSTATE\n\\echo :LAST_ERROR_MESSAGE\n")
    assert second.returncode == 0, second
    sqlstate, message = second.stdout.splitlines()
    return {"server_ssl": ssl_on == "t", "version": int(version), "updated": 1, "stale": [sqlstate, message]}


def run_psycopg2(proxy, dbname, client, channel_binding):
    dsn = libpq_dsn_for(proxy, dbname, client, channel_binding)
    try:
        first = psycopg2.connect(dsn)
    except psycopg2.OperationalError as e:
        return {"login_error": libpq_login_error(str(e))}
    try:
        first.autocommit = True
        assert first.info.ssl_in_use == (client == "on")
        with first.cursor() as cur:
            cur.execute(BACKEND_SSL)
            [(ssl_on,)] = cur.fetchall()
            cur.execute(READ_VERSION)
            [(version,)] = cur.fetchall()
            cur.execute(FIRST_WRITE)
            updated = cur.rowcount
        second = psycopg2.connect(dsn)
        second.autocommit = True
        try:
            with second.cursor() as cur:
                cur.execute(STALE_WRITE)
                stale = ["no error", cur.statusmessage]
        except psycopg2.Error as e:
            stale = [e.pgcode, e.diag.message_primary]
        finally:
            second.close()
    finally:
        first.close()
    return {"server_ssl": ssl_on, "version": version, "updated": updated, "stale": stale}


NODE_SCENARIO = r"""
const { Client } = require('pg');
const config = JSON.parse(process.argv[1]);
async function main() {
  const first = new Client(config);
  try {
    await first.connect();
  } catch (err) {
    return { login_error: err.message };
  }
  const out = {};
  out.server_ssl = (await first.query(process.argv[2])).rows[0].ssl;
  out.version = Number((await first.query(process.argv[3])).rows[0].version);
  out.updated = (await first.query(process.argv[4])).rowCount;
  await first.end();
  const second = new Client(config);
  await second.connect();
  try {
    const result = await second.query(process.argv[5]);
    out.stale = ['no error', result.command + ' ' + result.rowCount];
  } catch (err) {
    out.stale = [err.code, err.message];
  }
  await second.end();
  return out;
}
main().then((out) => console.log(JSON.stringify(out)), (err) => { console.error(err); process.exit(1); });
"""


def run_node(proxy, dbname, client, channel_binding):
    config = {"host": proxy.host, "port": proxy.port, "user": "postgres", "password": "postgres",
              "database": dbname, "ssl": {"rejectUnauthorized": False} if client == "on" else False,
              "enableChannelBinding": channel_binding == "enable"}
    result = subprocess.run(
        ["node", "-e", NODE_SCENARIO, json.dumps(config), BACKEND_SSL, READ_VERSION, FIRST_WRITE, STALE_WRITE],
        cwd=NODE_DIR, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


JDBC_SCENARIO = r"""
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

import org.postgresql.util.PSQLException;

// Prints the lost-update scenario's outcome as tab-separated lines: key, then values.
public final class TlsScenario {
    private static String message(SQLException e) {
        if (e instanceof PSQLException && ((PSQLException) e).getServerErrorMessage() != null)
            return ((PSQLException) e).getServerErrorMessage().getMessage();
        return e.getMessage();
    }

    private static String one(Statement st, String sql) throws SQLException {
        try (ResultSet rs = st.executeQuery(sql)) {
            rs.next();
            return rs.getString(1);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = args[0], user = args[1], password = args[2];
        Connection first;
        try {
            first = DriverManager.getConnection(url, user, password);
        } catch (SQLException e) {
            System.out.println("login_error\t" + e.getSQLState() + " " + message(e));
            return;
        }
        try (Statement st = first.createStatement()) {
            System.out.println("server_ssl\t" + one(st, args[3]));
            System.out.println("version\t" + one(st, args[4]));
            // execute(), not executeUpdate(): pgjdbc runs the latter with a row limit of 1, and the proxy's
            // rewrite of this UPDATE then answers PortalSuspended, so executeUpdate() returns -1 (a relay
            // bug reported separately, not a TLS one).
            st.execute(args[5]);
            System.out.println("updated\t" + st.getUpdateCount());
        }
        first.close();
        try (Connection second = DriverManager.getConnection(url, user, password);
             Statement st = second.createStatement()) {
            System.out.println("stale\tno error\tUPDATE " + st.executeUpdate(args[6]));
        } catch (SQLException e) {
            System.out.println("stale\t" + e.getSQLState() + "\t" + message(e));
        }
    }
}
"""


@pytest.fixture(scope="module")
def jdbc_classes(tmp_path_factory):
    require(shutil.which("javac") and shutil.which("java"), "a JDK is not installed")
    require(JDBC_JAR.exists(), f"{JDBC_JAR} is missing (libpostgresql-jdbc-java)")
    out = tmp_path_factory.mktemp("jdbc-tls")
    source = out / "TlsScenario.java"
    source.write_text(JDBC_SCENARIO)
    result = subprocess.run(["javac", "-cp", str(JDBC_JAR), "-d", str(out), str(source)],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    return out


def run_jdbc(proxy, dbname, client, classes):
    sslmode = "require" if client == "on" else "disable"
    url = f"jdbc:postgresql://{proxy.host}:{proxy.port}/{dbname}?sslmode={sslmode}"
    result = subprocess.run(
        ["java", "-cp", f"{classes}{os.pathsep}{JDBC_JAR}", "TlsScenario", url, "postgres", "postgres",
         BACKEND_SSL, READ_VERSION, FIRST_WRITE, STALE_WRITE],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.split("\t", 1) for line in result.stdout.splitlines())
    if "login_error" in lines:
        return {"login_error": lines["login_error"]}
    return {"server_ssl": lines["server_ssl"] == "t", "version": int(lines["version"]),
            "updated": int(lines["updated"]), "stale": lines["stale"].split("\t")}


# name -> (runner, the runner's last argument: channel_binding, or for JDBC the fixture with its classes)
DRIVERS = {
    "psql-cb-prefer": (run_psql, "prefer"),
    "psql-cb-require": (run_psql, "require"),
    "psql-cb-disable": (run_psql, "disable"),
    "psycopg2": (run_psycopg2, "prefer"),
    "psycopg2-cb-disable": (run_psycopg2, "disable"),
    "node": (run_node, "default"),
    "node-cb-enable": (run_node, "enable"),
    "jdbc": (run_jdbc, "jdbc_classes"),
}


def expected_outcome(client, upstream, driver, auth):
    """The module docstring's tables, cell by cell."""
    if driver == "psql-cb-require" and client == "off":
        return {"login_error": "channel binding required, but SSL not in use"}
    if auth == "terminate":
        return {"server_ssl": upstream != "off", "version": 1, "updated": 1,
                "stale": ["40001", conflict_message(42, 1, 2)]}
    if driver == "psql-cb-require" and upstream == "off":
        return {"login_error": "channel binding is required, but server did not offer an authentication method "
                               "that supports channel binding"}
    if driver == "node-cb-enable" and client == "off" and upstream != "off":
        return {"login_error": "SCRAM channel binding negotiation error"}
    binds = driver in ("psql-cb-prefer", "psql-cb-require", "psycopg2", "node-cb-enable")
    if binds and client == "on" and upstream != "off":
        if driver == "node-cb-enable":
            return {"login_error": CHANNEL_BINDING_REFUSED}
        return {"login_error": "FATAL:  " + CHANNEL_BINDING_REFUSED}
    return {"server_ssl": upstream != "off", "version": 1, "updated": 1,
            "stale": ["40001", conflict_message(42, 1, 2)]}


@pytest.mark.parametrize("driver", list(DRIVERS))
@pytest.mark.parametrize("upstream", ["off", "require", "verify-full"])
@pytest.mark.parametrize("client", ["off", "on"])
@pytest.mark.parametrize("auth", ["passthrough", "terminate"])
def test_drivers_through_each_tls_combination(hops, auth, client, upstream, driver, request):
    if driver.startswith("node"):
        require(shutil.which("node"), "node is not installed")
        require((NODE_DIR / "node_modules" / "pg").is_dir(), "run `npm ci` in tests/e2e/node first")
    proxy, cluster, dbname = hops(client, upstream, rules=OCC_RULES, auth=auth)
    runner, argument = DRIVERS[driver]
    if runner is run_jdbc:
        argument = request.getfixturevalue(argument)
    outcome = runner(proxy, dbname, client, argument)
    assert outcome == expected_outcome(client, upstream, driver, auth)
    state = cluster.psql("SELECT status, notes, version FROM subscriptions WHERE id = 42", dbname=dbname)
    assert state == ("paused|old|2\n" if "stale" in outcome else "active|old|1\n")


def test_channel_binding_over_both_hops_is_refused_with_28000(hops):
    proxy, _, dbname = hops("on", "require")
    assert scram_plus_attempt(proxy, dbname) == {
        "severity": "FATAL", "sqlstate": "28000", "message": CHANNEL_BINDING_REFUSED}
    wait_for_log(proxy, "SCRAM channel binding cannot pass through TLS on both hops (auth.mode: passthrough)")


# --- the server's side ---------------------------------------------------------------------------

def backend_ssl(cluster, pid):
    """What the server itself reports about the TLS of the backend `pid`."""
    return cluster.psql(f"SELECT ssl, version, cipher IS NOT NULL FROM pg_stat_ssl WHERE pid = {pid}")


@pytest.mark.parametrize("upstream, expected", [
    ("off", "f||f\n"),
    ("prefer", "t|TLSv1.3|t\n"),
    ("require", "t|TLSv1.3|t\n"),
    ("verify-ca", "t|TLSv1.3|t\n"),
    ("verify-full", "t|TLSv1.3|t\n"),
])
def test_server_sees_the_proxy_connection_encrypted(hops, upstream, expected):
    proxy, cluster, dbname = hops("on", upstream)
    with psycopg2.connect(libpq_dsn_for(proxy, dbname, "on", "disable")) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid(), current_user")
        pid, user = cur.fetchone()
        assert user == "postgres"
        # Checked while the session is open, from a connection of the server's own.
        assert backend_ssl(cluster, pid) == expected
    conn.close()


def test_prefer_falls_back_to_plaintext_on_a_server_without_tls(pg, db, certs, start_proxy):
    proxy = start_proxy(db, config={"tls": tls_section(certs, "off", "prefer")})
    with psycopg2.connect(proxy.dsn(db) + " sslmode=disable") as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid(), current_user")
        pid, user = cur.fetchone()
        assert (user, backend_ssl(pg, pid)) == ("postgres", "f||f\n")
    conn.close()


@pytest.mark.parametrize("upstream", ["require", "verify-ca", "verify-full"])
def test_strict_upstream_modes_refuse_a_server_without_tls(pg, db, certs, start_proxy, upstream):
    proxy = start_proxy(db, config={"tls": tls_section(certs, "off", upstream)})
    message = f"occproxy: the database server does not support TLS, but tls.upstream_mode is {upstream}"
    assert startup_error(proxy, db) == {"severity": "FATAL", "sqlstate": "08006", "message": message}
    result = subprocess.run(["psql", "-X", "-At", "-c", "SELECT 1", proxy.dsn(db) + " sslmode=disable"],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, libpq_login_error(result.stderr)) == (2, "", "FATAL:  " + message)
    wait_for_log(proxy, message.removeprefix("occproxy: "))


@pytest.mark.parametrize("upstream, host, ca, why", [
    ("verify-full", "localhost", "ca_cert", "hostname mismatch"),
    ("verify-full", "127.0.0.1", "other_ca_cert", "unable to get local issuer certificate"),
    ("verify-ca", "127.0.0.1", "other_ca_cert", "unable to get local issuer certificate"),
    ("verify-ca", "localhost", "ca_cert", None),  # verify-ca checks the chain, not the name
    ("verify-full", "127.0.0.1", "ca_cert", None),
])
def test_upstream_certificate_checks(tls_pg, tls_db, certs, start_proxy, upstream, host, ca, why):
    config = {"tls": {"upstream_mode": upstream, "upstream_ca_file": str(getattr(certs, ca))},
              **upstream_config(tls_pg, tls_db, host=host)}
    proxy = start_proxy(tls_db, config=config)
    if why is None:
        # The handshake succeeded and the server asked for SCRAM; its -PLUS offer, made on the
        # proxy's TLS hop, is not passed on to this plaintext client.
        assert first_reply(proxy, tls_db, tls=False) == (b"R", struct.pack("!I", 10) + b"SCRAM-SHA-256\0\0")
        return
    message = f"occproxy: TLS handshake with the server failed: {why}"
    assert startup_error(proxy, tls_db) == {"severity": "FATAL", "sqlstate": "08006", "message": message}
    wait_for_log(proxy, message.removeprefix("occproxy: "))


# --- the client's side ---------------------------------------------------------------------------

def psql_as(dsn, sql="SELECT current_user"):
    result = subprocess.run(["psql", "-X", "-At", "-c", sql, dsn], capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout, libpq_login_error(result.stderr)


def test_client_mode_require_refuses_plaintext_clients(db, certs, start_proxy):
    proxy = start_proxy(db, config={"tls": tls_section(certs, "on", "off")})
    assert startup_error(proxy, db, tls=False) == {"severity": "FATAL", "sqlstate": "28000", "message": TLS_REQUIRED}
    assert psql_as(proxy.dsn(db) + " sslmode=disable") == (2, "", "FATAL:  " + TLS_REQUIRED)
    ssl_in_use = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"  # plaintext upstream: always f
    for mode in ("prefer", "require"):
        assert psql_as(proxy.dsn(db) + f" sslmode={mode}", ssl_in_use) == (0, "f\n", "")
    # The proxy's chain checks out against the CA for the address it is reached at.
    verified = proxy.dsn(db) + f" sslmode=verify-full sslrootcert={certs.ca_cert}"
    assert psql_as(verified) == (0, "postgres\n", "")
    unverified = proxy.dsn(db) + f" sslmode=verify-ca sslrootcert={certs.other_ca_cert}"
    code, out, err = psql_as(unverified)
    assert (code, out) == (2, "")
    assert err.startswith("SSL error: certificate verify failed"), err


def test_client_mode_allow_serves_both(db, certs, start_proxy):
    tls = tls_section(certs, "on", "off")
    tls["client_mode"] = "allow"
    proxy = start_proxy(db, config={"tls": tls})
    for mode, encrypted in (("disable", False), ("prefer", True), ("require", True)):
        with psycopg2.connect(proxy.dsn(db) + f" sslmode={mode}") as conn:
            assert conn.info.ssl_in_use is encrypted
        conn.close()


@pytest.fixture
def tls_roles(tls_pg):
    """tls_app (SCRAM), tls_md5 (an md5 hash, which pg_hba.conf's md5_users line lets log in), tls_nopw."""
    tls_pg.psql("CREATE ROLE tls_app LOGIN PASSWORD 'tls app secret'; CREATE ROLE tls_nopw LOGIN; "
                "CREATE ROLE md5_users NOLOGIN; SET password_encryption = 'md5'; "
                "CREATE ROLE tls_md5 LOGIN PASSWORD 'md5 app secret' IN ROLE md5_users;")
    yield
    tls_pg.psql("DROP ROLE IF EXISTS tls_app; DROP ROLE IF EXISTS tls_nopw; DROP ROLE IF EXISTS tls_md5; "
                "DROP ROLE IF EXISTS md5_users;")


async def asyncpg_login(target, dbname, user, password):
    try:
        conn = await asyncpg.connect(host=target.host, port=target.port, user=user, password=password,
                                     database=dbname, ssl="require")
    except asyncpg.PostgresError as e:
        return type(e).__name__, e.sqlstate, str(e), e.severity
    user = await conn.fetchval("SELECT current_user")
    await conn.close()
    return "logged in", user


@pytest.mark.parametrize("user, password", [
    ("tls_app", "wrong"),
    ("tls_md5", "wrong"),
    ("no_such_role", "tls app secret"),
    ("tls_nopw", "anything"),
])
@pytest.mark.parametrize("auth", ["passthrough", "terminate"])
def test_login_failures_through_tls_match_direct(hops, tls_pg, tls_roles, auth, user, password):
    proxy, _, dbname = hops("on", "verify-full", auth=auth)
    direct = asyncio.run(asyncpg_login(tls_pg, dbname, user, password))
    assert direct == ("InvalidPasswordError", "28P01", f'password authentication failed for user "{user}"', "FATAL")
    assert asyncio.run(asyncpg_login(proxy, dbname, user, password)) == direct

    libpq = " sslmode=require channel_binding=disable"
    psql_direct = psql_as(tls_pg.dsn(dbname, user=user, password=password) + libpq)
    assert psql_direct == (2, "", f'FATAL:  password authentication failed for user "{user}"')
    assert psql_as(proxy.dsn(dbname, user=user, password=password) + libpq) == psql_direct
    # The right password works the same way, for contrast.
    assert asyncio.run(asyncpg_login(proxy, dbname, "tls_app", "tls app secret")) == ("logged in", "tls_app")
    assert asyncio.run(asyncpg_login(proxy, dbname, "tls_md5", "md5 app secret")) == ("logged in", "tls_md5")


@pytest.mark.parametrize("channel_binding", ["prefer", "require"])
def test_terminate_binds_each_hop_to_its_own_certificate(hops, tls_pg, tls_roles, channel_binding):
    proxy, _, dbname = hops("on", "verify-full", auth="terminate")
    dsn = proxy.dsn(dbname, user="tls_app", password="tls app secret")
    with psycopg.connect(dsn + f" sslmode=require channel_binding={channel_binding}") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("tls_app",)
        assert conn.pgconn.used_password
    wait_for_log(proxy, "client authenticated by the proxy with SCRAM-SHA-256-PLUS")
    wait_for_log(proxy, "logging into the database server with SCRAM-SHA-256-PLUS")


def test_terminate_md5_role_without_tls(pg, db, start_proxy, make_config, run_occproxy):
    """md5 roles: the proxy asks the client for an md5 response and answers the server's with the stored hash."""
    pg.psql("SET password_encryption = 'md5'; CREATE ROLE plain_md5 LOGIN PASSWORD 'plain md5 secret'")
    try:
        pg.psql(SUBSCRIPTIONS, dbname=db)
        migrate(lambda d, rules: make_config(d, rules=rules), run_occproxy, db, OCC_RULES)
        proxy = start_proxy(db, rules=OCC_RULES, config={"auth": {"mode": "terminate"}})
        kind, body = first_reply(proxy, db, tls=False, user="plain_md5")
        assert (kind, body[:4]) == (b"R", struct.pack("!I", 5)) and len(body) == 8  # AuthenticationMD5Password
        # The test cluster's pg_hba.conf asks for scram-sha-256, which an md5 hash cannot answer:
        # the login fails as it does directly.
        direct = psql_as(pg.dsn(db, user="plain_md5", password="plain md5 secret"))
        assert direct == (2, "", 'FATAL:  password authentication failed for user "plain_md5"')
        assert psql_as(proxy.dsn(db, user="plain_md5", password="plain md5 secret")) == direct
        wait_for_log(proxy, "the server asks for SCRAM, but the role's stored password is an md5 hash")
    finally:
        pg.psql("DROP ROLE IF EXISTS plain_md5")


def test_terminate_sees_a_password_change(hops, tls_pg, tls_roles):
    proxy, _, dbname = hops("on", "require", auth="terminate")
    libpq = " sslmode=require"
    old = proxy.dsn(dbname, user="tls_app", password="tls app secret") + libpq
    new = proxy.dsn(dbname, user="tls_app", password="new secret") + libpq
    assert psql_as(old) == (0, "tls_app\n", "")  # the verifier is cached now
    tls_pg.psql("ALTER ROLE tls_app PASSWORD 'new secret'")
    refused = (2, "", 'FATAL:  password authentication failed for user "tls_app"')
    # The old password still matches the cached verifier, but the server refuses the key it gives.
    assert psql_as(old) == refused
    assert psql_as(new) == (0, "tls_app\n", "")
    assert psql_as(old) == refused


def test_terminate_needs_its_auth_query(db, certs, make_config, run_occproxy):
    path = make_config(db, config={"auth": {"mode": "terminate"}})
    result = run_occproxy("check", "--config", path, timeout=30)
    assert result.returncode == 1, result.output
    assert result.stdout.splitlines() == [
        "no rules configured: nothing to check",
        'auth.query: auth.query cannot run: auth.query on admin_dsn failed: ERROR:  schema "occ" does not exist',
    ]
    result = run_occproxy("--config", path, timeout=30)
    assert result.returncode == 1, result.output
    assert 'error auth.mode terminate: auth.query cannot run: auth.query on admin_dsn failed: ERROR:  schema "occ" ' \
           "does not exist" in result.output

    broken = make_config(db, config={"auth": {"mode": "terminate", "query": "SELECT $1::text"}})
    assert run_occproxy("check", "--config", broken, timeout=30).stdout.splitlines()[-1] == (
        "auth.query: auth.query cannot run: auth.query must return two columns: rolname, rolpassword")


def test_check_reports_tls_and_the_auth_query(hops, certs, make_config, run_occproxy, tls_db, tls_pg, tmp_path):
    hops("off", "require", auth="terminate")  # migrates tls_db
    config = {"tls": tls_section(certs, "on", "require"), "auth": {"mode": "terminate"},
              **upstream_config(tls_pg, tls_db)}
    result = run_occproxy("check", "--config", make_config(tls_db, rules=OCC_RULES, config=config), timeout=30)
    assert result.returncode == 0, result.output
    assert result.stdout.splitlines()[-2:] == ["TLS: ok (clients require, upstream require)", "auth.query: ok"]

    config["auth"] = {"mode": "passthrough"}
    result = run_occproxy("check", "--config", make_config(tls_db, rules=OCC_RULES, config=config), timeout=30)
    assert result.returncode == 0, result.output
    assert result.stdout.splitlines()[-2:] == [
        "TLS: ok (clients require, upstream require)",
        "warning: TLS on both hops with auth.mode: passthrough: clients that use SCRAM channel binding are refused; "
        "they need channel_binding=disable, or set auth.mode: terminate",
    ]

    missing = tmp_path / "missing.key"
    config["tls"] = dict(config["tls"], key_file=str(missing))
    result = run_occproxy("check", "--config", make_config(tls_db, rules=OCC_RULES, config=config), timeout=30)
    assert result.returncode == 1, result.output
    assert result.stdout.splitlines()[-2].startswith(f"TLS: tls.key_file {missing}: "), result.stdout


# --- certificates reloaded on SIGHUP ---------------------------------------------------------------

def common_name(der):
    """Subject CN and issuer of a DER certificate."""
    certificate = x509.load_der_x509_certificate(der)
    [name] = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return name.value, certificate.issuer.rfc4514_string()


def log_count(proxy, text):
    return proxy.log_text().count(text)


def reload_and_wait(proxy, text, count):
    proxy.reload()
    wait_for(f"{count} x {text!r} in {proxy.log_path}", lambda: log_count(proxy, text) >= count)
    assert log_count(proxy, text) == count


def test_sighup_reloads_the_certificate_and_keeps_it_when_the_new_one_is_broken(db, certs, start_proxy, tmp_path):
    cert_file, key_file = tmp_path / "proxy.crt", tmp_path / "proxy.key"
    shutil.copyfile(certs.proxy_cert, cert_file)
    shutil.copyfile(certs.proxy_key, key_file)
    proxy = start_proxy(db, config={"tls": {"cert_file": str(cert_file), "key_file": str(key_file)}})
    assert common_name(served_certificate(proxy)) == ("localhost", "CN=occproxy test CA")
    assert served_certificate(proxy) == pem_to_der(certs.proxy_cert)

    open_conn = psycopg2.connect(proxy.dsn(db) + " sslmode=require")
    open_conn.autocommit = True
    with open_conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)

    renewed = make_test_certs(tmp_path / "renewed", proxy_names=("proxy-renewed.test", "127.0.0.1"))
    shutil.copyfile(renewed.proxy_cert, cert_file)
    shutil.copyfile(renewed.proxy_key, key_file)
    reload_and_wait(proxy, "SIGHUP: TLS certificates reloaded", 1)
    assert served_certificate(proxy) == pem_to_der(renewed.proxy_cert)
    assert common_name(served_certificate(proxy)) == ("proxy-renewed.test", "CN=occproxy test CA")
    renewed_dsn = proxy.dsn(db) + f" sslmode=verify-full sslrootcert={renewed.ca_cert}"
    assert psql_as(renewed_dsn) == (0, "postgres\n", "")
    # The connection opened before the reload keeps its session and its TLS.
    with open_conn.cursor() as cur:
        cur.execute("SELECT 2")
        assert cur.fetchone() == (2,)
    assert open_conn.info.ssl_in_use

    failures = "SIGHUP: TLS not reloaded ("
    cert_file.write_text("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    reload_and_wait(proxy, failures, 1)
    shutil.copyfile(renewed.proxy_cert, cert_file)
    shutil.copyfile(certs.proxy_key, key_file)  # the old key: not the certificate's
    reload_and_wait(proxy, failures, 2)
    reasons = [line.split(failures, 1)[1] for line in proxy.log_text().splitlines() if failures in line]
    assert reasons == [
        f"tls.cert_file {cert_file}: no PEM certificate in it (bad base64 decode)), "
        "the previous certificates stay in force",
        f"tls.key_file {key_file}: is not the private key of the certificate in tls.cert_file {cert_file}), "
        "the previous certificates stay in force",
    ]
    assert served_certificate(proxy) == pem_to_der(renewed.proxy_cert)
    assert psql_as(renewed_dsn) == (0, "postgres\n", "")
    with open_conn.cursor() as cur:
        cur.execute("SELECT 3")
        assert cur.fetchone() == (3,)
    open_conn.close()


# --- secrets --------------------------------------------------------------------------------------

@pytest.mark.parametrize("auth", ["passthrough", "terminate"])
def test_no_password_proof_or_key_in_the_debug_log(hops, tls_pg, tls_roles, certs, auth):
    proxy, _, dbname = hops("on", "require", auth=auth)
    assert proxy.config["log"]["level"] == "debug"
    password = "tls app secret"
    dsn = proxy.dsn(dbname, user="tls_app", password=password)
    with psycopg2.connect(dsn + " sslmode=require channel_binding=disable") as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")
        assert cur.fetchone() == ("tls_app",)
    conn.close()
    with psycopg.connect(dsn + " sslmode=require channel_binding=disable") as conn:  # extended protocol
        assert conn.execute("SELECT current_user").fetchone() == ("tls_app",)
    if auth == "terminate":
        psycopg2.connect(dsn + " sslmode=require channel_binding=require").close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(proxy.dsn(dbname, user="tls_md5", password="Wrong-" + password) + " sslmode=require")
        psycopg2.connect(proxy.dsn(dbname, user="tls_md5", password="md5 app secret") + " sslmode=require").close()
    else:
        with pytest.raises(psycopg2.OperationalError, match="SCRAM channel binding cannot pass through"):
            psycopg2.connect(dsn + " sslmode=require channel_binding=prefer")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(proxy.dsn(dbname, user="tls_app", password="Wrong-" + password)
                         + " sslmode=require channel_binding=disable")
    assert proxy.stop() == 0
    logged = proxy.log_text() + (proxy.audit_path.read_text() if proxy.audit_path.exists() else "")
    assert "tls_app" in logged  # the sessions were logged at all
    key_lines = [line for line in certs.proxy_key.read_text().splitlines() if not line.startswith("-----")]
    # The stored secrets: the SCRAM verifier's salt and keys, the md5 hash.
    stored = tls_pg.psql("SELECT rolpassword FROM pg_authid WHERE rolname IN ('tls_app', 'tls_md5')").split()
    stored_parts = [part for secret in stored for part in re.split(r"[$:]", secret) if len(part) >= 16]
    assert len(stored_parts) == 4, stored
    # Passwords; SCRAM client-first messages (gs2 headers n, y and p) and client-final ones (c=..., p=proof);
    # the proxy's private key.
    for secret in (password, "Wrong-" + password, "n,,n=", "y,,n=", "p=tls-server-end-point", "c=biws", "c=eSws",
                   "c=cD10bHMt", ",p=", "PRIVATE KEY", *key_lines, *stored_parts):
        assert secret not in logged, secret


# --- throughput ------------------------------------------------------------------------------------

def pgbench_tps(target, dbname, sslmode, seconds=10):
    """pgbench -S for `seconds` with bench/run.sh's 4 clients and 2 threads; channel_binding=disable
    lets TLS on both hops log in."""
    env = dict(os.environ, PGPASSWORD="postgres", PGSSLMODE=sslmode, PGCHANNELBINDING="disable")
    result = subprocess.run(
        ["pgbench", "-n", "-S", "-T", str(seconds), "-c", "4", "-j", "2", "-h", target.host, "-p", str(target.port),
         "-U", "postgres", dbname],
        env=env, capture_output=True, text=True, timeout=seconds + 120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [tps] = re.findall(r"^tps = ([0-9.]+)", result.stdout, re.MULTILINE)
    return float(tps)


@pytest.mark.slow
def test_tls_throughput_note(pg, db, tls_pg, tls_db, certs, start_proxy):
    """Figures for the README, printed (run with -s), not asserted: a loaded CI machine says nothing."""
    for cluster, dbname in ((pg, db), (tls_pg, tls_db)):
        result = subprocess.run(["pgbench", "-i", "-q", "-h", str(cluster.socket_dir), "-p", str(cluster.port),
                                 "-U", "postgres", dbname], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    tls = tls_section(certs, "on", "off")
    tls["client_mode"] = "allow"
    quiet = {"log": {"level": "info"}, "threads": 2}
    plain_upstream = start_proxy(db, config={"tls": tls, **quiet})
    tls_upstream = start_proxy(tls_db, config={"tls": dict(tls, upstream_mode="require"), **quiet,
                                               **upstream_config(tls_pg, tls_db)})
    runs = {
        "direct, sslmode=disable": pgbench_tps(pg, db, "disable"),
        "direct, sslmode=require": pgbench_tps(tls_pg, tls_db, "require"),
        "proxy, client plaintext, upstream plaintext": pgbench_tps(plain_upstream, db, "disable"),
        "proxy, client TLS, upstream plaintext": pgbench_tps(plain_upstream, db, "require"),
        "proxy, client TLS, upstream TLS": pgbench_tps(tls_upstream, tls_db, "require"),
    }
    plain_direct, tls_direct = runs["direct, sslmode=disable"], runs["direct, sslmode=require"]
    print("\npgbench -S -T 10 -c 4 -j 2 (tps, ratio to direct plaintext, ratio to direct TLS)")
    for name, tps in runs.items():
        print(f"  {name:45} {tps:10.0f} {tps / plain_direct:6.2f} {tps / tls_direct:6.2f}")
