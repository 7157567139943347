# The statement cache for simple-protocol Queries (SPEC 5, issue 18): a checked write of one row the
# session read goes as a cached statement bound to its constants, and the client cannot tell: every
# reply byte-identical to a direct session's (errors with their positions, notices, transaction states).
import struct

import pytest

from occ_helpers import (  # noqa: F401
    conflict_error,
    connect,
    fails,
    occ_proxy_fixture,
    read_detail,
    requires_proxy,
    rules_yaml,
    run,
)
from test_read_tracking_drivers import WireClient, query
from test_statement_cache import RULES, both, cached, kinds

pytestmark = requires_proxy

READ = query("SELECT * FROM subscriptions WHERE id = 43")
NOTICE = """
CREATE OR REPLACE FUNCTION notes_notice() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN IF NEW.notes = 'loud' THEN RAISE NOTICE 'notes are loud'; END IF; RETURN NEW; END$$;
CREATE TRIGGER notes_notice BEFORE UPDATE ON subscriptions FOR EACH ROW EXECUTE FUNCTION notes_notice();
"""


@pytest.fixture
def proxy(occ_proxy, pg, db):
    started = occ_proxy(RULES)
    pg.psql(NOTICE, dbname=db)
    return started


def test_a_checked_write_goes_bound_and_answers_as_directly(pg, db, proxy):
    batches = [
        [READ], [query("UPDATE subscriptions SET notes = 'one' WHERE id = 43")],
        [READ], [query("UPDATE subscriptions SET notes = 'two' WHERE id = 43")],
        [READ], [query("UPDATE subscriptions SET notes = 'loud' WHERE id = 43")],
        # Errors: a name the server does not know (its position), a constant its type refuses.
        [READ], [query("UPDATE subscriptions SET notes = 'x', nosuch = 1 WHERE id = 43")],
        [READ], [query("UPDATE subscriptions SET plan_id = 'abc' WHERE id = 43")],
        [query("SELECT * FROM subscriptions WHERE id = 44")], [query("DELETE FROM subscriptions WHERE id = 44")],
        # The same inside a transaction block, ending aborted.
        [query("BEGIN")], [READ], [query("UPDATE subscriptions SET notes = 'three' WHERE id = 43")],
        [READ], [query("UPDATE subscriptions SET plan_id = 'abc' WHERE id = 43")],
        [query("UPDATE subscriptions SET notes = 'four' WHERE id = 43")], [query("ROLLBACK")],
        [READ], [query("UPDATE subscriptions SET notes = 'five' WHERE id = 43")], [READ],
    ]
    client, direct = both(pg, proxy, db, batches)
    assert kinds(direct[3]) == "CZ" and kinds(direct[5]) == "NCZ"
    assert kinds(direct[7]) == "EZ" and b"\0P" in direct[7][0][1]
    assert kinds(direct[9]) == "EZ" and b"\0P" in direct[9][0][1]
    assert kinds(direct[11]) == "CZ" and direct[11][0][1] == b"DELETE 1\0"
    assert direct[17][-1] == (b"Z", b"E") and direct[19][-1] == (b"Z", b"I")
    found = cached(client)
    updates = {text: entry for text, entry in found.items() if text.startswith("UPDATE")}
    # Bound by name: one statement per text shape, its constants parameters.
    assert any("notes = $" in text and executions >= 4 for text, (_, executions) in updates.items()), found
    client.close()


