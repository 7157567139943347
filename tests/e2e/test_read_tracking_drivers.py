# Read tracking through real drivers: node-postgres and JDBC prepared statements catch a lost update with
# no version in the client's SQL, and every SELECT result reaches the client byte for byte as the server
# sent it (SPEC 3.2 point 3, 3.3).
import asyncio
import base64
import hashlib
import hmac
import json
import os
import pathlib
import shutil
import socket
import struct
import subprocess

import asyncpg
import pytest

from conftest import require
from occ_helpers import (  # noqa: F401 (occ_proxy_fixture provides the occ_proxy fixture)
    CONFLICT_HINT,
    SUBSCRIPTIONS,
    conflict_message,
    counters,
    occ_proxy_fixture,
    read_detail,
    conflict_detail,
    mask_ids,
    with_id,
    requires_proxy,
    rows,
    rules_yaml,
    unread_detail,
)

pytestmark = requires_proxy

HERE = pathlib.Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
JDBC_SOURCE = HERE / "jdbc" / "ReadTracking.java"
JDBC_JAR = pathlib.Path("/usr/share/java/postgresql.jar")


# --- a minimal wire client: what the backend sends, message by message ----------------------------

def message(kind, body=b""):
    return kind + struct.pack("!i", len(body) + 4) + body


def cstr(text):
    return text.encode() + b"\0"


def query(sql):
    return message(b"Q", cstr(sql))


def parse(sql, name="", param_types=()):
    return message(b"P", cstr(name) + cstr(sql) + struct.pack(f"!h{len(param_types)}i", len(param_types),
                                                               *param_types))


def bind(params=(), name="", portal="", param_formats=(), result_formats=()):
    """params: bytes or None (NULL), sent in `param_formats`; result_formats as the Bind message has them."""
    body = cstr(portal) + cstr(name)
    body += struct.pack(f"!h{len(param_formats)}h", len(param_formats), *param_formats)
    body += struct.pack("!h", len(params))
    for value in params:
        body += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    body += struct.pack(f"!h{len(result_formats)}h", len(result_formats), *result_formats)
    return message(b"B", body)


def describe(kind, name=""):
    return message(b"D", kind + cstr(name))


def execute(portal="", max_rows=0):
    return message(b"E", cstr(portal) + struct.pack("!i", max_rows))


def close(kind, name=""):
    return message(b"C", kind + cstr(name))


SYNC = message(b"S")


class WireClient:
    """One protocol 3.0 session over TCP with SCRAM-SHA-256 login (the test cluster's pg_hba for TCP)."""

    def __init__(self, host, port, dbname, user="postgres", password="postgres"):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.buffer = b""
        params = cstr("user") + cstr(user) + cstr("database") + cstr(dbname) + b"\0"
        body = struct.pack("!i", 196608) + params
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        self._login(password)

    def _recv_message(self):
        while True:
            if len(self.buffer) >= 5:
                length = struct.unpack("!i", self.buffer[1:5])[0]
                if len(self.buffer) >= length + 1:
                    kind, body = self.buffer[:1], self.buffer[5:length + 1]
                    self.buffer = self.buffer[length + 1:]
                    return kind, body
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; unread: {self.buffer!r}")
            self.buffer += chunk

    def _auth(self):
        kind, body = self._recv_message()
        if kind == b"E":
            raise RuntimeError(f"login failed: {body!r}")
        assert kind == b"R", (kind, body)
        return struct.unpack("!i", body[:4])[0], body[4:]

    def _login(self, password):
        code, data = self._auth()
        assert code == 10 and b"SCRAM-SHA-256\0" in data, (code, data)
        nonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = f"n=,r={nonce}"
        first = ("n,," + first_bare).encode()
        self.sock.sendall(message(b"p", cstr("SCRAM-SHA-256") + struct.pack("!i", len(first)) + first))
        code, server_first = self._auth()
        assert code == 11, code
        fields = dict(item.split("=", 1) for item in server_first.decode().split(","))
        assert fields["r"].startswith(nonce)
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        final_bare = f"c=biws,r={fields['r']}"
        auth_message = f"{first_bare},{server_first.decode()},{final_bare}".encode()
        signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self.sock.sendall(message(b"p", f"{final_bare},p={base64.b64encode(proof).decode()}".encode()))
        code, server_final = self._auth()
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        expected = base64.b64encode(hmac.digest(server_key, auth_message, "sha256")).decode()
        assert (code, server_final.decode()) == (12, f"v={expected}")
        assert self._auth() == (0, b"")
        # ParameterStatus and BackendKeyData legitimately differ between sessions: not compared.
        while self._recv_message()[0] != b"Z":
            pass

    def exchange(self, *messages):
        """Sends the messages at once; returns every (type, body) up to the ReadyForQuery of the last
        Query or Sync among them."""
        self.sock.sendall(b"".join(messages))
        pending = sum(m[:1] in (b"Q", b"S") for m in messages)
        received = []
        while pending:
            kind, body = self._recv_message()
            received.append((kind, body))
            pending -= kind == b"Z"
        return received

    def close(self):
        self.sock.sendall(message(b"X"))
        self.sock.close()


