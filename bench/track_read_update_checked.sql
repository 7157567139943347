-- track_read_update as occproxy_occ sends it to the server in a simple Query, sent directly: the
-- server's own cost of the check, without any proxy. The SELECT * reaches the server as written;
-- the UPDATE compares with the version read (pgbench's \gset stands in for the read set) and carries
-- the values read in its meta; its command tag tells the proxy the new version. The meta is spaced
-- (": ") so that pgbench does not take its keys for variables.
\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
SELECT * FROM pgbench_accounts WHERE aid = :aid \gset
UPDATE pgbench_accounts SET version = CASE WHEN pgbench_accounts.version = :version::bigint THEN pgbench_accounts.version WHEN occ.written_here(pgbench_accounts.xmin, pgbench_accounts.version) THEN pgbench_accounts.version ELSE occ.conflict(pgbench_accounts.version, :version::bigint, pgbench_accounts.version, to_jsonb(pgbench_accounts.*), $occ${"schema": "public", "table": "pgbench_accounts", "key": ["aid"], "version_column": "version", "sqlstate": "40001", "mode": "enforce", "op": "update", "base": {"aid": "1", "bid": "1", "abalance": "0", "filler": "                                                                                    "}}$occ$) END, abalance = abalance + :delta WHERE aid = :aid;
