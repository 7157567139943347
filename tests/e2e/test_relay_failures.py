# Relay under failure: server shutdown mid-session, malformed startup packets and garbage after login.
import os
import socket
import struct
import time

import psycopg2
import pytest


def query_one(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()


def read_until_closed(sock, timeout=10):
    """Everything the peer sends until it closes; fails if it keeps the connection open."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        except socket.timeout:
            break
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"connection still open after {timeout}s (received {data[:200]!r})")


def error_fields(data):
    """The SQLSTATE and message of the first ErrorResponse in data, or None if there is none."""
    if not data.startswith(b"E"):
        return None
    length = struct.unpack("!I", data[1:5])[0]
    fields = {}
    for field in data[5:1 + length].split(b"\0"):
        if field:
            fields[field[:1]] = field[1:].decode()
    return fields.get(b"C"), fields.get(b"M")


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_server_stop_mid_session(pg, db, start_proxy, mode):
    proxy = start_proxy(db)
    conn = psycopg2.connect(proxy.dsn(db))
    conn.autocommit = True
    assert query_one(conn, "SELECT 1") == (1,)
    try:
        pg.stop(mode)
        with pytest.raises((psycopg2.OperationalError, psycopg2.InterfaceError)) as info:
            query_one(conn, "SELECT 2")
        code = getattr(info.value, "pgcode", None)
        assert code is None or code.startswith("08") or code in ("57P01", "57P02"), code
        if proxy.process is not None:
            assert proxy.process.poll() is None, "occproxy exited when the server went away"
        # While the server is down a new client gets an error, not a hang.
        started = time.monotonic()
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(proxy.dsn(db) + " connect_timeout=10")
        assert time.monotonic() - started < 10
    finally:
        conn.close()
        pg.start()
    again = psycopg2.connect(proxy.dsn(db))
    try:
        assert query_one(again, "SELECT 'back'") == ("back",)
    finally:
        again.close()
    if proxy.process is not None:
        assert proxy.process.poll() is None


STARTUP_V3_HEADER = struct.pack("!I", 3 << 16)


SERVER_ANSWERS = "the server's own answer"
# A length the server would not accept closes the connection at once, as the server does; a
# protocol the server does not speak gets the server's own answer; a packet the server answers in
# the pre-3.0 format (no length word) gets the proxy's protocol error instead.
MALFORMED_FROM_SERVER = (b"E\x00\x00\x00PSFATAL\x00VFATAL\x00C08P01\x00"
                         b"Moccproxy: malformed message from the database server\x00\x00")


@pytest.mark.parametrize("packet, expected", [
    (struct.pack("!I", 3), b""),
    (struct.pack("!I", 0x7FFFFFF0) + STARTUP_V3_HEADER + b"user\0postgres\0", b""),
    (struct.pack("!II", 9, 0x00090009) + b"\0", SERVER_ANSWERS),
    (struct.pack("!II", 8, 1234), MALFORMED_FROM_SERVER),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b""),
], ids=["length-3", "huge-length", "protocol-9.9", "unknown-code", "http"])
def test_malformed_startup_closes_only_that_connection(pg, db, start_proxy, packet, expected):
    proxy = start_proxy(db)
    bystander = psycopg2.connect(proxy.dsn(db))
    try:
        with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
            sock.sendall(packet)
            reply = read_until_closed(sock)
        if expected == SERVER_ANSWERS:
            with socket.create_connection((pg.host, pg.port), timeout=10) as direct:
                direct.sendall(packet)
                expected = read_until_closed(direct)
            assert expected.startswith(b"E")
        assert reply == expected
        assert query_one(bystander, "SELECT 'bystander ok'") == ("bystander ok",)
        fresh = psycopg2.connect(proxy.dsn(db))
        assert query_one(fresh, "SELECT 'new ok'") == ("new ok",)
        fresh.close()
    finally:
        bystander.close()
    if proxy.process is not None:
        assert proxy.process.poll() is None


@pytest.mark.parametrize("garbage", [
    b"\xff" + struct.pack("!I", 4),
    b"Q" + struct.pack("!I", 2),
    b"Q" + struct.pack("!I", 0x7FFFFFF0) + b"SELECT 1",
], ids=["unknown-type", "short-length", "huge-length"])
def test_garbage_after_login_closes_only_that_connection(pg, db, start_proxy, garbage):
    proxy = start_proxy(db)
    bystander = psycopg2.connect(proxy.dsn(db))
    victim = psycopg2.connect(proxy.dsn(db))
    try:
        victim_pid = query_one(victim, "SELECT pg_backend_pid()")[0]
        # Write on the driver's own, logged-in socket, behind its back.
        raw = socket.socket(fileno=os.dup(victim.fileno()))
        raw.sendall(garbage)
        reply = read_until_closed(raw)
        raw.close()
        if reply:
            assert error_fields(reply) is not None, reply[:200]
        assert query_one(bystander, "SELECT 'bystander ok'") == ("bystander ok",)
        # Its server session is gone too, not left behind holding a backend. (A fresh session each
        # time: pg_stat_activity is a snapshot that lasts the transaction.)
        deadline = time.monotonic() + 10
        while pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {victim_pid}") != "0\n":
            assert time.monotonic() < deadline, "the victim's backend is still there"
            time.sleep(0.1)
    finally:
        victim.close()
        bystander.close()
    if proxy.process is not None:
        assert proxy.process.poll() is None
