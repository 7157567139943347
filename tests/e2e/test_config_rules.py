# `occproxy migrate` and `occproxy check` against a real cluster, and bad config/rules files refused with file:line.
import os
import pathlib

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("OCC_E2E_DIRECT") == "1", reason="runs the occproxy binary's own commands"
)

RULES = """\
tables:
  - table: public.subscriptions
    key: [id]
  - table: billing.plans
    key: [id]
    version_kind: uuid
  - table: '"Audit"."Events"'
    key: [id]
    version_column: '"Stamp"'
    version_kind: timestamp
  - table: invoices
    key: [id]
    version_bump: proxy
"""

SCHEMA = """
CREATE TABLE subscriptions (id int PRIMARY KEY, plan text);
INSERT INTO subscriptions VALUES (1, 'basic'), (2, 'pro');
CREATE SCHEMA billing;
CREATE TABLE billing.plans (id int PRIMARY KEY, name text);
INSERT INTO billing.plans VALUES (1, 'basic');
CREATE SCHEMA "Audit";
CREATE TABLE "Audit"."Events" (id int PRIMARY KEY, what text);
CREATE TABLE invoices (id int PRIMARY KEY, total numeric);
"""


def column(pg, db, schema, table, name):
    """'type|not null|default' of a column, or '' when it does not exist."""
    return pg.psql(
        f"""SELECT format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
              FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = format('%I.%I', '{schema}', '{table}')::regclass AND a.attname = '{name}'
               AND NOT a.attisdropped""",
        dbname=db,
    ).strip()


def bump_triggers(pg, db):
    return pg.psql(
        "SELECT tgrelid::regclass FROM pg_trigger WHERE tgname = 'occ_bump_version' ORDER BY tgrelid::regclass::text", dbname=db
    ).split()


def test_migrate_installs_everything_once_and_check_passes(pg, db, make_config, run_occproxy):
    pg.psql(SCHEMA, dbname=db)
    config = make_config(db, rules=RULES)

    changes = [
        "applied migration 001_occ_schema.sql",
        "created table occ.schema_migrations",
        "added column version bigint NOT NULL DEFAULT 1 to public.subscriptions",
        "installed trigger occ_bump_version on public.subscriptions",
        "added column version uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid() to billing.plans",
        "installed trigger occ_bump_version on billing.plans",
        "added column Stamp timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp() to Audit.Events",
        "installed trigger occ_bump_version on Audit.Events",
        "added column version bigint NOT NULL DEFAULT 1 to public.invoices",
    ]
    first = run_occproxy("migrate", "--config", config)
    assert first.returncode == 0, first.output
    assert [line for line in changes if line not in first.output] == [], first.output
    assert "trigger occ_bump_version on public.invoices" not in first.output

    second = run_occproxy("migrate", "--config", config)
    assert second.returncode == 0, second.output
    assert "nothing to do" in second.output
    assert [line for line in changes if line in second.output] == [], second.output

    assert pg.psql("SELECT nspname FROM pg_namespace WHERE nspname = 'occ'", dbname=db).strip() == "occ"
    assert pg.psql("SELECT version, name FROM occ.schema_migrations ORDER BY version LIMIT 1", dbname=db).strip() == (
        "1|001_occ_schema.sql"
    )
    assert column(pg, db, "public", "subscriptions", "version") == "bigint|t|1"
    assert column(pg, db, "billing", "plans", "version") == "uuid|t|gen_random_uuid()"
    assert column(pg, db, "Audit", "Events", "Stamp") == "timestamp with time zone|t|clock_timestamp()"
    assert column(pg, db, "public", "invoices", "version") == "bigint|t|1"
    assert bump_triggers(pg, db) == ['"Audit"."Events"', "billing.plans", "subscriptions"]

    # Writes that bypass the proxy advance the version once; a write that sets it is left alone.
    assert pg.psql("SELECT id, version FROM subscriptions ORDER BY id", dbname=db).split() == ["1|1", "2|1"]
    pg.psql("UPDATE subscriptions SET plan = 'gold' WHERE id = 1", dbname=db)
    pg.psql("UPDATE subscriptions SET plan = 'gold', version = 7 WHERE id = 2", dbname=db)
    assert pg.psql("SELECT id, version FROM subscriptions ORDER BY id", dbname=db).split() == ["1|2", "2|7"]
    before = pg.psql("SELECT version FROM billing.plans WHERE id = 1", dbname=db)
    pg.psql("UPDATE billing.plans SET name = 'x' WHERE id = 1", dbname=db)
    assert pg.psql("SELECT version FROM billing.plans WHERE id = 1", dbname=db) != before
    pg.psql("UPDATE invoices SET total = 1", dbname=db)

    check = run_occproxy("check", "--config", config)
    assert check.returncode == 0, check.output
    assert "check passed" in check.output
    assert "problem" not in check.output


