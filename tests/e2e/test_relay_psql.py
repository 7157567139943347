# Relay: a psql script (DDL, DML, errors, transactions, \copy, pipelined meta commands) prints the same through the proxy.
import subprocess

SCRIPT = r"""
\set VERBOSITY verbose
CREATE SCHEMA relay;
SET search_path = relay;
CREATE TABLE accounts (
  id int PRIMARY KEY,
  owner text NOT NULL,
  balance numeric(12,2) NOT NULL DEFAULT 0 CHECK (balance >= 0),
  note text
);
INSERT INTO accounts VALUES (1, 'alice', 100), (2, 'bob', 50.5), (3, 'zoë', 0);
INSERT INTO accounts VALUES (1, 'again', 1);
INSERT INTO accounts (id, owner) VALUES (4, NULL);
UPDATE accounts SET balance = balance - 200 WHERE id = 1;
UPDATE accounts SET balance = balance + 10 WHERE id IN (1, 2) RETURNING id, balance;
SELECT * FROM accounts ORDER BY id;
SELEC 1;
SELECT 1/0;
SELECT missing_column FROM accounts;
BEGIN;
UPDATE accounts SET note = 'in tx' WHERE id = 3;
SAVEPOINT s1;
DELETE FROM accounts WHERE id = 2;
ROLLBACK TO SAVEPOINT s1;
SELECT count(*) FROM accounts;
SELECT 1/0;
SELECT 1;
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT id, note FROM accounts ORDER BY id;
COMMIT;
\copy accounts FROM '{data}' WITH (FORMAT csv)
\copy accounts FROM '{data}' WITH (FORMAT csv)
\copy (SELECT * FROM accounts ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)
COPY accounts (id, owner) FROM STDIN;
100	copy one
101	copy two
\.
COPY (SELECT id, owner FROM accounts WHERE id >= 100 ORDER BY id) TO STDOUT;
PREPARE by_owner(text) AS SELECT id, balance FROM accounts WHERE owner = $1;
EXECUTE by_owner('alice');
EXECUTE by_owner(42, 43);
DEALLOCATE by_owner;
SELECT 1 AS a \; SELECT 2 AS b \; SELECT 1/0 \; SELECT 3 AS never;
SELECT 1 AS a \; SELECT 2 AS b;
DO $$ BEGIN RAISE NOTICE 'hello %', 42; RAISE WARNING 'careful'; END $$;
CREATE FUNCTION double_it(x int) RETURNS int LANGUAGE sql AS $$ SELECT x * 2 $$;
SELECT double_it(21);
CREATE VIEW owners AS SELECT owner FROM accounts;
SELECT string_agg(owner, ',' ORDER BY owner) FROM owners;
\d accounts
SELECT length(repeat('x', 100000)) AS big;
SELECT g, md5(g::text) FROM generate_series(1, 2000) AS g;
SELECT $$it's$$ AS quoted, E'tab\there' AS escaped, NULL AS nothing, '{1,2}'::int[] AS arr;
SELECT 7 * 6 AS answer, 'bound' AS label \gset
SELECT :answer AS answer, :'label' AS label;
TRUNCATE accounts;
DROP SCHEMA relay CASCADE;
"""

DATA = "10,csv one,1.5,\n11,\"csv, two\",2.25,\"quoted \"\"note\"\"\"\n12,csv three,0,\n"


def run_psql(dsn, script_path):
    result = subprocess.run(
        ["psql", "-X", "-a", "-f", str(script_path), dsn],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
    )
    return result.returncode, result.stdout


def test_psql_script_output_is_identical(pg, db, start_proxy, tmp_path):
    proxy = start_proxy(db)
    data = tmp_path / "accounts.csv"
    data.write_text(DATA)
    script = tmp_path / "script.sql"
    script.write_text(SCRIPT.replace("{data}", str(data)))

    direct_rc, direct_out = run_psql(pg.dsn(db), script)
    proxied_rc, proxied_out = run_psql(proxy.dsn(db), script)

    assert direct_rc == proxied_rc == 0
    assert proxied_out.splitlines() == direct_out.splitlines()
    for expected in [
        'ERROR:  23505: duplicate key value violates unique constraint "accounts_pkey"',
        'ERROR:  23502: null value in column "owner" of relation "accounts" violates not-null constraint',
        'ERROR:  23514: new row for relation "accounts" violates check constraint "accounts_balance_check"',
        'ERROR:  42601: syntax error at or near "SELEC"',
        "ERROR:  22012: division by zero",
        "ERROR:  25P02: current transaction is aborted, commands ignored until end of transaction block",
        "ERROR:  23505: duplicate key value violates unique constraint \"accounts_pkey\"\nDETAIL:  Key (id)=(10) already exists.",
        "NOTICE:  00000: hello 42",
        " answer | label \n--------+-------\n     42 | bound\n(1 row)",
        "(2000 rows)",
        "100\tcopy one\n101\tcopy two",
    ]:
        assert expected in direct_out
