-- occ_read_update as occproxy_occ sends it to the server, sent directly: the server's own cost of
-- the check, without any proxy. The SELECT carries the key and version the proxy appends; the UPDATE
-- compares with the version read (pgbench's \gset stands in for the read set); its command tag tells
-- the proxy the new version. The meta is spaced (": ") so that pgbench does not take its keys for
-- variables.
\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
SELECT abalance, (pgbench_accounts.aid)::text AS read_key, (pgbench_accounts.version)::text AS read_version FROM pgbench_accounts WHERE aid = :aid \gset
UPDATE pgbench_accounts SET version = CASE WHEN pgbench_accounts.version = :read_version::bigint THEN pgbench_accounts.version WHEN :read_version::bigint IS NULL THEN pgbench_accounts.version WHEN occ.written_here(pgbench_accounts.xmin, pgbench_accounts.version) THEN pgbench_accounts.version ELSE occ.conflict(pgbench_accounts.version, :read_version::bigint, pgbench_accounts.version, to_jsonb(pgbench_accounts.*), $occ${"schema": "public", "table": "pgbench_accounts", "key": ["aid"], "version_column": "version", "sqlstate": "40001", "mode": "enforce", "op": "update", "base": null}$occ$, '{"abalance": "0"}'::text) END, abalance = abalance + :delta WHERE aid = :aid;