def test_switching_to_version_bump_proxy_drops_the_trigger(pg, db, make_config, run_occproxy):
    pg.psql(SCHEMA, dbname=db)
    assert run_occproxy("migrate", "--config", make_config(db, rules=RULES)).returncode == 0
    config = make_config(db, rules=RULES.replace("    key: [id]\n    version_kind: uuid", "    key: [id]\n    version_kind: uuid\n    version_bump: proxy"))

    stale = run_occproxy("check", "--config", config)
    assert stale.returncode == 1, stale.output
    assert "billing.plans: trigger occ_bump_version is installed but version_bump is proxy" in stale.output

    changed = run_occproxy("migrate", "--config", config)
    assert changed.returncode == 0, changed.output
    assert "dropped trigger occ_bump_version on billing.plans (version_bump: proxy)" in changed.output
    assert bump_triggers(pg, db) == ['"Audit"."Events"', "subscriptions"]
    assert run_occproxy("check", "--config", config).returncode == 0


CHECK_PROBLEMS = [
    # (what the database lacks, rules, what the report must say)
    (
        "CREATE TABLE accounts (id int PRIMARY KEY, owner text)",
        "tables:\n  - table: accounts\n    key: [id]\n",
        "public.accounts: version column version is missing; run `occproxy migrate --config {config}` to add it",
    ),
    (
        "CREATE TABLE accounts (id int PRIMARY KEY, version text)",
        "tables:\n  - table: accounts\n    key: [id]\n",
        "public.accounts: version column version is text, but version_kind counter needs bigint, integer or smallint",
    ),
    (
        "CREATE TABLE accounts (id int PRIMARY KEY)",
        "tables:\n  - table: accounts\n    key: [account_id]\n",
        "public.accounts: key column account_id does not exist (columns: id); fix `key` in {rules}",
    ),
    (
        "SELECT 1",
        "tables:\n  - table: ledger.entries\n    key: [id]\n",
        "ledger.entries: table does not exist; create it or remove it from {rules}",
    ),
    (
        "CREATE VIEW accounts AS SELECT 1 AS id",
        "tables:\n  - table: accounts\n    key: [id]\n",
        "public.accounts: is not a table (relkind v); only tables can be protected",
    ),
]


@pytest.mark.parametrize("setup, rules, expected", CHECK_PROBLEMS)
def test_check_reports_what_is_missing(pg, db, make_config, run_occproxy, setup, rules, expected):
    pg.psql(setup, dbname=db)
    config = make_config(db, rules=rules)
    result = run_occproxy("check", "--config", config)
    assert result.returncode == 1, result.output
    assert expected.format(config=config, rules=config.parent / "rules.yaml") in result.output
    assert "check failed" in result.output


def test_check_without_the_occ_schema(pg, db, make_config, run_occproxy):
    pg.psql("CREATE TABLE accounts (id int PRIMARY KEY, version bigint NOT NULL DEFAULT 1)", dbname=db)
    config = make_config(db, rules="tables:\n  - table: accounts\n    key: [id]\n    version_bump: proxy\n")
    result = run_occproxy("check", "--config", config)
    assert result.returncode == 1, result.output
    assert f"schema occ (the proxy's helper functions) is missing; run `occproxy migrate --config {config}`" in result.output


