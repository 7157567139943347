# A randomized lost-update checker, in the spirit of Jepsen's Elle: 16 clients increment a few hot
# counters, each increment read and written in a randomly chosen form, protocol and driver, by code
# that names no version and retries on 40001. The invariant: every counter ends at exactly the
# increments acknowledged to the clients. The same run sent directly to the server loses updates,
# so the check can fail. The seed is printed; OCC_CHECKER_SEED replays a run.
import os
import random
import threading
import time

import psycopg
import psycopg2
import psycopg2.errors
import pytest

from occ_helpers import occ_proxy_fixture, requires_proxy, rows, rules_yaml  # noqa: F401

pytestmark = requires_proxy

CLIENTS = 16
INCREMENTS = 8
HOT_ROWS = [1, 2, 3]

SCHEMA = """
CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL, label text);
INSERT INTO counters SELECT g, 0, 'row ' || g FROM generate_series(1, 3) g;
"""

# Each read form returns the counter's value (the first column of its one row, or a column named n).
PSYCOPG2_READS = {
    "select star": "SELECT * FROM counters WHERE id = {id}",
    "chosen column": "SELECT n FROM counters WHERE id = {id}",
    "cte": "WITH c AS (SELECT * FROM counters WHERE id = {id}) SELECT * FROM c",
    "subquery": "SELECT * FROM (SELECT id, n, version FROM counters) q WHERE q.id = {id}",
    "cursor": ["BEGIN", "DECLARE c CURSOR FOR SELECT n, label FROM counters WHERE id = {id}", "FETCH ALL FROM c",
               "COMMIT"],
    "prepared select": ["PREPARE r{id} AS SELECT * FROM counters WHERE id = $1", "EXECUTE r{id}({id})",
                        "DEALLOCATE r{id}"],
    "prepared chosen column": ["PREPARE r{id} AS SELECT n, label FROM counters WHERE id = $1", "EXECUTE r{id}({id})",
                               "DEALLOCATE r{id}"],
    "named cursor": "named",
}
PSYCOPG2_WRITES = {
    "update": ["UPDATE counters SET n = {n} WHERE id = {id}"],
    "prepared update": ["PREPARE w{id} (int, int) AS UPDATE counters SET n = $1 WHERE id = $2", "EXECUTE w{id}({n}, {id})",
                        "DEALLOCATE w{id}"],
}
PSYCOPG3_READS = ["SELECT n FROM counters WHERE id = %s", "SELECT * FROM counters WHERE id = %s"]
PSYCOPG3_WRITES = ["UPDATE counters SET n = %s WHERE id = %s"]


def value_of(description, row):
    names = [d.name for d in description]
    return row[names.index("n")]


class Client:
    """One application thread: a psycopg2 and a psycopg 3 connection, each with its own read set."""

    def __init__(self, dsn, rng):
        self.rng = rng
        self.old = psycopg2.connect(dsn)
        self.old.autocommit = True
        self.new = psycopg.connect(dsn, autocommit=True)
        self.acknowledged = {row: 0 for row in HOT_ROWS}
        self.forms = []

    def close(self):
        self.old.close()
        self.new.close()

    def read_old(self, form, row):
        if form == "named cursor":
            self.old.autocommit = False
            with self.old.cursor(name=f"nc{row}") as cur:
                cur.execute("SELECT n FROM counters WHERE id = %s", (row,))
                [(n,)] = cur.fetchall()
            self.old.commit()
            self.old.autocommit = True
            return n
        steps = PSYCOPG2_READS[form]
        n = None
        with self.old.cursor() as cur:
            for sql in steps if isinstance(steps, list) else [steps]:
                cur.execute(sql.format(id=row))
                if cur.description and sql.split()[0] in ("SELECT", "WITH", "FETCH", "EXECUTE"):
                    [values] = cur.fetchall()
                    n = value_of(cur.description, values)
        return n

    def write_old(self, form, row, n):
        with self.old.cursor() as cur:
            try:
                for sql in PSYCOPG2_WRITES[form]:
                    cur.execute(sql.format(id=row, n=n))
                    if sql.startswith(("UPDATE", "EXECUTE")):
                        written = cur.rowcount
            finally:
                if form == "prepared update":
                    cur.execute("DEALLOCATE ALL")
        return written == 1

    def increment(self, row):
        """Read, compute, write; retried on a conflict until the write goes through."""
        while True:
            driver = self.rng.choice(["psycopg2", "psycopg3"])
            try:
                if driver == "psycopg2":
                    read_form = self.rng.choice(sorted(PSYCOPG2_READS))
                    write_form = self.rng.choice(sorted(PSYCOPG2_WRITES))
                    n = self.read_old(read_form, row)
                    time.sleep(self.rng.random() / 500)  # the window another writer races into
                    done = self.write_old(write_form, row, n + 1)
                else:
                    read_form = self.rng.choice(PSYCOPG3_READS)
                    write_form = PSYCOPG3_WRITES[0]
                    cur = self.new.execute(read_form, (row,))
                    n = value_of(cur.description, cur.fetchone())
                    time.sleep(self.rng.random() / 500)
                    done = self.new.execute(write_form, (n + 1, row)).rowcount == 1
            except (psycopg2.errors.SerializationFailure, psycopg.errors.SerializationFailure):
                if not self.old.autocommit:
                    self.old.rollback()
                    self.old.autocommit = True
                continue
            assert done, (driver, read_form, write_form)
            self.acknowledged[row] += 1
            self.forms.append((driver, read_form, write_form))
            return


def race(dsn, seed):
    """Acknowledged increments per row, after every client did INCREMENTS of them."""
    clients = [Client(dsn, random.Random(seed * 1000 + i)) for i in range(CLIENTS)]
    failures = []

    def work(client):
        try:
            for _ in range(INCREMENTS):
                client.increment(client.rng.choice(HOT_ROWS))
        except Exception as e:  # noqa: BLE001 (reported below, with the seed)
            failures.append(repr(e))

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for c in clients:
        c.close()
    assert not failures, (seed, failures[:3])
    return {row: sum(c.acknowledged[row] for c in clients) for row in HOT_ROWS}, {f for c in clients for f in c.forms}


def counter_values(pg, db):
    return {int(i): int(n) for i, n in rows(pg, db, "SELECT id, n FROM counters ORDER BY id")}


def test_no_acknowledged_increment_is_lost_whatever_form_reads_and_writes(pg, db, occ_proxy):
    seed = int(os.environ.get("OCC_CHECKER_SEED", random.randrange(1 << 30)))
    print(f"lost-update checker seed: {seed} (replay with OCC_CHECKER_SEED={seed})")
    proxy = occ_proxy(rules_yaml(tables=[{"table": "public.counters", "key": ["id"]}]), schema=SCHEMA)

    # Directly, the same clients lose updates: the invariant is one a system can break.
    direct, _ = race(pg.dsn(db), seed)
    lost = {row: direct[row] - n for row, n in counter_values(pg, db).items()}
    assert sum(lost.values()) > 0, (seed, direct, lost)

    pg.psql("UPDATE counters SET n = 0", dbname=db)
    through, forms = race(proxy.dsn(db), seed)
    assert counter_values(pg, db) == through, seed
    assert sum(through.values()) == CLIENTS * INCREMENTS
    # The run exercised most of the forms (the seed decides which).
    assert len({f[1] for f in forms}) >= 6, (seed, forms)
