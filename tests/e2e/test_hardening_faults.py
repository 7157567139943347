# Faults around a real occproxy: the server killed mid-COPY, mid-transaction and mid-authentication,
# a client vanishing mid-pipeline, SIGTERM with a transaction open, descriptor exhaustion, and no
# password or SCRAM proof in its debug log.
import os
import resource
import signal
import socket
import struct
import time

import psycopg
import psycopg2
import pytest

from occ_helpers import requires_proxy, wait_for

pytestmark = requires_proxy

TABLE = "CREATE TABLE items (id int PRIMARY KEY, note text);"


def message(kind, body=b""):
    return kind + struct.pack("!I", len(body) + 4) + body


def cstring(text):
    return text.encode() + b"\0"


def startup_packet(user, database):
    parameters = cstring("user") + cstring(user) + cstring("database") + cstring(database) + b"\0"
    body = struct.pack("!I", 3 << 16) + parameters
    return struct.pack("!I", len(body) + 4) + body


def read_frame(sock):
    """One typed message: (type, body); None once the peer has closed."""
    header = read_exactly(sock, 5)
    if header is None:
        return None
    length = struct.unpack("!I", header[1:])[0]
    return header[:1], read_exactly(sock, length - 4)


def read_exactly(sock, n):
    data = bytearray()
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def read_until(sock, kind):
    """Messages up to and including the first of type `kind`."""
    frames = []
    while True:
        frame = read_frame(sock)
        assert frame is not None, f"closed before {kind!r}; got {frames}"
        frames.append(frame)
        if frame[0] == kind:
            return frames


def read_to_close(sock, timeout=10):
    """The messages the peer sends until it closes; fails if it keeps the connection open."""
    sock.settimeout(timeout)
    frames = []
    try:
        while (frame := read_frame(sock)) is not None:
            frames.append(frame)
    except socket.timeout:
        pytest.fail(f"connection still open after {timeout}s; got {frames}")
    return frames


def error_code(body):
    for field in body.split(b"\0"):
        if field.startswith(b"C"):
            return field[1:].decode()
    return None


def raw_socket(conn):
    """The logged-in socket of a psycopg2 connection, to drive by hand behind the driver's back."""
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    sock.settimeout(30)
    return sock


def query_one(dsn, sql):
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
    conn.close()
    return row


def count_items(pg, db):
    return int(pg.psql("SELECT count(*) FROM items", dbname=db))


def kill_server(pg):
    """Stops the server as a crash would. The test cluster runs with synchronous_commit off: flush
    what is committed first (the test's setup included), or the crash may take it away."""
    pg.psql("CHECKPOINT")
    pg.stop("immediate")


def assert_serves(proxy, db):
    """The proxy is alive and serves a new session."""
    assert proxy.process.poll() is None, "occproxy exited"
    assert query_one(proxy.dsn(db), "SELECT 'served'") == ("served",)


def test_server_killed_mid_copy(pg, db, start_proxy):
    pg.psql(TABLE, dbname=db)
    proxy = start_proxy(db)
    conn = psycopg2.connect(proxy.dsn(db))
    conn.autocommit = True
    sock = raw_socket(conn)
    try:
        sock.sendall(message(b"Q", cstring("COPY items FROM STDIN")))
        assert read_until(sock, b"G")[-1][0] == b"G"
        for i in range(1, 1001):
            sock.sendall(message(b"d", f"{i}\trow {i}\n".encode()))
        kill_server(pg)
        frames = read_to_close(sock)
        # The server's own warning as it goes, then the proxy's FATAL: the client hears why.
        assert [(kind, error_code(body)) for kind, body in frames] == [(b"N", "57P01"), (b"E", "08006")], frames
        assert proxy.process.poll() is None
    finally:
        sock.close()
        conn.close()
        pg.ensure_running()
    assert_serves(proxy, db)
    assert count_items(pg, db) == 0


def test_server_killed_in_open_transaction(pg, db, start_proxy):
    pg.psql(TABLE + "INSERT INTO items SELECT g, 'committed' FROM generate_series(1, 5) g;", dbname=db)
    proxy = start_proxy(db)
    conn = psycopg2.connect(proxy.dsn(db))
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO items SELECT g, 'open' FROM generate_series(6, 105) g")
            cur.execute("UPDATE items SET note = 'changed' WHERE id <= 5")
        kill_server(pg)
        with pytest.raises((psycopg2.OperationalError, psycopg2.InterfaceError)):
            with conn.cursor() as cur:
                cur.execute("COMMIT")
        assert proxy.process.poll() is None
    finally:
        conn.close()
        pg.ensure_running()
    assert_serves(proxy, db)
    assert pg.psql("SELECT count(*), count(*) FILTER (WHERE note = 'committed') FROM items", dbname=db) == "5|5\n"


def test_server_killed_during_authentication(pg, db, start_proxy):
    proxy = start_proxy(db)
    with socket.create_connection((proxy.host, proxy.port), timeout=30) as sock:
        sock.sendall(startup_packet("postgres", db))
        kind, body = read_frame(sock)
        assert kind == b"R" and struct.unpack("!I", body[:4])[0] == 10, (kind, body)  # AuthenticationSASL
        try:
            kill_server(pg)
            frames = read_to_close(sock)
            # The server says nothing mid-authentication; the proxy does.
            assert [(kind, error_code(body)) for kind, body in frames] == [(b"E", "08006")], frames
            assert proxy.process.poll() is None
        finally:
            pg.ensure_running()
    assert_serves(proxy, db)


