// Rules file: defaults and overrides, SQL name folding, every error message with its line.
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

#include "admin/catalog.h"
#include "admin/migrate.h"
#include "config/rules.h"

using namespace std::chrono_literals;

namespace {

const std::string file = "rules.yaml";

std::string rules_error(const std::string& yaml) {
  try {
    occ::parse_rules(yaml, file);
  } catch (const occ::RulesError& e) {
    return e.what();
  }
  return "no error";
}

using Strings = std::vector<std::string>;

}  // namespace

TEST_CASE("the example rules apply the defaults to every table", "[rules]") {
  const auto r = occ::parse_rules(R"(
defaults:
  version_column: version
  version_kind: counter
  on_unknown_version: allow
  app_managed_version: passthrough
  check_deletes: true
  mode: enforce
  version_bump: trigger
  on_unsupported: passthrough
  conflict_sqlstate: "40001"
  read_ttl: 60s
  force:
    allowed_roles: [dba]
  redact: []
tables:
  - table: public.subscriptions
    key: [id]
  - table: public.invoices
    key: [id]
  - table: billing.plans
    key: [id]
    version_kind: uuid
)",
                                  file);
  CHECK(r.path == file);
  REQUIRE(r.tables.size() == 3);
  const auto& s = r.tables[0];
  CHECK(s.schema == "public");
  CHECK(s.name == "subscriptions");
  CHECK(s.qualified_name() == "public.subscriptions");
  CHECK(s.key == Strings{"id"});
  CHECK(s.version_column == "version");
  CHECK(s.version_kind == occ::VersionKind::counter);
  CHECK_FALSE(s.reject_unknown_version);
  CHECK_FALSE(s.enforce_app_managed);
  CHECK(s.check_deletes);
  CHECK(s.mode == occ::EnforceMode::enforce);
  CHECK(s.version_bump == occ::VersionBump::trigger);
  CHECK_FALSE(s.reject_unsupported);
  CHECK(s.conflict_sqlstate == "40001");
  CHECK(s.read_ttl == 60s);
  CHECK(s.force_roles == Strings{"dba"});
  CHECK(s.redact.empty());
  CHECK(s.on_conflict == occ::OnConflict::reject);
  CHECK_FALSE(s.track_writer);
  CHECK(r.tables[1].qualified_name() == "public.invoices");
  CHECK(r.tables[2].qualified_name() == "billing.plans");
  CHECK(r.tables[2].version_kind == occ::VersionKind::uuid);
  CHECK(r.tables[1].version_kind == occ::VersionKind::counter);
}

TEST_CASE("a table entry overrides every default key", "[rules]") {
  const auto r = occ::parse_rules(R"(
defaults:
  force: {allowed_roles: [dba, ops]}
  redact: [card_number]
tables:
  - table: accounts
    key: [tenant, id]
    version_column: lock_version
    version_kind: timestamp
    on_unknown_version: reject
    app_managed_version: enforce
    check_deletes: false
    mode: shadow
    version_bump: proxy
    on_unsupported: reject
    conflict_sqlstate: P0001
    on_conflict: merge
    track_writer: true
    read_ttl: 500ms
    force:
      allowed_roles: []
    redact: [ssn, Card_No, '"Notes"']
  - table: ledger
    key: [id]
)",
                                  file);
  REQUIRE(r.tables.size() == 2);
  const auto& a = r.tables[0];
  CHECK(a.qualified_name() == "public.accounts");
  CHECK(a.key == Strings{"tenant", "id"});
  CHECK(a.version_column == "lock_version");
  CHECK(a.version_kind == occ::VersionKind::timestamp);
  CHECK(a.reject_unknown_version);
  CHECK(a.enforce_app_managed);
  CHECK_FALSE(a.check_deletes);
  CHECK(a.mode == occ::EnforceMode::shadow);
  CHECK(a.version_bump == occ::VersionBump::proxy);
  CHECK(a.reject_unsupported);
  CHECK(a.conflict_sqlstate == "P0001");
  CHECK(a.read_ttl == 500ms);
  CHECK(a.force_roles.empty());
  CHECK_FALSE(a.may_force("dba"));
  CHECK(a.redact == Strings{"ssn", "card_no", "Notes"});
  CHECK(a.is_redacted("Notes"));
  CHECK_FALSE(a.is_redacted("notes"));
  CHECK(a.on_conflict == occ::OnConflict::merge);
  CHECK(a.track_writer);

  const auto& l = r.tables[1];
  CHECK(l.on_conflict == occ::OnConflict::reject);
  CHECK_FALSE(l.track_writer);
  CHECK(l.force_roles == Strings{"dba", "ops"});
  CHECK(l.may_force("ops"));
  CHECK_FALSE(l.may_force("Ops"));
  CHECK(l.is_redacted("card_number"));
  CHECK(l.mode == occ::EnforceMode::enforce);
}

