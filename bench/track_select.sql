-- Read tracking, select only: one account by key, every column, no version in the SQL.
\set aid random(1, 100000 * :scale)
SELECT * FROM pgbench_accounts WHERE aid = :aid;