def int4(value):
    return struct.pack("!i", value)


# Two protected tables and an unprotected one, with NULLs and types whose binary forms are not text.
BYTES_SCHEMA = SUBSCRIPTIONS + """
INSERT INTO subscriptions (id, plan_id, status, notes) VALUES (45, 2, 'paused', NULL), (46, 2, 'ended', NULL);
CREATE TABLE plans (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2));
INSERT INTO plans VALUES (1, 'basic', 9.90), (2, 'pro', NULL);
CREATE TABLE invoices (
  id bigint PRIMARY KEY,
  subscription_id int,
  amount numeric(12,3),
  issued timestamptz,
  paid boolean,
  lines jsonb,
  tags text[],
  blob bytea,
  ratio float8
);
INSERT INTO invoices VALUES
  (1, 42, 12.345, '2024-01-02 03:04:05.678+00', true, '{"n": 1, "x": [1, "é"]}', '{a,"b c",NULL}', '\\x00ff10', 0.1),
  (2, 42, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (3, 45, -0.5, '1999-12-31 23:59:59+00', false, '[]', '{}', '\\x', 'NaN');
"""
BYTES_RULES = rules_yaml(tables=("public.subscriptions", "public.invoices"))

SIMPLE_CASES = {
    "select star": "SELECT * FROM subscriptions ORDER BY id",
    "one column": "SELECT notes FROM subscriptions WHERE id = 42",
    "nulls": "SELECT id, notes FROM subscriptions WHERE notes IS NULL ORDER BY id",
    "join": "SELECT s.id, s.status, p.name, p.price FROM subscriptions s JOIN plans p ON p.id = s.plan_id "
            "ORDER BY s.id",
    "join of two protected tables": "SELECT s.notes, i.amount, i.tags FROM subscriptions s "
                                    "JOIN invoices i ON i.subscription_id = s.id ORDER BY i.id",
    "subquery in where": "SELECT id, status FROM subscriptions WHERE plan_id IN "
                         "(SELECT id FROM plans WHERE price IS NULL) ORDER BY id",
    "subquery in from": "SELECT x.id, x.notes FROM (SELECT id, notes FROM subscriptions WHERE id > 43) x ORDER BY 1",
    "aggregate": "SELECT status, count(*), max(notes) FROM subscriptions GROUP BY status ORDER BY status",
    "empty": "SELECT * FROM subscriptions WHERE id = -1",
    "every type": "SELECT * FROM invoices ORDER BY id",
    "expressions and star": "SELECT upper(status) AS s, *, id * 2 FROM subscriptions WHERE id <= 43 ORDER BY id",
    "for update": "SELECT id, status FROM subscriptions WHERE id = 44 FOR UPDATE",
    "several statements": "SELECT notes FROM subscriptions WHERE id = 43; SELECT 1 AS one; "
                          "SELECT * FROM invoices WHERE id = 2; SELECT * FROM subscriptions WHERE id = -1",
    "error after a read": "SELECT * FROM subscriptions WHERE id = 42; SELECT 1 / 0; SELECT * FROM invoices",
}

