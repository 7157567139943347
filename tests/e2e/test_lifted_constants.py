"""Constants lifted out of a simple-protocol statement (src/sql/lifted_constants.h) store, value for value,
what the statement stores when the server reads the literals itself: each tricky statement is run as a
Query on one row and, lifted, as Parse/Bind/Execute on another, under both standard_conforming_strings
settings, and the two rows are compared byte for byte."""

import json
import os
import pathlib
import subprocess

import pytest

from test_read_tracking_drivers import SYNC, WireClient, bind, execute, parse, query

REPO = pathlib.Path(__file__).resolve().parents[2]

# (assignments, how many constants are lifted under standard_conforming_strings on, off); every
# statement also pins `WHERE id = <n>`, which is lifted too (counted here).
CASES = [
    ("s = 'it''s'", 2, 2),
    ("s = 'back\\slash \\n \\\\'", 2, 1),  # off: the server warns about the backslash, so it stays
    ("s = 'plain', t = 'two'", 3, 3),
    ("s = 'h\u00e9llo \u2603 \U0001F600'", 2, 2),
    ("s = ''", 2, 2),
    ("s = $$a'b\\c$$", 2, 2),
    ("s = $t$x$$y$t$", 2, 2),
    ("s = 'line1\nline2'", 2, 2),
    ("s = 'tab\there'", 2, 2),
    ("s = '00042'", 2, 2),
    ("t = '2147483648'::text", 2, 2),
    ("b = 2147483647", 2, 2),
    ("b = 2147483648", 2, 2),
    ("b = 9223372036854775807", 2, 2),
    ("n = 9223372036854775808", 2, 2),
    ("n = 123456789012345678901234567890", 2, 2),
    ("b = 00042", 2, 2),
    # Operands of + - * /, and an int4 behind a prefix minus (`-$n`).
    ("b = -5", 2, 2),
    ("b = 7 + -5", 2, 2),
    ("n = 3 * 2147483648", 2, 2),
    ("n = 10 / 4", 2, 2),
    ("b = -2147483647 - 1", 2, 2),
    # Left in the text (only the key is lifted): typed and escaped constants, int4's minimum, decimals.
    ("s = DATE '2020-01-02'", 1, 1),
    ("s = E'e\\x41\\''", 1, 1),
    ("s = U&'d\\0061t'", 1, None),  # off: the server refuses U&''
    ("b = -2147483648", 1, 1),
    ("n = 1.50", 1, 1),
    ("n = 1e3", 1, 1),
    ("s = B'101'::text", 1, 1),
]


@pytest.fixture(scope="module")
def lift():
    binary = pathlib.Path(os.environ.get("OCCPROXY_BIN", REPO / "build" / "occproxy")).parent / "occ_rewrite"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"rewriter tool not found at {binary}: build it (cmake)")

    def run(sql, standard_conforming_strings):
        env = dict(os.environ, OCC_REWRITE_SQL=sql, OCC_REWRITE_LIFT="on" if standard_conforming_strings else "off")
        env.pop("OCC_REWRITE_OUT", None)
        result = subprocess.run([str(binary)], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)

    return run


def row(client, key):
    return [m for m in client.exchange(query(f"SELECT s, b, n, t FROM lits WHERE id = {key}")) if m[0] == b"D"]


@pytest.mark.parametrize("standard_conforming_strings", [True, False], ids=["scs_on", "scs_off"])
def test_a_lifted_statement_stores_what_the_literal_would(pg, db, lift, standard_conforming_strings):
    pg.psql("CREATE TABLE lits (id int PRIMARY KEY, s text, b bigint, n numeric, t text)", dbname=db)
    client = WireClient(pg.host, pg.port, db)
    client.exchange(query(f"SET standard_conforming_strings = {'on' if standard_conforming_strings else 'off'}"))
    for assignments, lifted_on, lifted_off in CASES:
        expected = lifted_on if standard_conforming_strings else lifted_off
        if expected is None:
            continue
        client.exchange(query("TRUNCATE lits; INSERT INTO lits (id) VALUES (1), (2)"))
        direct = client.exchange(query(f"UPDATE lits SET {assignments} WHERE id = 1"))
        assert [m for m in direct if m[0] in (b"E", b"C")] == [(b"C", b"UPDATE 1\0")], (assignments, direct)
        lifted = lift(f"UPDATE lits SET {assignments} WHERE id = 2", standard_conforming_strings)
        assert lifted is not None and len(lifted["values"]) == expected, (assignments, lifted)
        assert lifted["values"][-1] == "2"
        replies = client.exchange(parse(lifted["sql"], "", lifted["param_types"]),
                                  bind([v.encode() for v in lifted["values"]]), execute(), SYNC)
        assert (b"C", b"UPDATE 1\0") in replies, (assignments, replies)
        assert row(client, 2) == row(client, 1), assignments
    client.close()
