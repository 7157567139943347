# Relay: authentication (SCRAM-SHA-256) and SSL/GSS negotiation are the server's own, seen unchanged through the proxy.
import asyncio
import socket
import struct
import subprocess

import asyncpg
import psycopg2
import pytest

SSL_REQUEST = struct.pack("!II", 8, 80877103)
GSSENC_REQUEST = struct.pack("!II", 8, 80877104)


def startup_packet(**params):
    body = struct.pack("!I", 3 << 16)
    body += b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
    return struct.pack("!I", len(body) + 4) + body


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


@pytest.fixture
def app_role(pg):
    pg.psql("DROP ROLE IF EXISTS occ_app; CREATE ROLE occ_app LOGIN PASSWORD 'right horse battery'")
    yield "occ_app"
    pg.psql("DROP ROLE IF EXISTS occ_app")


def test_scram_login(pg, db, start_proxy, app_role):
    assert pg.psql(f"SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = '{app_role}'") == "SCRAM-SHA-256$\n"
    proxy = start_proxy(db)
    conn = psycopg2.connect(proxy.dsn(db, user=app_role, password="right horse battery"))
    try:
        cur = conn.cursor()
        cur.execute("SELECT current_user, current_database()")
        assert cur.fetchone() == (app_role, db)
    finally:
        conn.close()


def test_server_asks_for_scram_through_the_proxy(db, start_proxy, app_role):
    proxy = start_proxy(db)
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        sock.sendall(startup_packet(user=app_role, database=db))
        kind, body = read_message(sock)
    # AuthenticationSASL (10) offering SCRAM-SHA-256: the proxy neither answers auth itself nor downgrades it.
    assert (kind, body) == (b"R", struct.pack("!I", 10) + b"SCRAM-SHA-256\0\0")


async def asyncpg_login_error(target, dbname, user, password):
    try:
        conn = await asyncpg.connect(host=target.host, port=target.port, user=user, password=password,
                                     database=dbname, ssl=False)
    except asyncpg.PostgresError as e:
        return type(e).__name__, e.sqlstate, str(e), e.severity
    await conn.close()
    return "logged in"


def without_port(text, target):
    """libpq names the port it connected to in its messages: the one difference allowed."""
    return text.replace(f"port {target.port} ", "port PORT ")


def psql_login(dsn):
    result = subprocess.run(["psql", "-X", "-At", "-c", "SELECT current_user", dsn],
                            capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize("user", ["occ_app", "no_such_role"])
def test_wrong_password_fails_like_direct(pg, db, start_proxy, app_role, user):
    proxy = start_proxy(db)
    direct = asyncio.run(asyncpg_login_error(pg, db, user, "wrong"))
    proxied = asyncio.run(asyncpg_login_error(proxy, db, user, "wrong"))
    assert proxied == direct == (
        "InvalidPasswordError", "28P01", f'password authentication failed for user "{user}"', "FATAL")

    rc, out, err = psql_login(pg.dsn(db, user=user, password="wrong"))
    assert rc == 2
    prc, pout, perr = psql_login(proxy.dsn(db, user=user, password="wrong"))
    assert (prc, pout, without_port(perr, proxy)) == (rc, out, without_port(err, pg))
    assert err.endswith(f'FATAL:  password authentication failed for user "{user}"\n')


def test_ssl_request_declined_then_startup(pg, db, start_proxy):
    proxy = start_proxy(db)
    for target in (pg, proxy):
        with socket.create_connection((target.host, target.port), timeout=10) as sock:
            sock.sendall(SSL_REQUEST)
            assert recv_exact(sock, 1) == b"N"
            sock.sendall(startup_packet(user="postgres", database=db))
            assert read_message(sock) == (b"R", struct.pack("!I", 10) + b"SCRAM-SHA-256\0\0")


def test_gssenc_request_declined_then_startup(db, start_proxy):
    # The server itself may accept GSS encryption (Debian builds it in); the proxy must decline it.
    proxy = start_proxy(db)
    if proxy.process is None:
        pytest.skip("OCC_E2E_DIRECT: only the proxy declines GSSENCRequest")
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        sock.sendall(GSSENC_REQUEST)
        assert recv_exact(sock, 1) == b"N"
        sock.sendall(startup_packet(user="postgres", database=db))
        assert read_message(sock) == (b"R", struct.pack("!I", 10) + b"SCRAM-SHA-256\0\0")


def psql_sslmode(target, db, mode):
    result = subprocess.run(
        ["psql", "-X", "-At", "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
         target.dsn(db) + f" sslmode={mode}"],
        capture_output=True, text=True, timeout=60,
    )
    return result.returncode, result.stdout, without_port(result.stderr, target)


def test_psql_sslmode_prefer_and_require(pg, db, start_proxy):
    proxy = start_proxy(db)
    assert psql_sslmode(proxy, db, "prefer") == psql_sslmode(pg, db, "prefer") == (0, "f\n", "")
    required = psql_sslmode(pg, db, "require")
    assert psql_sslmode(proxy, db, "require") == required
    assert required[0] == 2
    assert required[2].endswith("server does not support SSL, but SSL was required\n")