TEST_CASE("table and column names fold like SQL identifiers", "[rules]") {
  struct Row {
    const char* table;
    const char* key;
    const char* schema;
    const char* name;
    const char* key_column;
  };
  const Row rows[] = {
      {"subscriptions", "id", "public", "subscriptions", "id"},
      {"Public.Subscriptions", "ID", "public", "subscriptions", "id"},
      {R"('"Mixed"."Case"')", R"('"Id"')", "Mixed", "Case", "Id"},
      {R"('billing."Plans"')", "plan_id", "billing", "Plans", "plan_id"},
      {R"('"a.b"')", R"('"we""ird"')", "public", "a.b", "we\"ird"},
      {"s_1.t$2", "_k", "s_1", "t$2", "_k"},
      {"\"caf\xc3\xa9\"", "\xc3\xa9t\xc3\xa9", "public", "caf\xc3\xa9", "\xc3\xa9t\xc3\xa9"},
  };
  for (const auto& row : rows) {
    const std::string yaml = std::string("tables:\n  - table: ") + row.table + "\n    key: [" + row.key + "]\n";
    INFO(yaml);
    const auto r = occ::parse_rules(yaml, file);
    REQUIRE(r.tables.size() == 1);
    CHECK(r.tables[0].schema == row.schema);
    CHECK(r.tables[0].name == row.name);
    CHECK(r.tables[0].key == Strings{row.key_column});
  }
}

TEST_CASE("an empty rules file protects nothing", "[rules]") {
  CHECK(occ::parse_rules("", file).tables.empty());
  CHECK(occ::parse_rules("# nothing yet\n", file).tables.empty());
  CHECK(occ::parse_rules("tables: []\n", file).tables.empty());
}