STAR_BY_ID = "SELECT * FROM subscriptions WHERE id >= $1 ORDER BY id"
EXTENDED_CASES = {
    "text params, binary results": [
        parse(STAR_BY_ID), bind([b"43"], result_formats=[1]), describe(b"P"), execute(), SYNC],
    "per-column result formats": [
        parse(STAR_BY_ID), bind([b"42"], result_formats=[1, 0, 1, 0, 1]), describe(b"P"), execute(), SYNC],
    "binary params and results, every type": [
        parse("SELECT * FROM invoices WHERE id >= $1 ORDER BY id", param_types=[20]),
        bind([struct.pack("!q", 1)], param_formats=[1], result_formats=[1]), describe(b"P"), execute(), SYNC],
    "text results": [
        parse("SELECT notes, status FROM subscriptions WHERE id = $1"), bind([b"42"]), describe(b"P"),
        execute(), SYNC],
    "binary join": [
        parse("SELECT s.notes, i.* FROM subscriptions s JOIN invoices i ON i.subscription_id = s.id "
              "WHERE s.id = ANY($1) ORDER BY i.id"),
        bind([b"{42,45}"], result_formats=[1]), describe(b"P"), execute(), SYNC],
    "binary empty": [
        parse(STAR_BY_ID), bind([b"1000"], result_formats=[1]), describe(b"P"), execute(), SYNC],
    "binary nulls": [
        parse("SELECT notes, id FROM subscriptions WHERE notes IS NULL ORDER BY id"),
        bind(result_formats=[1]), describe(b"P"), execute(), SYNC],
    "binary aggregate": [
        parse("SELECT plan_id, count(*) FROM subscriptions GROUP BY plan_id ORDER BY plan_id"),
        bind(result_formats=[1]), describe(b"P"), execute(), SYNC],
    "row limit on a named portal": [
        query("BEGIN"),
        parse(STAR_BY_ID, name="limited"), bind([int4(42)], name="limited", portal="cur", param_formats=[1],
                                                 result_formats=[1]),
        describe(b"P", "cur"), execute("cur", 2), execute("cur", 2), execute("cur", 0), close(b"P", "cur"),
        close(b"S", "limited"), SYNC, query("COMMIT")],
    "describe statements": [
        parse("SELECT * FROM subscriptions WHERE id = $1 AND status <> $2", name="d1"), describe(b"S", "d1"),
        parse("SELECT i.amount, s.* FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id "
              "WHERE i.id = $1", name="d2", param_types=[20]), describe(b"S", "d2"),
        parse("SELECT notes FROM subscriptions WHERE id = $1 AND plan_id = $2", name="d3", param_types=[0, 23]),
        describe(b"S", "d3"),
        parse("SELECT count(*) FROM subscriptions WHERE id > $1", name="d4"), describe(b"S", "d4"),
        SYNC],
    "a named statement reused": [
        parse("SELECT id, notes, status FROM subscriptions WHERE id = $1", name="again"), describe(b"S", "again"),
        SYNC,
        *[m for key in (42, 43, 45, 99) for m in (
            bind([int4(key)], name="again", param_formats=[1], result_formats=[1, 0, 1]), describe(b"P"),
            execute())],
        SYNC, close(b"S", "again"), SYNC],
    "binary results after a statement describe": [
        parse(STAR_BY_ID, name="described"), describe(b"S", "described"), SYNC,
        bind([b"44"], name="described", result_formats=[1, 1, 0, 0, 1]), execute(), SYNC],
    "error in a pipeline after a read": [
        parse(STAR_BY_ID), bind([b"44"], result_formats=[1]), execute(),
        parse("SELECT 1 / $1::int"), bind([b"0"]), execute(),
        parse(STAR_BY_ID), bind([b"42"]), execute(), SYNC],
}


def wire_results(target, dbname):
    """{case: [(type, body), ...]} for every simple and extended case, each on a fresh session."""
    results = {}
    for name, sql in SIMPLE_CASES.items():
        client = WireClient(target.host, target.port, dbname)
        results[name] = client.exchange(query(sql))
        client.close()
    for name, messages in EXTENDED_CASES.items():
        client = WireClient(target.host, target.port, dbname)
        results[name] = client.exchange(*messages)
        client.close()
    return results


def kinds(received):
    return "".join(kind.decode() for kind, _ in received)