def test_check_names_a_helper_function_an_older_migrate_did_not_install(pg, db, make_config, run_occproxy):
    pg.psql("CREATE TABLE accounts (id int PRIMARY KEY)", dbname=db)
    config = make_config(db, rules="tables:\n  - table: accounts\n    key: [id]\n")
    assert run_occproxy("migrate", "--config", config).returncode == 0
    # The schema as a migrate before 004_text_base.sql left it.
    pg.psql(
        "DROP FUNCTION occ.conflict(anycompatible, anycompatible, anycompatible, jsonb, text, text);"
        " DELETE FROM occ.schema_migrations WHERE version = 4",
        dbname=db,
    )
    result = run_occproxy("check", "--config", config)
    assert result.returncode == 1, result.output
    assert (
        "function occ.conflict(anycompatible, anycompatible, anycompatible, jsonb, text, text) is missing; "
        f"run `occproxy migrate --config {config}`"
    ) in result.output
    migrated = run_occproxy("migrate", "--config", config)
    assert "applied migration 004_text_base.sql" in migrated.output
    assert run_occproxy("check", "--config", config).returncode == 0


def test_check_reports_an_unreachable_server(pg, db, make_config, run_occproxy):
    config = make_config(db, rules="tables: []\n", config={"admin_dsn": pg.dsn(db, password="wrong")})
    result = run_occproxy("check", "--config", config)
    assert result.returncode == 1, result.output
    assert "cannot connect with admin_dsn:" in result.output
    assert 'password authentication failed for user "postgres"' in result.output


BAD_RULES = [
    # (rules text, the message after "<rules file>:")
    ("tables:\n  - table: accounts\n    key: [id]\n    colour: red\n",
     "4: tables[0].colour: unknown key; expected one of: table, key, version_column"),
    ("tables:\n  - table: accounts\n    key: []\n", "3: tables[0].key: must name at least one column"),
    ("tables:\n  - key: [id]\n", "2: tables[0]: missing required key `table` (schema.name)"),
    ("defaults:\n  mode: strict\n", "2: defaults.mode: expected enforce or shadow, got \"strict\""),
    ("tables:\n  - {table: a, key: [id]}\n  - {table: A, key: [id]}\n",
     "3: tables[1].table: public.a is listed twice (first on line 2)"),
]


@pytest.mark.parametrize("command", [("check",), ("migrate",), ()])
@pytest.mark.parametrize("rules, message", BAD_RULES)
def test_bad_rules_file_exits_2_with_file_and_line(db, make_config, run_occproxy, rules, message, command):
    config = make_config(db, rules=rules)
    result = run_occproxy(*command, "--config", config, timeout=30)
    assert result.returncode == 2, result.output
    assert f"{config.parent / 'rules.yaml'}:{message}" in result.output


BAD_CONFIGS = [
    ({"threads": "many"}, "threads: expected a whole number from 0 to 1024, got \"many\""),
    ({"upstream": "localhost"}, "upstream: expected host:port, got \"localhost\""),
    ({"startup_timeout": "10"}, "startup_timeout: bad duration \"10\""),
    ({"log": {"level": "loud"}}, "log.level: expected trace, debug, info, warn, error or off, got \"loud\""),
    ({"listen_port": 5}, "listen_port: unknown key"),
    ({"auth": {"mode": "md5"}}, "auth.mode: expected passthrough or terminate, got \"md5\""),
    ({"tls": {"client_mode": "require"}}, "tls.client_mode: require needs tls.cert_file and tls.key_file"),
]


@pytest.mark.parametrize("command", [("check",), ("migrate",), ()])
@pytest.mark.parametrize("config, message", BAD_CONFIGS)
def test_bad_config_exits_2_with_file_and_line(db, make_config, run_occproxy, config, message, command):
    path = make_config(db, config=config)
    key = message.split(":")[0].split(".")[-1] + ":"
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith(key))
    result = run_occproxy(*command, "--config", path, timeout=30)
    assert result.returncode == 2, result.output
    assert f"{path}:{line}: {message}" in result.output


def test_missing_config_file_exits_2(tmp_path, run_occproxy):
    missing = tmp_path / "nowhere.yaml"
    result = run_occproxy("check", "--config", missing)
    assert result.returncode == 2, result.output
    assert f"cannot read config file {missing}: No such file or directory" in result.output


def test_missing_rules_file_exits_2(db, make_config, run_occproxy):
    config = make_config(db, config={"rules": "absent.yaml"})
    result = run_occproxy("check", "--config", config)
    assert result.returncode == 2, result.output
    assert f"cannot read rules file {pathlib.Path(config).parent / 'absent.yaml'}: No such file or directory" in result.output
