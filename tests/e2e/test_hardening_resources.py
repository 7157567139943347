# Resource bounds of a real occproxy: memory per idle session and per silent socket, the connection
# limit, the startup timeout, and a client too slow to read a 2 GB result.
import concurrent.futures
import json
import resource
import socket
import struct
import subprocess
import sys
import time
import urllib.request

import psycopg2
import pytest

from occ_helpers import requires_proxy

pytestmark = requires_proxy

KIB = 1024
MIB = 1024 * KIB

IDLE_SESSIONS = 1000
SILENT_SOCKETS = 10_000
# Bounds on the proxy's resident memory. A session holds two 16 KiB frame buffers plus its
# bookkeeping; a socket that never sent a startup packet holds the same buffers at most.
MAX_PER_SESSION = 256 * KIB
MAX_PER_SILENT_SOCKET = 64 * KIB
# A slow reader must not make the proxy buffer the server's output: a few frame buffers at most.
MAX_SLOW_READER_GROWTH = 64 * MIB


def rss(pid):
    """Resident set size of a process in bytes (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * KIB
    raise AssertionError(f"no VmRSS for pid {pid}")


def stats(proxy):
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.stats_port}/stats", timeout=10) as reply:
        return json.loads(reply.read())


def wait_for_connections(proxy, expected, timeout=60):
    """Waits until the proxy counts `expected` open client connections."""
    deadline = time.monotonic() + timeout
    while True:
        current = stats(proxy)["gauges"]["connections_current"]
        if current == expected:
            return
        assert time.monotonic() < deadline, f"the proxy counts {current} connections, expected {expected}"
        time.sleep(0.1)


def settled_rss(pid):
    """RSS once it stops moving (allocator caches and lazily touched pages settle within a second)."""
    previous = rss(pid)
    for _ in range(20):
        time.sleep(0.1)
        current = rss(pid)
        if current == previous:
            return current
        previous = current
    return previous


@pytest.fixture
def many_files():
    """Raises this process's open-file limit (proxies started afterwards inherit it) and restores it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def raise_to(wanted):
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if limit < wanted:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the {wanted} descriptors this test needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, limit), hard))

    yield raise_to
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def startup_packet(user, database):
    body = struct.pack("!I", 3 << 16) + f"user\0{user}\0database\0{database}\0\0".encode()
    return struct.pack("!I", len(body) + 4) + body


def read_frame(sock):
    """One typed backend message: (type, body)."""
    header = read_exactly(sock, 5)
    length = struct.unpack("!I", header[1:])[0]
    return header[:1], read_exactly(sock, length - 4)


