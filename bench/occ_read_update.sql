-- Read-then-update on one account: the OCC path when pgbench_accounts is a protected table.
\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