def test_select_results_are_byte_identical_to_direct(pg, db, occ_proxy):
    proxy = occ_proxy(BYTES_RULES, schema=BYTES_SCHEMA)
    direct = wire_results(pg, db)
    before = counters(proxy)
    proxied = wire_results(proxy, db)
    after = counters(proxy)
    for name in direct:
        assert proxied[name] == direct[name], name
    # The comparison means something only if the proxy appended columns to (and stripped them from)
    # most of these results.
    assert after["reads_tracked"] - before["reads_tracked"] >= 20
    assert after["reads_untracked"] > before["reads_untracked"]
    # The shapes the cases were written to produce (so an empty or failed case cannot pass unnoticed).
    assert kinds(direct["select star"]) == "TDDDDDCZ"
    assert kinds(direct["empty"]) == "TCZ"
    assert kinds(direct["several statements"]) == "TDCTDCTDCTCZ"
    assert kinds(direct["error after a read"]) == "TDCEZ"
    assert kinds(direct["text params, binary results"]) == "12TDDDDCZ"
    assert kinds(direct["binary empty"]) == "12TCZ"
    assert kinds(direct["row limit on a named portal"]) == "CZ12TDDsDDsDC33ZCZ"
    assert kinds(direct["describe statements"]) == "1tT1tT1tT1tTZ"
    assert kinds(direct["a named statement reused"]) == "1tTZ2TDC2TDC2TDC2TCZ3Z"
    assert kinds(direct["error in a pipeline after a read"]) == "12DDDC1EZ"
    assert kinds(direct["binary results after a statement describe"]) == "1tTZ2DDDCZ"


# --- the lost update through real drivers ----------------------------------------------------------

ROUNDS = 20
DRIVER_SCHEMA = SUBSCRIPTIONS + f"""
INSERT INTO subscriptions (id, status, notes) SELECT g, 'active', 'n' || g FROM generate_series(101, {100 + ROUNDS}) g;
"""
STALE_CONFLICT = {
    "code": "40001",
    "message": conflict_message(42, 1, 2),
    "detail": with_id(read_detail(2, ["status"])),
    "hint": CONFLICT_HINT,
    "schema": "public",
    "table": "subscriptions",
    "constraint": "occ_version",
}


def rounds_applied(pg, db):
    """The success rounds' rows: notes written by the agent, status by billing on even rounds."""
    expected = [[str(100 + i), f"billed {i}" if i % 2 == 0 else "active", f"note {i}", "3" if i % 2 == 0 else "2"]
                for i in range(1, ROUNDS + 1)]
    assert rows(pg, db, "SELECT id, status, notes, version FROM subscriptions WHERE id > 100 ORDER BY id") == expected