def read_exactly(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def error_code(body):
    """The SQLSTATE field of an ErrorResponse body."""
    for field in body.split(b"\0"):
        if field.startswith(b"C"):
            return field[1:].decode()
    return None


def closed_after(sock, timeout):
    """Seconds until the peer closes `sock` (reading and discarding), or None if it stays open."""
    started = time.monotonic()
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except socket.timeout:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_idle_sessions_memory(pg, db, start_proxy, many_files):
    many_files(4 * IDLE_SESSIONS)
    proxy = start_proxy(db, config={"max_client_connections": 2 * IDLE_SESSIONS, "threads": 2})
    warm = psycopg2.connect(proxy.dsn(db))
    warm.autocommit = True
    with warm.cursor() as cur:
        cur.execute("SELECT 1")
    before = settled_rss(proxy.process.pid)

    def connect(_):
        conn = psycopg2.connect(proxy.dsn(db))
        conn.autocommit = True
        return conn

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        sessions = list(pool.map(connect, range(IDLE_SESSIONS)))
    try:
        wait_for_connections(proxy, IDLE_SESSIONS + 1)
        after = settled_rss(proxy.process.pid)
        per_session = (after - before) / IDLE_SESSIONS
        print(f"\nidle sessions: RSS {before / MIB:.1f} MiB -> {after / MIB:.1f} MiB for {IDLE_SESSIONS} sessions, "
              f"{per_session / KIB:.1f} KiB per session (bound {MAX_PER_SESSION // KIB} KiB)")
        assert per_session < MAX_PER_SESSION

        # Every session still works, each on its own server backend.
        pids = set()
        for i, conn in enumerate(sessions):
            with conn.cursor() as cur:
                cur.execute("SELECT %s::int, pg_backend_pid()", (i,))
                value, pid = cur.fetchone()
            assert value == i
            pids.add(pid)
        assert len(pids) == IDLE_SESSIONS
    finally:
        for conn in sessions:
            conn.close()
        warm.close()
    wait_for_connections(proxy, 0)
    assert proxy.process.poll() is None


def test_silent_sockets_memory(pg, db, start_proxy, many_files):
    many_files(SILENT_SOCKETS + 2000)
    proxy = start_proxy(db, config={"max_client_connections": 2 * SILENT_SOCKETS, "startup_timeout": "5m",
                                    "threads": 2})
    before = settled_rss(proxy.process.pid)
    sockets = []
    try:
        for _ in range(SILENT_SOCKETS):
            sockets.append(socket.create_connection((proxy.host, proxy.port), timeout=30))
        wait_for_connections(proxy, SILENT_SOCKETS)
        after = settled_rss(proxy.process.pid)
        per_socket = (after - before) / SILENT_SOCKETS
        print(f"\nsilent sockets: RSS {before / MIB:.1f} MiB -> {after / MIB:.1f} MiB for {SILENT_SOCKETS} sockets, "
              f"{per_socket / KIB:.1f} KiB per socket (bound {MAX_PER_SILENT_SOCKET // KIB} KiB)")
        assert per_socket < MAX_PER_SILENT_SOCKET

        # Each one is still being served: an SSLRequest gets its 'N'.
        ssl_request = struct.pack("!II", 8, 80877103)
        for sock in sockets:
            sock.sendall(ssl_request)
        for sock in sockets:
            assert read_exactly(sock, 1) == b"N"
        # And a real client gets through while they wait.
        conn = psycopg2.connect(proxy.dsn(db))
        with conn.cursor() as cur:
            cur.execute("SELECT 'through'")
            assert cur.fetchone() == ("through",)
        conn.close()
    finally:
        for sock in sockets:
            sock.close()
    wait_for_connections(proxy, 0)
    assert proxy.process.poll() is None


def test_max_client_connections(pg, db, start_proxy):
    limit = 3
    proxy = start_proxy(db, config={"max_client_connections": limit})
    sessions = [psycopg2.connect(proxy.dsn(db)) for _ in range(limit)]
    try:
        with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
            sock.sendall(startup_packet("postgres", db))
            kind, body = read_frame(sock)
            assert (kind, error_code(body)) == (b"E", "53300")
            assert b"Msorry, too many clients already\0" in body
            assert closed_after(sock, 5) is not None
        with pytest.raises(psycopg2.OperationalError, match="sorry, too many clients already"):
            psycopg2.connect(proxy.dsn(db))
        # The sessions inside the limit are untouched; closing one frees its place.
        for conn in sessions:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                assert cur.fetchone() == (1,)
        sessions.pop().close()
        wait_for_connections(proxy, limit - 1)
        sessions.append(psycopg2.connect(proxy.dsn(db)))
        with sessions[-1].cursor() as cur:
            cur.execute("SELECT 'in'")
            assert cur.fetchone() == ("in",)
    finally:
        for conn in sessions:
            conn.close()
    assert proxy.process.poll() is None


def test_startup_timeout(pg, db, start_proxy):
    proxy = start_proxy(db, config={"startup_timeout": "1s"})
    logged_in = psycopg2.connect(proxy.dsn(db))
    try:
        with socket.create_connection((proxy.host, proxy.port), timeout=10) as partial, \
                socket.create_connection((proxy.host, proxy.port), timeout=10) as silent:
            partial.sendall(b"\0\0\0")
            partial_closed = closed_after(partial, 10)
            silent_closed = closed_after(silent, 10)
        assert partial_closed is not None and 0.5 < partial_closed < 5, partial_closed
        assert silent_closed is not None and silent_closed < 5, silent_closed
        # A session past its startup is not subject to the timeout.
        with logged_in.cursor() as cur:
            cur.execute("SELECT 'still here'")
            assert cur.fetchone() == ("still here",)
    finally:
        logged_in.close()
    assert "no startup packet within 1000 ms" in proxy.log_text()
    assert proxy.process.poll() is None


# The slow client runs in its own process, so that it can vanish the way a killed client does: the
# kernel resets its connection with the unread result still queued.
SLOW_READER = r"""
import os, socket, struct, sys, time
import psycopg2

conn = psycopg2.connect(sys.argv[1])
conn.autocommit = True
with conn.cursor() as cur:
    cur.execute("SELECT pg_backend_pid()")
    print(cur.fetchone()[0], flush=True)
# The driver's logged-in socket, driven by hand so that the client reads a little at a time.
raw = socket.socket(fileno=os.dup(conn.fileno()))
raw.settimeout(30)
sql = b"SELECT repeat('x', 1000) FROM generate_series(1, 2000000)\0"
raw.sendall(b"Q" + struct.pack("!I", len(sql) + 4) + sql)
received = 0
while True:
    chunk = raw.recv(16384)
    if not chunk:
        sys.exit("the proxy closed the connection")
    received += len(chunk)
    print(received, flush=True)
    time.sleep(0.005)
"""


def test_slow_reader_keeps_memory_bounded(pg, db, start_proxy):
    proxy = start_proxy(db)
    before = settled_rss(proxy.process.pid)
    reader = subprocess.Popen([sys.executable, "-c", SLOW_READER, proxy.dsn(db)], stdout=subprocess.PIPE, text=True)
    try:
        backend = int(reader.stdout.readline())
        started = time.monotonic()
        peak = before
        received = 0
        while time.monotonic() - started < 8:
            line = reader.stdout.readline()
            assert line, f"the slow reader stopped (exit status {reader.poll()})"
            received = int(line)
            peak = max(peak, rss(proxy.process.pid))
        print(f"\nslow reader: read {received / MIB:.1f} MiB of the ~2 GB result in 8 s; proxy RSS "
              f"{before / MIB:.1f} MiB -> peak {peak / MIB:.1f} MiB (+{(peak - before) / MIB:.1f} MiB, "
              f"bound {MAX_SLOW_READER_GROWTH // MIB} MiB)")
        assert received > 0
        assert peak - before < MAX_SLOW_READER_GROWTH
    finally:
        reader.kill()
        reader.wait()
    # The vanished client's session ends, and its backend stops producing the rest of the 2 GB.
    wait_for_connections(proxy, 0, timeout=15)
    deadline = time.monotonic() + 15
    while pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {backend}") != "0\n":
        assert time.monotonic() < deadline, "the slow reader's backend is still running"
        time.sleep(0.2)
    assert proxy.process.poll() is None