TEST_CASE("rules errors name file, line and key", "[rules]") {
  struct Row {
    const char* yaml;
    const char* message;
  };
  const Row rows[] = {
      {"tables:\n  - table: t\n    key: [id\n", "rules.yaml:4: invalid YAML: end of sequence flow not found"},
      {"- table: t\n", "rules.yaml:1: expected a mapping of keys, got a list"},
      {"tabels: []\n", "rules.yaml:1: tabels: unknown key (did you mean tables?)"},
      {"protect: []\n", "rules.yaml:1: protect: unknown key; expected one of: defaults, tables, invariants"},
      {"tables:\n  table: t\n", "rules.yaml:1: tables: expected a list, got a mapping"},
      {"tables:\n", "rules.yaml:1: tables: has no value"},
      {"tables: []\ntables: []\n", "rules.yaml:2: tables: given twice (first on line 1)"},
      {"defaults:\n  mode: enforce\n  versoin_column: v\n",
       "rules.yaml:3: defaults.versoin_column: unknown key (did you mean version_column?)"},
      {"defaults:\n  table: t\n",
       "rules.yaml:2: defaults.table: unknown key; expected one of: version_column, version_kind, on_unknown_version, "
       "app_managed_version, check_deletes, mode, version_bump, on_unsupported, conflict_sqlstate, read_ttl, force, "
       "redact, on_conflict, track_writer"},
      {"defaults: []\n", "rules.yaml:1: defaults: expected a mapping of keys, got a list"},
      {"tables:\n  - table: t\n    key: [id]\n    colour: red\n",
       "rules.yaml:4: tables[0].colour: unknown key; expected one of: table, key, version_column, version_kind, "
       "on_unknown_version, app_managed_version, check_deletes, mode, version_bump, on_unsupported, conflict_sqlstate, "
       "read_ttl, force, redact, on_conflict, track_writer"},
      {"tables:\n  - table: t\n    key: [id]\n    on_conflict: resolve\n",
       "rules.yaml:4: tables[0].on_conflict: expected reject or merge, got \"resolve\""},
      {"defaults:\n  track_writer: sometimes\n", "rules.yaml:2: defaults.track_writer: expected true or false, got \"sometimes\""},
      {"tables:\n  - table: t\n    key: [occ_modified_by]\n    track_writer: true\n",
       "rules.yaml:3: tables[0].key: occ_modified_by is kept by track_writer and cannot be the version or a key column"},
      {"tables:\n  - table: t\n    key: [id]\n    mode: shadow\n    mode: enforce\n",
       "rules.yaml:5: tables[0].mode: given twice (first on line 4)"},
      {"tables:\n  - t\n", "rules.yaml:2: tables[0]: expected a mapping of keys, got a value"},
      {"tables:\n  - table: a\n    key: [id]\n  - key: [id]\n",
       "rules.yaml:4: tables[1]: missing required key `table` (schema.name)"},
      {"tables:\n  - table: a\n", "rules.yaml:2: tables[0]: missing required key `key` (the row's key columns, e.g. [id])"},
      {"tables:\n  - table: a\n    key: []\n", "rules.yaml:3: tables[0].key: must name at least one column"},
      {"tables:\n  - table: a\n    key: id\n", "rules.yaml:3: tables[0].key: expected a list, got a value"},
      {"tables:\n  - table: a\n    key: [id, ID]\n", "rules.yaml:3: tables[0].key: id is listed twice"},
      {"tables:\n  - table: a\n    key: [[id]]\n", "rules.yaml:3: tables[0].key: list items must be strings, got a list"},
      {"tables:\n  - table: a\n    key:\n      - id\n      - 2nd\n",
       "rules.yaml:5: tables[0].key: bad name \"2nd\": expected a name starting with a letter or _ (quote other names: "
       "\"Name\")"},
      {"tables:\n  - table: a\n    key: [t.id]\n",
       "rules.yaml:3: tables[0].key: bad name \"t.id\": expected a single name, not a qualified name"},
      {"tables:\n  - table: a\n    key: [id, version]\n",
       "rules.yaml:3: tables[0].key: the version column version cannot be part of the key"},
      {"tables:\n  - table: a\n    key: [id, v]\n    version_column: V\n",
       "rules.yaml:3: tables[0].key: the version column v cannot be part of the key"},
      {"tables:\n  - table: db.public.a\n    key: [id]\n",
       "rules.yaml:2: tables[0].table: bad table name \"db.public.a\": expected name or schema.name"},
      {"tables:\n  - table: public.\n    key: [id]\n",
       "rules.yaml:2: tables[0].table: bad table name \"public.\": expected a name starting with a letter or _ (quote "
       "other names: \"Name\")"},
      {"tables:\n  - table: my table\n    key: [id]\n",
       "rules.yaml:2: tables[0].table: bad table name \"my table\": unexpected character ' ' (quote names with special "
       "characters)"},
      {"tables:\n  - table: '\"open'\n    key: [id]\n",
       "rules.yaml:2: tables[0].table: bad table name \"\"open\": unterminated quoted identifier"},
      {"tables:\n  - table: '\"\"'\n    key: [id]\n",
       "rules.yaml:2: tables[0].table: bad table name \"\"\"\": a quoted identifier cannot be empty"},
      {"tables:\n  - table: a234567890123456789012345678901234567890123456789012345678901234\n    key: [id]\n",
       "rules.yaml:2: tables[0].table: bad table name \"a234567890123456789012345678901234567890123456789012345678901234\": "
       "name part longer than 63 bytes"},
      {"tables:\n  - table: [a]\n    key: [id]\n", "rules.yaml:2: tables[0].table: expected a string, got a list"},
      {"tables:\n  - table: public.a\n    key: [id]\n  - table: b\n    key: [id]\n  - table: A\n    key: [id]\n",
       "rules.yaml:6: tables[2].table: public.a is listed twice (first on line 2)"},
      {"tables:\n  - table: '\"A\"'\n    key: [id]\n  - table: '\"A\"'\n    key: [id]\n",
       "rules.yaml:4: tables[1].table: public.A is listed twice (first on line 2)"},
      {"defaults:\n  version_kind: serial\n",
       "rules.yaml:2: defaults.version_kind: expected counter, uuid or timestamp, got \"serial\""},
      {"defaults:\n  on_unknown_version: deny\n",
       "rules.yaml:2: defaults.on_unknown_version: expected allow or reject, got \"deny\""},
      {"defaults:\n  app_managed_version: trust\n",
       "rules.yaml:2: defaults.app_managed_version: expected passthrough or enforce, got \"trust\""},
      {"defaults:\n  check_deletes: sometimes\n", "rules.yaml:2: defaults.check_deletes: expected true or false, got \"sometimes\""},
      {"defaults:\n  mode: Shadow\n", "rules.yaml:2: defaults.mode: expected enforce or shadow, got \"Shadow\""},
      {"defaults:\n  version_bump: app\n", "rules.yaml:2: defaults.version_bump: expected trigger or proxy, got \"app\""},
      {"defaults:\n  on_unsupported: warn\n", "rules.yaml:2: defaults.on_unsupported: expected passthrough or reject, got \"warn\""},
      {"tables:\n  - table: a\n    key: [id]\n    mode: [shadow]\n",
       "rules.yaml:4: tables[0].mode: expected enforce or shadow, got a list"},
      {"defaults:\n  conflict_sqlstate: 4001\n",
       "rules.yaml:2: defaults.conflict_sqlstate: expected 5 characters from 0-9 and A-Z, got \"4001\""},
      {"defaults:\n  conflict_sqlstate: \"400010\"\n",
       "rules.yaml:2: defaults.conflict_sqlstate: expected 5 characters from 0-9 and A-Z, got \"400010\""},
      {"defaults:\n  conflict_sqlstate: p0001\n",
       "rules.yaml:2: defaults.conflict_sqlstate: expected 5 characters from 0-9 and A-Z, got \"p0001\""},
      {"defaults:\n  conflict_sqlstate: \"4000-\"\n",
       "rules.yaml:2: defaults.conflict_sqlstate: expected 5 characters from 0-9 and A-Z, got \"4000-\""},
      {"defaults:\n  conflict_sqlstate: \"01000\"\n",
       "rules.yaml:2: defaults.conflict_sqlstate: class 01 is not an error class, got \"01000\""},
      {"tables:\n  - table: a\n    key: [id]\n    conflict_sqlstate: \"00000\"\n",
       "rules.yaml:4: tables[0].conflict_sqlstate: class 00 is not an error class, got \"00000\""},
      {"defaults:\n  read_ttl: 60\n",
       "rules.yaml:2: defaults.read_ttl: bad duration \"60\": expected a whole number and a unit: ms, s, m or h (e.g. "
       "500ms, 2s, 5m, 1h)"},
      {"tables:\n  - table: a\n    key: [id]\n    read_ttl: 1 minute\n",
       "rules.yaml:4: tables[0].read_ttl: bad duration \"1 minute\": expected a whole number and a unit: ms, s, m or h "
       "(e.g. 500ms, 2s, 5m, 1h)"},
      {"defaults:\n  read_ttl: 0s\n", "rules.yaml:2: defaults.read_ttl: must be longer than zero"},
      {"defaults:\n  force: [dba]\n", "rules.yaml:2: defaults.force: expected a mapping of keys, got a list"},
      {"defaults:\n  force:\n    roles: [dba]\n", "rules.yaml:3: defaults.force.roles: unknown key; expected one of: allowed_roles"},
      {"defaults:\n  force:\n    allowed_roles: dba\n", "rules.yaml:3: defaults.force.allowed_roles: expected a list, got a value"},
      {"defaults:\n  redact: ssn\n", "rules.yaml:2: defaults.redact: expected a list, got a value"},
      {"defaults:\n  version_column: \"\"\n",
       "rules.yaml:2: defaults.version_column: bad name \"\": expected a name starting with a letter or _ (quote other "
       "names: \"Name\")"},
  };
  for (const auto& row : rows) {
    INFO(row.yaml);
    CHECK(rules_error(row.yaml) == row.message);
  }
}