def test_client_vanishing_mid_pipeline(pg, db, start_proxy):
    pg.psql(TABLE, dbname=db)
    proxy = start_proxy(db)
    bystander = psycopg2.connect(proxy.dsn(db))
    victim = psycopg2.connect(proxy.dsn(db))
    victim.autocommit = True
    with victim.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        victim_pid = cur.fetchone()[0]
    sock = raw_socket(victim)
    insert = message(b"P", cstring("ins") + cstring("INSERT INTO items VALUES ($1::int, 'pipelined')") + b"\0\0")

    def execute(i):
        value = str(i).encode()
        bind = cstring("") + cstring("ins") + struct.pack("!hhi", 0, 1, len(value)) + value + b"\0\0"
        return message(b"B", bind) + message(b"E", cstring("") + struct.pack("!i", 0))

    try:
        # Three rows in a pipeline that ends in Sync: committed.
        sock.sendall(insert + b"".join(execute(i) for i in range(1, 4)) + message(b"S"))
        assert read_until(sock, b"Z")[-1] == (b"Z", b"I")
        # Fifty more without a Sync, and half of the next message: the client dies there.
        sock.sendall(b"".join(execute(i) for i in range(4, 54)) + message(b"B", b"\0ins\0")[:7])
        time.sleep(0.2)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()
        victim.close()
    wait_for("the victim's backend to go",
             lambda: pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {victim_pid}") == "0\n")
    assert count_items(pg, db) == 3
    with bystander.cursor() as cur:
        cur.execute("SELECT 'bystander ok'")
        assert cur.fetchone() == ("bystander ok",)
    bystander.close()
    assert_serves(proxy, db)


def test_sigterm_lets_an_open_transaction_commit(pg, db, start_proxy):
    pg.psql(TABLE, dbname=db)
    proxy = start_proxy(db, config={"shutdown_timeout": "30s"})
    in_transaction = psycopg2.connect(proxy.dsn(db))
    idle = psycopg2.connect(proxy.dsn(db))
    idle_socket = raw_socket(idle)
    try:
        with in_transaction.cursor() as cur:
            cur.execute("INSERT INTO items VALUES (1, 'before SIGTERM')")
        proxy.process.send_signal(signal.SIGTERM)

        def refused():
            try:
                socket.create_connection((proxy.host, proxy.port), timeout=1).close()
            except ConnectionRefusedError:
                return True
            return False

        wait_for("the listener to close", refused, timeout=5)
        # The idle session is closed at once, with the server's own code for an administrator shutdown.
        frames = read_to_close(idle_socket)
        assert [(kind, error_code(body)) for kind, body in frames] == [(b"E", "57P01")]
        # The transaction carries on to its COMMIT.
        with in_transaction.cursor() as cur:
            cur.execute("INSERT INTO items VALUES (2, 'after SIGTERM')")
        in_transaction.commit()
        assert proxy.process.wait(timeout=10) == 0
    finally:
        idle_socket.close()
        in_transaction.close()
        idle.close()
    assert pg.psql("SELECT string_agg(note, ',' ORDER BY id) FROM items", dbname=db) == "before SIGTERM,after SIGTERM\n"


def test_descriptor_exhaustion_does_not_spin(pg, db, start_proxy):
    proxy = start_proxy(db)
    pid = proxy.process.pid
    open_now = len(os.listdir(f"/proc/{pid}/fd"))
    _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_now + 20, hard))

    def cpu_seconds():
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    # More clients than descriptors left: accept() fails with EMFILE while they wait.
    sockets = [socket.create_connection((proxy.host, proxy.port), timeout=10) for _ in range(40)]
    try:
        time.sleep(0.5)
        cpu_before, log_before = cpu_seconds(), os.path.getsize(proxy.log_path)
        time.sleep(2)
        cpu_used, logged = cpu_seconds() - cpu_before, os.path.getsize(proxy.log_path) - log_before
        print(f"\nEMFILE for 2 s: {cpu_used:.2f} s of CPU, {logged} bytes of log")
        assert cpu_used < 0.2 and logged < 10_000, (cpu_used, logged)
    finally:
        for sock in sockets:
            sock.close()
    # Once descriptors free up, the waiting and new clients are served.
    wait_for("a new session through the proxy",
             lambda: query_one(proxy.dsn(db) + " connect_timeout=5", "SELECT 'back'") == ("back",), timeout=15)


def test_no_secrets_in_debug_log(pg, db, start_proxy):
    password = "Hardening-Pw-7f3a9c"
    new_password = "Hardening-New-Pw-51e2"
    pg.psql(f"CREATE ROLE hardening_user LOGIN PASSWORD '{password}'")
    try:
        proxy = start_proxy(db)
        assert proxy.config["log"]["level"] == "debug"
        dsn = proxy.dsn(db, user="hardening_user", password=password)
        assert query_one(dsn, "SELECT current_user") == ("hardening_user",)
        with psycopg.connect(dsn) as conn:  # extended protocol
            assert conn.execute("SELECT current_user").fetchone() == ("hardening_user",)
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(proxy.dsn(db, user="hardening_user", password="Wrong-" + password))
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(f"ALTER ROLE hardening_user PASSWORD '{new_password}'")
        conn.close()
        assert query_one(proxy.dsn(db, user="hardening_user", password=new_password), "SELECT 1") == (1,)
        assert proxy.stop() == 0
        logged = proxy.log_text() + (proxy.audit_path.read_text() if proxy.audit_path.exists() else "")
        assert "hardening_user" in logged  # the sessions were logged at all
        # The passwords, and the SCRAM client messages (client-first "n,,n=", client-final "c=biws,r=...,p=").
        for secret in (password, new_password, "n,,n=", "c=biws", ",p="):
            assert secret not in logged, secret
    finally:
        pg.psql("DROP ROLE IF EXISTS hardening_user")
