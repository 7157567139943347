# Text keys and values with quotes, backslashes and non-ASCII, written in every string syntax under
# both settings of standard_conforming_strings: stale writes conflict, own writes do not, and the
# audit's mine is the value written (SPEC 3.2, 3.9; the one literal reader of src/sql/literal.cpp).

import psycopg2
import pytest

from occ_helpers import (  # noqa: F401 (occ_proxy_fixture provides the occ_proxy fixture)
    conflict_error,
    connect,
    occ_proxy_fixture,
    only_audit_line,
    pg_error,
    read_detail,
    requires_proxy,
    rows,
    rules_yaml,
    run,
)

pytestmark = requires_proxy

KEY = "it's a\\b \u00e9\u65e5\u672c"
# What a reader that kept E'' escapes doubled would take KEY for: a row of its own, read at another
# version, so a misread key shows as a false conflict instead of hiding.
DECOY = "it's a\\\\b \u00e9\u65e5\u672c"
BODY = "mine 'q' \\ \\\\ \\n \u00fc$x$"

NOTES = """
CREATE TABLE notes (k text PRIMARY KEY, body text NOT NULL);
INSERT INTO notes VALUES ('it''s a\\b \u00e9\u65e5\u672c', 'old'), ('it''s a\\\\b \u00e9\u65e5\u672c', 'decoy');
"""
# Run once the version column exists: the decoy is at version 3.
BUMP_DECOY = """
UPDATE notes SET body = 'decoy2' WHERE k = 'it''s a\\\\b \u00e9\u65e5\u672c';
UPDATE notes SET body = 'decoy3' WHERE k = 'it''s a\\\\b \u00e9\u65e5\u672c';
"""


def plain(s, standard_conforming_strings):
    """'...' as the server reads it under the setting."""
    if standard_conforming_strings:
        return "'" + s.replace("'", "''") + "'"
    return "'" + s.replace("\\", "\\\\").replace("'", "''") + "'"


def escaped(s):
    return "E'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def unicode_escaped(s, escape="\\"):
    out = ""
    for ch in s:
        if ch == escape:
            out += escape * 2
        elif ch == "'":
            out += "''"
        elif ord(ch) < 0x80:
            out += ch
        elif ord(ch) <= 0xFFFF:
            out += f"{escape}{ord(ch):04x}"
        else:
            out += f"{escape}+{ord(ch):06x}"
    return "U&'" + out + "'" + ("" if escape == "\\" else f" UESCAPE '{escape}'")


def dollar(s):
    return "$lit$" + s + "$lit$"


# (name, standard_conforming_strings, how a constant is written; None: psycopg2's own parameters)
FORMS = [
    ("psycopg2-on", True, None),
    ("psycopg2-off", False, None),  # psycopg2 sends E'' strings with the setting off
    ("plain-on", True, lambda s: plain(s, True)),
    ("plain-off", False, lambda s: plain(s, False)),
    ("escape-on", True, escaped),
    ("escape-off", False, escaped),
    ("unicode", True, unicode_escaped),
    ("unicode-uescape", True, lambda s: unicode_escaped(s, "!")),
    ("dollar-on", True, dollar),
    ("dollar-off", False, dollar),
]


def write(conn, form, body, key):
    """UPDATE notes SET body = <body> WHERE k = <key>, with both constants written in `form`."""
    if form is None:
        return run(conn, "UPDATE notes SET body = %s WHERE k = %s", (body, key))
    return run(conn, f"UPDATE notes SET body = {form(body)} WHERE k = {form(key)}")


def write_fails(conn, form, body, key):
    with pytest.raises(psycopg2.Error) as caught:
        write(conn, form, body, key)
    return pg_error(caught.value)


def session(proxy, db, setting):
    conn = connect(proxy.dsn(db), application_name="occ-e2e-literals")
    run(conn, f"SET standard_conforming_strings = {'on' if setting else 'off'}")
    return conn


def notes(pg, db):
    return rows(pg, db, "SELECT k, body, version FROM notes ORDER BY version, body")


def start(occ_proxy, pg, db, **defaults):
    proxy = occ_proxy(rules_yaml(tables=[{"table": "public.notes", "key": ["k"]}], **defaults), schema=NOTES)
    pg.psql(BUMP_DECOY, dbname=db)
    return proxy


@pytest.mark.parametrize("name,setting,form", FORMS, ids=[f[0] for f in FORMS])
def test_stale_write_of_a_tricky_text_key_conflicts(pg, db, occ_proxy, name, setting, form):
    proxy = start(occ_proxy, pg, db)
    mine = session(proxy, db, setting)
    other = connect(proxy.dsn(db))
    assert run(mine, "SELECT k, body, version FROM notes ORDER BY version") == (
        "SELECT 2", [(KEY, "old", 1), (DECOY, "decoy3", 3)])
    assert run(other, "UPDATE notes SET body = 'theirs' WHERE k = %s", (KEY,)) == ("UPDATE 1", None)

    expected = conflict_error(KEY, 1, 2, read_detail(2, ["body"]), table="notes")
    expected["message"] = f"occ: version conflict on public.notes (k)=({KEY}): expected version 1, current version 2"
    assert write_fails(mine, form, BODY, KEY) == expected
    assert notes(pg, db) == [[KEY, "theirs", "2"], [DECOY, "decoy3", "3"]]

    line = only_audit_line(proxy)
    assert (line["kind"], line["key"], line["expected"], line["current"], line["diff"]) == (
        "conflict", {"k": KEY}, "1", "2", {"body": {"mine": BODY, "theirs": "theirs", "base": "old"}})

    # The value the audit names is the one the same statement stores, sent directly.
    direct = connect(pg.dsn(db))
    run(direct, f"SET standard_conforming_strings = {'on' if setting else 'off'}")
    assert write(direct, form, BODY, KEY) == ("UPDATE 1", None)
    assert notes(pg, db) == [[DECOY, "decoy3", "3"], [KEY, BODY, "3"]]


@pytest.mark.parametrize("name,setting,form", FORMS, ids=[f[0] for f in FORMS])
def test_own_rewrites_of_a_tricky_text_key_pass(pg, db, occ_proxy, name, setting, form):
    proxy = start(occ_proxy, pg, db, on_unknown_version="reject")
    mine = session(proxy, db, setting)
    assert run(mine, "SELECT k, body, version FROM notes ORDER BY version")[0] == "SELECT 2"
    assert write(mine, form, BODY, KEY) == ("UPDATE 1", None)
    assert write(mine, form, BODY + "2", KEY) == ("UPDATE 1", None)
    assert write(mine, form, "decoy4", DECOY) == ("UPDATE 1", None)
    assert notes(pg, db) == [[KEY, BODY + "2", "3"], [DECOY, "decoy4", "4"]]
    assert proxy.audit_lines() == []