TEST_CASE("invariants: name, query, interval and timeout", "[rules][invariants]") {
  const auto r = occ::parse_rules(R"(
invariants:
  - name: balance_matches_ledger
    query: |
      SELECT id FROM accounts WHERE balance < 0
    interval: 1m
    timeout: 5s
  - name: short.one-2
    query: SELECT 1 WHERE false
    interval: 2s
  - name: long
    query: SELECT 1 WHERE false
    interval: 5m
)",
                                  file);
  CHECK(r.tables.empty());
  REQUIRE(r.invariants.size() == 3);
  CHECK(r.invariants[0] == occ::Invariant{"balance_matches_ledger", "SELECT id FROM accounts WHERE balance < 0\n", 60s, 5s});
  // Without a timeout a run may take its whole interval, but at most 30 seconds.
  CHECK(r.invariants[1] == occ::Invariant{"short.one-2", "SELECT 1 WHERE false", 2s, 2s});
  CHECK(r.invariants[2] == occ::Invariant{"long", "SELECT 1 WHERE false", 300s, 30s});
}

TEST_CASE("invariant errors name file, line and key", "[rules][invariants]") {
  struct Row {
    const char* yaml;
    const char* message;
  };
  const Row rows[] = {
      {"invariants:\n  name: x\n", "rules.yaml:1: invariants: expected a list, got a mapping"},
      {"invariants:\n  - name: x\n    query: SELECT 1\n",
       "rules.yaml:2: invariants[0]: missing required key `interval` (how often to run it, e.g. 1m)"},
      {"invariants:\n  - query: SELECT 1\n    interval: 1m\n", "rules.yaml:2: invariants[0]: missing required key `name`"},
      {"invariants:\n  - name: x\n    interval: 1m\n",
       "rules.yaml:2: invariants[0]: missing required key `query` (a SELECT returning the violating rows)"},
      {"invariants:\n  - name: x\n    query: SELECT 1\n    interval: 1m\n    colour: red\n",
       "rules.yaml:5: invariants[0].colour: unknown key; expected one of: name, query, interval, timeout"},
      {"invariants:\n  - name: two words\n    query: SELECT 1\n    interval: 1m\n",
       "rules.yaml:2: invariants[0].name: use letters, digits, '_', '-' and '.' only (at most 100), got \"two words\""},
      {"invariants:\n  - name: x\n    query: \" \"\n    interval: 1m\n",
       "rules.yaml:3: invariants[0].query: is empty; give a SELECT that returns the rows violating the invariant"},
      {"invariants:\n  - name: x\n    query: SELECT 1\n    interval: 0s\n",
       "rules.yaml:4: invariants[0].interval: must be longer than zero"},
      {"invariants:\n  - name: x\n    query: SELECT 1\n    interval: 10s\n    timeout: 1m\n",
       "rules.yaml:5: invariants[0].timeout: is longer than the interval; a run must end before the next is due"},
      {"invariants:\n  - name: x\n    query: SELECT 1\n    interval: 1m\n  - name: x\n    query: SELECT 2\n    interval: 1m\n",
       "rules.yaml:5: invariants[1].name: x is listed twice (first on line 2)"},
  };
  for (const auto& row : rows) {
    INFO(row.yaml);
    CHECK(rules_error(row.yaml) == row.message);
  }
}

