-- Read tracking, read then update: the SELECT teaches the proxy the row's version and the UPDATE,
-- which names no version, is checked against it.
\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
SELECT * FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