def test_node_postgres_named_statements_catch_the_lost_update(pg, db, occ_proxy):
    require(shutil.which("node"), "node is not installed")
    require((NODE_DIR / "node_modules" / "pg").is_dir(), "run `npm ci` in tests/e2e/node first")
    proxy = occ_proxy(rules_yaml(), schema=DRIVER_SCHEMA)
    env = dict(os.environ, PGHOST=proxy.host, PGPORT=str(proxy.port), PGUSER="postgres",
               PGPASSWORD="postgres", PGDATABASE=db)
    result = subprocess.run(["node", "read_tracking.js", str(ROUNDS)], cwd=NODE_DIR, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = mask_ids(json.loads(result.stdout))
    assert out == {
        "rounds": ["UPDATE 1"] * ROUNDS,
        # The driver's metadata and rows carry the client's columns only: no appended key or version.
        "shapes": {
            "star": {"fields": ["id:23", "plan_id:23", "status:25", "notes:25", "version:20"], "rows": [5]},
            "status": {"fields": ["status:25", "notes:25"], "rows": [2]},
        },
        "read42": [[42, 1, "active", "old", "1"]],
        "billing": "UPDATE 1",
        "stale": STALE_CONFLICT,
        "after": [["paused", "old"]],
        "reread42": [[42, 1, "paused", "old", "2"]],
        "retry": "UPDATE 1",
    }
    rounds_applied(pg, db)
    assert rows(pg, db, "SELECT status, notes, version FROM subscriptions WHERE id = 42") == [
        ["paused", "agent note", "3"]]
    assert counters(proxy)["conflicts"] == 1


@pytest.mark.parametrize("binary_transfer", [
    "false", "true"])
def test_jdbc_server_prepared_statements_catch_the_lost_update(pg, db, occ_proxy, tmp_path, binary_transfer):
    require(shutil.which("javac") and shutil.which("java"), "a JDK is not installed")
    require(JDBC_JAR.exists(), f"{JDBC_JAR} is missing (libpostgresql-jdbc-java)")
    proxy = occ_proxy(rules_yaml(), schema=DRIVER_SCHEMA)
    compiled = subprocess.run(["javac", "-cp", str(JDBC_JAR), "-d", str(tmp_path), str(JDBC_SOURCE)],
                              capture_output=True, text=True, timeout=180)
    assert compiled.returncode == 0, compiled.stderr
    url = (f"jdbc:postgresql://{proxy.host}:{proxy.port}/{db}?prepareThreshold=1&sslmode=disable"
           f"&binaryTransfer={binary_transfer}")
    result = subprocess.run(["java", "-cp", f"{tmp_path}{os.pathsep}{JDBC_JAR}", "ReadTracking", url,
                             "postgres", "postgres", str(ROUNDS)],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    c = STALE_CONFLICT
    assert mask_ids(result.stdout).splitlines() == [
        "rounds: " + ",".join(["1"] * ROUNDS),
        # The driver's metadata and rows carry the client's columns only: no appended key or version.
        f"last star read: [id:int4,plan_id:int4,status:text,notes:text,version:int8] "
        f"({100 + ROUNDS},1,active,n{100 + ROUNDS},1)",
        f"last status read: [status:text,notes:text] (billed {ROUNDS},n{100 + ROUNDS})",
        "server prepared: 3",
        "read 42: [id:int4,plan_id:int4,status:text,notes:text,version:int8] (42,1,active,old,1)",
        "billing: 1",
        f"stale write: PSQLException {c['code']} | {c['message']} | {c['detail']} | {c['hint']} | "
        f"{c['schema']}.{c['table']} | {c['constraint']}",
        "after: [status:text,notes:text] (paused,old)",
        "reread 42: [id:int4,plan_id:int4,status:text,notes:text,version:int8] (42,1,paused,old,2)",
        "retry: 1",
    ]
    rounds_applied(pg, db)
    assert rows(pg, db, "SELECT status, notes, version FROM subscriptions WHERE id = 42") == [
        ["paused", "agent note", "3"]]
    assert counters(proxy)["conflicts"] == 1


def test_binary_results_after_a_statement_describe_teach_the_version(pg, db, occ_proxy):
    """The wire-level form of what JDBC (binaryTransfer) and asyncpg do: Parse + Describe S, then Bind
    asking for binary results, with no Describe of the portal."""
    proxy = occ_proxy(rules_yaml())
    agent = WireClient(proxy.host, proxy.port, db)
    assert kinds(agent.exchange(parse("SELECT * FROM subscriptions WHERE id = $1", name="s"),
                                describe(b"S", "s"), SYNC)) == "1tTZ"
    assert kinds(agent.exchange(bind([b"42"], name="s", result_formats=[1, 1, 0, 0, 1]), execute(), SYNC)) == "2DCZ"
    pg.psql("UPDATE subscriptions SET status = 'paused' WHERE id = 42", dbname=db)
    [(kind, body), ready] = agent.exchange(query("UPDATE subscriptions SET notes = 'x' WHERE id = 42"))
    fields = dict((f[:1], f[1:].decode()) for f in body.split(b"\0") if f)
    assert (kind, fields[b"C"], fields[b"M"], conflict_detail(fields[b"D"])) == (
        b"E", "40001", conflict_message(42, 1, 2), read_detail(2, ["status"]))
    agent.close()


def test_asyncpg_read_then_write_catches_the_lost_update(pg, db, occ_proxy):
    proxy = occ_proxy(rules_yaml())

    async def scenario():
        agent = await asyncpg.connect(host=proxy.host, port=proxy.port, user="postgres", password="postgres",
                                      database=db)
        try:
            read = await agent.fetch("SELECT * FROM subscriptions WHERE id = $1", 42)
            assert [tuple(r) for r in read] == [(42, 1, "active", "old", 1)]
            pg.psql("UPDATE subscriptions SET status = 'paused' WHERE id = 42", dbname=db)
            with pytest.raises(asyncpg.exceptions.SerializationError) as caught:
                await agent.execute("UPDATE subscriptions SET notes = $1 WHERE id = $2", "agent note", 42)
            e = caught.value
            assert (e.message, e.constraint_name) == (conflict_message(42, 1, 2), "occ_version")
            # asyncpg asks for every column in binary, and binary values are not kept as the read's base:
            # the DETAIL cannot name the changed columns and takes the form of an unread row.
            assert conflict_detail(e.detail) == unread_detail(1, 2)
        finally:
            await agent.close()

    asyncio.run(scenario())
    assert rows(pg, db, "SELECT status, notes FROM subscriptions WHERE id = 42") == [["paused", "old"]]


def test_asyncpg_own_writes_teach_the_version_without_returning(pg, db, occ_proxy):
    """A write checked against the one row the session read needs no RETURNING: "UPDATE 1" means the row
    held the version read and now holds the next one, "DELETE 1" that it is gone. Under reject, each step
    shows what the session expects: a write it cannot check is refused (55000), a wrong version is 40001."""
    proxy = occ_proxy(rules_yaml(on_unknown_version="reject"))

    async def scenario():
        agent = await asyncpg.connect(host=proxy.host, port=proxy.port, user="postgres", password="postgres",
                                      database=db, server_settings={"application_name": "tag agent"})
        write = "UPDATE subscriptions SET notes = $1 WHERE id = $2"
        try:
            await agent.fetch("SELECT * FROM subscriptions WHERE id = $1", 42)
            assert await agent.execute(write, "first", 42) == "UPDATE 1"
            assert await agent.execute(write, "second", 42) == "UPDATE 1"
            # The server ran the checked write with nothing appended.
            [[sent]] = rows(pg, db, "SELECT query FROM pg_stat_activity WHERE application_name = 'tag agent'")
            assert "occ.conflict(" in sent and "RETURNING" not in sent.upper()
            pg.psql("UPDATE subscriptions SET status = 'paused' WHERE id = 42", dbname=db)
            with pytest.raises(asyncpg.exceptions.SerializationError) as caught:
                await agent.execute(write, "third", 42)
            assert (caught.value.message, conflict_detail(caught.value.detail)) == (
                conflict_message(42, 3, 4), unread_detail(3, 4))

            # A rolled-back write teaches nothing: the session still expects the version it read.
            await agent.fetch("SELECT * FROM subscriptions WHERE id = $1", 43)
            await agent.execute("BEGIN")
            assert await agent.execute(write, "draft", 43) == "UPDATE 1"
            assert await agent.execute(write, "draft 2", 43) == "UPDATE 1"
            await agent.execute("ROLLBACK")
            assert await agent.execute(write, "final", 43) == "UPDATE 1"

            # A deleted row is forgotten: the same key inserted again behind the proxy's back is a row
            # the session never read, not one it expects at the version it deleted.
            await agent.fetch("SELECT * FROM subscriptions WHERE id = $1", 44)
            assert await agent.execute("DELETE FROM subscriptions WHERE id = $1", 44) == "DELETE 1"
            pg.psql("INSERT INTO subscriptions (id, status, notes, version) VALUES (44, 'new', 'again', 1)",
                    dbname=db)
            with pytest.raises(asyncpg.exceptions.ObjectNotInPrerequisiteStateError):
                await agent.execute(write, "blind", 44)
        finally:
            await agent.close()

    asyncio.run(scenario())
    assert rows(pg, db, "SELECT id, status, notes, version FROM subscriptions ORDER BY id") == [
        ["42", "paused", "second", "4"], ["43", "active", "final", "2"], ["44", "new", "again", "1"]]
    assert counters(proxy)["conflicts"] == 1


ERROR_CASES = {
    "unknown column": [query("SELECT * FROM subscriptions WHERE nosuch = 1")],
    "bad literal": [query("SELECT notes FROM subscriptions WHERE id = 'x'")],
    "error in the statement after a read": [
        query("SELECT * FROM subscriptions WHERE id = 42; SELECT nosuch FROM plans")],
    "parse": [parse("SELECT notes FROM subscriptions WHERE nosuch = $1", name="p"), SYNC],
}


def test_error_positions_point_into_the_clients_text(pg, db, occ_proxy):
    """psql and drivers place the error's caret with P: it must count in the text the client sent."""
    proxy = occ_proxy(BYTES_RULES, schema=BYTES_SCHEMA)
    results = {}
    for target in (pg, proxy):
        for name, messages in ERROR_CASES.items():
            client = WireClient(target.host, target.port, db)
            results[target, name] = client.exchange(*messages)
            client.close()
    assert b"\0P35\0" in results[pg, "unknown column"][0][1]
    for name in ERROR_CASES:
        assert results[proxy, name] == results[pg, name], name