TEST_CASE("a missing rules file names the path", "[rules]") {
  try {
    occ::load_rules("/nonexistent/rules.yaml");
    FAIL("accepted");
  } catch (const occ::RulesError& e) {
    CHECK(std::string(e.what()) == "cannot read rules file /nonexistent/rules.yaml: No such file or directory");
  }
}

TEST_CASE("rules lookups use catalog spelling", "[rules]") {
  const auto r = occ::parse_rules("tables:\n  - {table: billing.plans, key: [id]}\n  - {table: '\"Odd\"', key: [id]}\n", file);
  CHECK(r.find("billing", "plans") == &r.tables[0]);
  CHECK(r.find("public", "Odd") == &r.tables[1]);
  CHECK(r.find("public", "plans") == nullptr);
  CHECK(r.find("public", "odd") == nullptr);
  CHECK(r.has_table_named("plans"));
  CHECK(r.has_table_named("Odd"));
  CHECK_FALSE(r.has_table_named("billing"));
}

TEST_CASE("enum names", "[rules]") {
  CHECK(std::string(occ::to_string(occ::VersionKind::counter)) == "counter");
  CHECK(std::string(occ::to_string(occ::VersionKind::uuid)) == "uuid");
  CHECK(std::string(occ::to_string(occ::VersionKind::timestamp)) == "timestamp");
  CHECK(std::string(occ::to_string(occ::EnforceMode::enforce)) == "enforce");
  CHECK(std::string(occ::to_string(occ::EnforceMode::shadow)) == "shadow");
  CHECK(std::string(occ::to_string(occ::VersionBump::trigger)) == "trigger");
  CHECK(std::string(occ::to_string(occ::VersionBump::proxy)) == "proxy");
  CHECK(std::string(occ::to_string(occ::OnConflict::reject)) == "reject");
  CHECK(std::string(occ::to_string(occ::OnConflict::merge)) == "merge");
}

TEST_CASE("the rules in force are swapped whole", "[rules]") {
  const occ::RulesPtr before = occ::current_rules();
  REQUIRE(before != nullptr);
  auto next = std::make_shared<const occ::Rules>(occ::parse_rules("tables: [{table: t, key: [id]}]\n", file));
  occ::set_current_rules(next);
  CHECK(occ::current_rules() == next);
  CHECK(occ::current_rules()->tables.size() == 1);
  occ::set_current_rules(nullptr);
  REQUIRE(occ::current_rules() != nullptr);
  CHECK(occ::current_rules()->tables.empty());
  CHECK(next->tables.size() == 1);
  occ::set_current_rules(before);
}