def test_a_read_by_key_goes_bound_outside_a_transaction_and_answers_as_directly(pg, db, proxy):
    notes = query("SELECT notes FROM subscriptions WHERE id = 42")
    batches = [
        [READ], [READ], [notes], [notes], [READ],
        # Errors: a constant the key's type refuses, a column the server does not know.
        [query("SELECT * FROM subscriptions WHERE id = 'abc'")], [query("SELECT nosuch FROM subscriptions WHERE id = 43")],
        # The table changes under the cached statements: each read answers with the new shape.
        [query("ALTER TABLE subscriptions ALTER COLUMN plan_id TYPE bigint")], [READ], [notes],
        [query("ALTER TABLE subscriptions ALTER COLUMN notes TYPE varchar(40)")], [notes], [READ],
        [query("ALTER TABLE subscriptions ALTER COLUMN plan_id TYPE int, ALTER COLUMN notes TYPE text")], [READ],
        [notes],
        # Inside a transaction block.
        [query("BEGIN")], [READ], [notes], [query("COMMIT")],
    ]
    client, direct = both(pg, proxy, db, batches)
    assert kinds(direct[0]) == "TDCZ" and kinds(direct[5]) == "EZ" and kinds(direct[6]) == "EZ"
    assert b"\0P" in direct[5][0][1] and b"\0P" in direct[6][0][1]
    # plan_id's type in the RowDescription: int4 before the ALTER, int8 after.
    plan_id_type = [body[body.index(b"plan_id\0") + 14:][:4] for _, body in (direct[4][0], direct[8][0])]
    assert plan_id_type == [struct.pack("!I", 23), struct.pack("!I", 20)] and kinds(direct[9]) == "TDCZ"
    reads = {text for text in cached(client) if text.startswith("SELECT")}
    # Bound by name: one statement per text shape, the key a parameter; `SELECT *` carries the key
    # and version already and goes unchanged.
    assert reads == {"SELECT * FROM subscriptions WHERE id = $1",
                     'SELECT notes, (subscriptions.id)::text AS "occ:key", (subscriptions.version)::text AS '
                     '"occ:version" FROM subscriptions WHERE id = $1'}
    client.close()


def test_a_conflict_keeps_its_fields_and_the_session_its_state(pg, db, proxy):
    first = connect(proxy.dsn(db))
    second = connect(proxy.dsn(db))
    read = "SELECT id, status, notes, version FROM subscriptions WHERE id = 42"
    for session in (first, second):
        assert run(session, read) == ("SELECT 1", [(42, "active", "old", 1)])
    assert run(first, "UPDATE subscriptions SET status = 'paused' WHERE id = 42") == ("UPDATE 1", None)
    assert fails(second, "UPDATE subscriptions SET notes = 'x' WHERE id = 42") == conflict_error(
        42, 1, 2, read_detail(2, ["status"]))
    assert run(second, read) == ("SELECT 1", [(42, "paused", "old", 2)])
    assert run(second, "UPDATE subscriptions SET notes = 'y' WHERE id = 42") == ("UPDATE 1", None)
    assert run(second, read) == ("SELECT 1", [(42, "paused", "y", 3)])
    client = WireClient(proxy.host, proxy.port, db)
    client.exchange(query(read))
    client.exchange(query("UPDATE subscriptions SET notes = 'z' WHERE id = 42"))
    assert any(text.startswith("UPDATE") and "$1" in text for text in cached(client)), cached(client)
    client.close()


def test_standard_conforming_strings_off_reads_the_same(pg, db, proxy):
    """A backslash then escapes in a plain string: where it stays in the text (the server warns about
    it), the warning and the value are the server's own; elsewhere the lifted value is the literal's."""
    batches = [[query("SET standard_conforming_strings = off")],
               [READ], [query("UPDATE subscriptions SET notes = 'a\\\\b\\'c' WHERE id = 43")], [READ],
               [query("UPDATE subscriptions SET notes = 'it''s \u00e9' WHERE id = 43")], [READ],
               [query("UPDATE subscriptions SET notes = 'again' WHERE id = 43")], [READ]]
    client, direct = both(pg, proxy, db, batches)
    assert kinds(direct[2]) == "NCZ"  # nonstandard use of \\ in a string literal
    assert any(b"it's \xc3\xa9" in body for _, body in direct[5])
    assert any(text.startswith("UPDATE") and "notes = $" in text for text in cached(client)), cached(client)
    client.close()