TEST_CASE("unqualified names resolve like the server's search_path", "[rules][catalog]") {
  const auto rules = occ::parse_rules(
      "tables:\n  - {table: subscriptions, key: [id]}\n  - {table: billing.plans, key: [id]}\n"
      "  - {table: pg_stats, key: [id]}\n",
      file);
  occ::RelationIndex index;
  index.schemas_by_name = {{"subscriptions", {"other", "public"}}, {"plans", {"billing"}}, {"pg_stats", {"pg_catalog", "public"}}};
  index.loaded = true;
  const occ::RelationIndex not_loaded;

  struct Row {
    const occ::RelationIndex* index;
    const char* name;
    Strings search_path;
    std::optional<std::string> expected;
  };
  const Row rows[] = {
      {&index, "subscriptions", {"public"}, "public"},
      {&index, "subscriptions", {"other", "public"}, "other"},
      {&index, "subscriptions", {"app", "public", "other"}, "public"},
      {&index, "subscriptions", {"billing"}, std::nullopt},
      {&index, "subscriptions", {}, std::nullopt},
      {&index, "plans", {"public", "billing"}, "billing"},
      {&index, "pg_stats", {"public"}, "pg_catalog"},
      {&index, "pg_stats", {"public", "pg_catalog"}, "public"},
      {&index, "unknown", {"public"}, std::nullopt},
      {&not_loaded, "subscriptions", {"other", "public"}, "public"},
      {&not_loaded, "plans", {"public", "billing"}, "billing"},
      {&not_loaded, "plans", {"public"}, std::nullopt},
      {&not_loaded, "unknown", {"public"}, std::nullopt},
  };
  for (const auto& row : rows) {
    INFO(row.name << " loaded=" << row.index->loaded);
    CHECK(row.index->resolve(row.name, row.search_path, rules) == row.expected);
  }
}

TEST_CASE("bump trigger functions get short distinct names", "[rules][migrate]") {
  auto policy = [](std::string schema, std::string name) {
    occ::TablePolicy p;
    p.schema = std::move(schema);
    p.name = std::move(name);
    return p;
  };
  const std::string long_name(63, 'x');
  const std::string accents = std::string(48, 'a') + "\xc3\xa9\xc3\xa9";  // the 49th byte starts a character
  struct Row {
    occ::TablePolicy table;
    std::string expected;
  };
  const Row rows[] = {
      {policy("public", "subscriptions"), "bump_subscriptions_ffb8202e"},
      {policy("billing", "subscriptions"), "bump_subscriptions_18be19ca"},
      {policy("public", "Mixed"), "bump_Mixed_5da16aa7"},
      {policy("public", long_name), "bump_" + std::string(49, 'x') + "_d4221df8"},
      {policy("public", accents), "bump_" + std::string(48, 'a') + "_d62295f0"},
  };
  for (const auto& row : rows) {
    INFO(row.table.qualified_name());
    const std::string name = occ::bump_function_name(row.table);
    CHECK(name == row.expected);
    CHECK(name.size() <= 63);
  }
}

TEST_CASE("version column types per version_kind", "[rules][migrate]") {
  struct Row {
    occ::VersionKind kind;
    const char* type;
    bool fits;
  };
  const Row rows[] = {
      {occ::VersionKind::counter, "int8", true},      {occ::VersionKind::counter, "int4", true},
      {occ::VersionKind::counter, "int2", true},      {occ::VersionKind::counter, "numeric", false},
      {occ::VersionKind::counter, "uuid", false},     {occ::VersionKind::uuid, "uuid", true},
      {occ::VersionKind::uuid, "text", false},        {occ::VersionKind::timestamp, "timestamptz", true},
      {occ::VersionKind::timestamp, "timestamp", true}, {occ::VersionKind::timestamp, "date", false},
  };
  for (const auto& row : rows) {
    INFO(occ::to_string(row.kind) << " " << row.type);
    CHECK(occ::version_type_fits(row.kind, row.type) == row.fits);
  }
  CHECK(std::string(occ::version_types_text(occ::VersionKind::counter)) == "bigint, integer or smallint");
  CHECK(std::string(occ::version_types_text(occ::VersionKind::uuid)) == "uuid");
  CHECK(std::string(occ::version_types_text(occ::VersionKind::timestamp)) == "timestamptz or timestamp");
}
