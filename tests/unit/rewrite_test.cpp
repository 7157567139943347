// rewrite_sql: SQL in, SQL out, one row per case, compared with the exact text the server gets.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <pg_query.h>

#include "admin/catalog.h"
#include "sql/plan_cache.h"
#include "sql/rewrite.h"

namespace {

const char* const tables_yaml = R"(tables:
  - table: public.subscriptions
    key: [id]
  - table: billing.invoices
    key: [id, line]
  - table: '"Weird"."Name"'
    key: ['"Key"']
    version_column: '"Ver"'
  - table: public."a$occ$b"
    key: [id]
  - table: quoted
    key: ['"we""ird"']
)";

// The `defaults:` of each rules variant the cases name.
const std::map<std::string, std::string> variants = {
    {"passthrough", ""},
    {"enforce", "  app_managed_version: enforce\n"},
    {"proxy", "  app_managed_version: enforce\n  version_bump: proxy\n"},
    {"proxy-passthrough", "  version_bump: proxy\n"},
    {"uuid", "  app_managed_version: enforce\n  version_bump: proxy\n  version_kind: uuid\n"},
    {"timestamp", "  app_managed_version: enforce\n  version_bump: proxy\n  version_kind: timestamp\n"},
    {"shadow", "  app_managed_version: enforce\n  mode: shadow\n  conflict_sqlstate: \"40P01\"\n"},
    {"reject", "  app_managed_version: enforce\n  on_unsupported: reject\n"},
    {"no-deletes", "  app_managed_version: enforce\n  check_deletes: false\n"},
    {"redact", "  app_managed_version: enforce\n  redact: [notes, '\"Card\"']\n"},
    {"unknown-reject", "  on_unknown_version: reject\n"},
    {"uuid-passthrough", "  version_kind: uuid\n"},
    {"merge", "  on_conflict: merge\n"},
    {"merge-shadow", "  on_conflict: merge\n  mode: shadow\n"},
    {"merge-proxy", "  on_conflict: merge\n  version_bump: proxy\n"},
};

// Views the catalog would find over public.subscriptions: one whose rows are the table's, and two
// whose reads or writes cannot be followed.
occ::Rules rules_for(const std::string& variant) {
  const std::string yaml =
      "defaults:\n" + variants.at(variant) + "  force:\n    allowed_roles: [dba]\n" + std::string(tables_yaml);
  occ::Rules rules = occ::parse_rules(yaml, "rules.yaml");
  rules.views = {
      {"public", "active_subs", "public", "subscriptions", "", ""},
      {"public", "sub_notes", "public", "subscriptions", "it does not show the version column version under its own name",
       ""},
      {"public", "sub_form", "public", "subscriptions", "", "it is written through an INSTEAD OF trigger or rule"},
  };
  return rules;
}

// The dollar-quoted meta argument for `@table.op@` in an expected text ("sub", "inv", "weird";
// "update", "delete"; "update+read", "delete+read": carrying the read of FakeReads' row 7).
std::string meta(const std::string& variant, const std::string& table, std::string op) {
  const bool read = op.ends_with("+read");
  if (read) op.resize(op.size() - 5);
  const std::string mode = variant == "shadow" ? "shadow" : "enforce";
  const std::string sqlstate = variant == "shadow" ? "40P01" : "40001";
  std::string where;
  if (table == "sub") where = R"("schema":"public","table":"subscriptions","key":["id"],"version_column":"version")";
  if (table == "inv") where = R"("schema":"billing","table":"invoices","key":["id","line"],"version_column":"version")";
  if (table == "weird") where = R"("schema":"Weird","table":"Name","key":["Key"],"version_column":"Ver")";
  if (table == "quoted") where = R"("schema":"public","table":"quoted","key":["we\"ird"],"version_column":"version")";
  if (table == "dollar") where = R"("schema":"public","table":"a$occ$b","key":["id"],"version_column":"version")";
  const std::string tag = table == "dollar" ? "$occ1$" : "$occ$";
  const std::string redact = variant == "redact" ? R"(,"redact":["notes","Card"])" : "";
  return tag + "{" + where + R"(,"sqlstate":")" + sqlstate + R"(","mode":")" + mode + "\"" + redact + R"(,"op":")" +
         op + R"(","base":)" + (read ? R"({"status":"a"})" : "null") + "}" + tag;
}

std::string expand(const std::string& variant, std::string text) {
  for (std::size_t at = text.find('@'); at != std::string::npos; at = text.find('@', at)) {
    const std::size_t dot = text.find('.', at);
    const std::size_t end = text.find('@', at + 1);
    const std::string m = meta(variant, text.substr(at + 1, dot - at - 1), text.substr(dot + 1, end - dot - 1));
    text.replace(at, end - at + 1, m);
    at += m.size();
  }
  return text;
}

// A read set that answers every lookup with one fixed map (row 7 read at version 3) and remembers
// what it was asked.
struct FakeReads : occ::ReadSetLookup {
  std::string map = R"({"7":{"v":"3","b":{"status":"a"}}})";
  mutable std::vector<std::string> asked;  // "schema.table [k1|k2] [k1|k2]"

  std::optional<occ::RowRead> read_row(const occ::TablePolicy& table,
                                       const std::vector<std::string>& key) const override {
    asked.push_back(table.qualified_name() + " [" + key.front() + "]");
    if (key != std::vector<std::string>{"7"}) return std::nullopt;
    return occ::RowRead{"3", R"({"status":"a"})"};
  }

  std::string expected_map(const occ::TablePolicy& table,
                           const std::vector<std::vector<std::string>>& keys) const override {
    std::string call = table.qualified_name();
    for (const auto& key : keys) {
      call += " [";
      for (std::size_t i = 0; i < key.size(); ++i) call += (i > 0 ? "|" : "") + key[i];
      call += "]";
    }
    asked.push_back(call);
    return map;
  }
};

struct Session {
  occ::Rules rules;
  occ::RelationIndex relations;
  std::vector<std::string> search_path{"public"};
  std::string user = "app";
  occ::PlanCache cache;
  const occ::ReadSetLookup* reads = nullptr;
  int declared_params = 0;
  const occ::SqlPrepared* prepared = nullptr;
  uint32_t next_shadow = 0;

  explicit Session(const std::string& variant) : rules(rules_for(variant)) {}

  occ::Rewrite rewrite(const std::string& sql, bool extended = false) {
    const occ::SessionView view{user, search_path, rules, relations, reads, declared_params, prepared, {}, next_shadow};
    return occ::rewrite_sql(sql, extended, view, cache);
  }
};

// The text the server gets: the rewrite, or the original when forwarded.
std::string sent(const occ::Rewrite& r, const std::string& sql) {
  return r.action == occ::Rewrite::Action::rewrite ? r.sql : sql;
}

struct Row {
  const char* variant;
  const char* user;
  const char* sql;
  const char* expected;  // "" means forwarded unchanged
};

const Row rewrite_rows[] = {
    // Nothing to do.
    {"enforce", "app", "SELECT * FROM subscriptions WHERE id = 1 AND version = 3", ""},
    {"enforce", "app", "UPDATE other SET version = 1 WHERE id = 1 AND version = 3", ""},
    {"enforce", "app", "INSERT INTO subscriptions (id, status) VALUES (1, 'new')", ""},
    {"enforce", "app", "INSERT INTO subscriptions (id) VALUES (1) ON CONFLICT (id) DO NOTHING", ""},
    {"enforce", "app", "CREATE INDEX ON subscriptions (status)", ""},
    {"enforce", "app", "UPDATE weird.name SET x = 1 WHERE version = 1", ""},
    {"passthrough", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 1", ""},
    {"passthrough", "app", "DELETE FROM subscriptions WHERE id = 1", ""},
    {"enforce", "app", "DELETE FROM subscriptions WHERE id = 1", ""},
    {"passthrough", "app",
     "UPDATE subscriptions SET status = 'x', version = version + 1 WHERE id = $1 AND version = $2", ""},
    {"passthrough", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 1 AND (version = 3 OR version = 4)", ""},
    {"passthrough", "app", "DELETE FROM subscriptions WHERE id = 1 AND version = 3", ""},
    {"no-deletes", "app", "DELETE FROM subscriptions WHERE id = 1 AND version = 3", ""},
    {"proxy", "app", "UPDATE subscriptions SET version = 10 WHERE id = 1", ""},
    {"passthrough", "app", "INSERT INTO subscriptions (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET status = 'x'", ""},
    {"enforce", "app", "UPDATE subscriptions SET WHERE", ""},

    // UPDATE, expected version from the statement (app_managed_version: enforce).
    {"enforce", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 1 AND version = 3",
     "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = 3 THEN subscriptions.version "
     "WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
     "occ.conflict(subscriptions.version, 3, subscriptions.version, to_jsonb(subscriptions.*), "
     "@sub.update@) END, status = 'x' WHERE id = 1 AND TRUE"},
    {"enforce", "app", "UPDATE subscriptions SET status = $1, version = version + 1 WHERE id = $2 AND version = $3",
     "UPDATE subscriptions SET status = $1, version = CASE WHEN subscriptions.version = $3 THEN version + "
     "1 WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN version + 1 ELSE "
     "occ.conflict(subscriptions.version, $3, version + 1, to_jsonb(subscriptions.*), @sub.update@) END "
     "WHERE id = $2 AND TRUE"},
    {"enforce", "app",
     "update public.subscriptions s set status = t.status from staging t where s.id = t.id and $1::bigint = "
     "s.version "
     "returning s.*",
     "update public.subscriptions s set version = CASE WHEN s.version = $1::bigint THEN s.version WHEN "
     "occ.written_here(s.xmin, s.version) THEN s.version ELSE occ.conflict(s.version, $1::bigint, "
     "s.version, to_jsonb(s.*), @sub.update@) END, status = t.status from staging t where s.id = t.id and "
     "TRUE returning s.*"},
    {"enforce", "app", "UPDATE subscriptions SET (status, notes) = ('a', 'b') WHERE (version) = -3 AND (id = 1)",
     "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = -3 THEN subscriptions.version "
     "WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
     "occ.conflict(subscriptions.version, -3, subscriptions.version, to_jsonb(subscriptions.*), "
     "@sub.update@) END, (status, notes) = ('a', 'b') WHERE TRUE AND (id = 1)"},
    // Comments, spacing and casing survive; only the spliced parts change.
    {"enforce", "app",
     "/* app: save */ Update  subscriptions\n   SET\tstatus = 'a' -- why\n WHERE id = 1\n   AND version = 3 /* v */;",
     "/* app: save */ Update  subscriptions\n   SET version = CASE WHEN subscriptions.version = 3 THEN "
     "subscriptions.version WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN "
     "subscriptions.version ELSE occ.conflict(subscriptions.version, 3, subscriptions.version, "
     "to_jsonb(subscriptions.*), @sub.update@) END,\tstatus = 'a' -- why\n WHERE id = 1\n   AND TRUE /* v "
     "*/;"},
    // Keywords as column names after a dot, and splices that would fuse with their neighbours.
    {"enforce", "app", "UPDATE subscriptions s SET a = s.from WHERE s.end = 1 AND version = 2",
     "UPDATE subscriptions s SET version = CASE WHEN s.version = 2 THEN s.version WHEN "
     "occ.written_here(s.xmin, s.version) THEN s.version ELSE occ.conflict(s.version, 2, s.version, "
     "to_jsonb(s.*), @sub.update@) END, a = s.from WHERE s.end = 1 AND TRUE"},
    {"enforce", "app", "UPDATE subscriptions SET\"version\"=1 WHERE(version)=2",
     "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = 2 THEN 1 WHEN "
     "occ.written_here(subscriptions.xmin, subscriptions.version) THEN 1 ELSE "
     "occ.conflict(subscriptions.version, 2, 1, to_jsonb(subscriptions.*), @sub.update@) END WHERE TRUE"},
    // Several statements in one Query: each rewritten in place.
    {"enforce", "app",
     "BEGIN; UPDATE subscriptions SET status = 'a' WHERE id = 1 AND version = 3; SELECT 1;\n"
     "DELETE FROM subscriptions WHERE id = 2 AND version = 5; COMMIT",
     "BEGIN; UPDATE subscriptions SET version = CASE WHEN subscriptions.version = 3 THEN "
     "subscriptions.version WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN "
     "subscriptions.version ELSE occ.conflict(subscriptions.version, 3, subscriptions.version, "
     "to_jsonb(subscriptions.*), @sub.update@) END, status = 'a' WHERE id = 1 AND TRUE; SELECT 1;\nDELETE "
     "FROM subscriptions WHERE id = 2 AND TRUE AND (CASE WHEN (id = 2 AND TRUE) IS NOT TRUE THEN false "
     "WHEN subscriptions.version = 5 THEN true WHEN occ.written_here(subscriptions.xmin, "
     "subscriptions.version) THEN true ELSE occ.conflict(subscriptions.version, 5, subscriptions.version, "
     "to_jsonb(subscriptions.*), @sub.delete@) IS NOT NULL END); COMMIT"},
    // Writable CTEs.
    {"enforce", "app",
     "WITH u AS (UPDATE subscriptions SET status = 'x' WHERE id = 1 AND version = 3 RETURNING id) SELECT * FROM u",
     "WITH u AS (UPDATE subscriptions SET version = CASE WHEN subscriptions.version = 3 THEN "
     "subscriptions.version WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN "
     "subscriptions.version ELSE occ.conflict(subscriptions.version, 3, subscriptions.version, "
     "to_jsonb(subscriptions.*), @sub.update@) END, status = 'x' WHERE id = 1 AND TRUE RETURNING id) "
     "SELECT * FROM u"},
    {"enforce", "app",
     "WITH d AS (DELETE FROM subscriptions WHERE id = 1 AND version = 3 RETURNING *) INSERT INTO archive SELECT * "
     "FROM d",
     "WITH d AS (DELETE FROM subscriptions WHERE id = 1 AND TRUE AND (CASE WHEN (id = 1 AND TRUE) IS NOT "
     "TRUE THEN false WHEN subscriptions.version = 3 THEN true WHEN occ.written_here(subscriptions.xmin, "
     "subscriptions.version) THEN true ELSE occ.conflict(subscriptions.version, 3, subscriptions.version, "
     "to_jsonb(subscriptions.*), @sub.delete@) IS NOT NULL END) RETURNING *) INSERT INTO archive SELECT * "
     "FROM d"},
    // EXPLAIN ANALYZE and PREPARE run the write too.
    {"enforce", "app", "EXPLAIN ANALYZE UPDATE subscriptions SET status = 'x' WHERE version = 3",
     "EXPLAIN ANALYZE UPDATE subscriptions SET version = CASE WHEN subscriptions.version = 3 THEN "
     "subscriptions.version WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN "
     "subscriptions.version ELSE occ.conflict(subscriptions.version, 3, subscriptions.version, "
     "to_jsonb(subscriptions.*), @sub.update@) END, status = 'x' WHERE TRUE"},
    {"enforce", "app",
     "PREPARE p (int, bigint) AS UPDATE subscriptions SET status = 'x' WHERE id = $1 AND version = $2",
     "PREPARE p (int, bigint) AS UPDATE subscriptions SET version = CASE WHEN subscriptions.version = $2 "
     "THEN subscriptions.version WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN "
     "subscriptions.version ELSE occ.conflict(subscriptions.version, $2, subscriptions.version, "
     "to_jsonb(subscriptions.*), @sub.update@) END, status = 'x' WHERE id = $1 AND TRUE"},
    // Quoted names, and a meta text that holds the default dollar-quote tag.
    {"enforce", "app", R"(UPDATE "Weird"."Name" w SET "Note" = 'x' WHERE "Key" = 1 AND w."Ver" = 2)",
     R"(UPDATE "Weird"."Name" w SET "Ver" = CASE WHEN w."Ver" = 2 THEN w."Ver" WHEN occ.written_here(w.xmin, w."Ver") )"
     R"(THEN w."Ver" ELSE occ.conflict(w."Ver", 2, )"
     R"(w."Ver", to_jsonb(w.*), @weird.update@) END, "Note" = 'x' WHERE "Key" = 1 AND TRUE)"},
    {"enforce", "app", R"(UPDATE "a$occ$b" SET x = 1 WHERE version = 2)",
     R"(UPDATE "a$occ$b" SET version = CASE WHEN a$occ$b.version = 2 THEN a$occ$b.version WHEN )"
     R"(occ.written_here(a$occ$b.xmin, a$occ$b.version) THEN a$occ$b.version ELSE )"
     R"(occ.conflict(a$occ$b.version, 2, a$occ$b.version, to_jsonb(a$occ$b.*), @dollar.update@) END, x = 1 )"
     R"(WHERE TRUE)"},
    {"enforce", "app", "UPDATE quoted SET a = 1 WHERE version = 1",
     "UPDATE quoted SET version = CASE WHEN quoted.version = 1 THEN quoted.version WHEN "
     "occ.written_here(quoted.xmin, quoted.version) THEN quoted.version ELSE occ.conflict(quoted.version, "
     "1, quoted.version, to_jsonb(quoted.*), @quoted.update@) END, a = 1 WHERE TRUE"},
    // search_path: an earlier SET in the same message decides an unqualified name.
    {"enforce", "app", "UPDATE invoices SET total = 1 WHERE id = 1 AND line = 2 AND version = 4", ""},
    {"enforce", "app",
     "SET search_path TO billing, public; UPDATE invoices SET total = 1 WHERE id = 1 AND line = 2 AND version = 4",
     "SET search_path TO billing, public; UPDATE invoices SET version = CASE WHEN invoices.version = 4 "
     "THEN invoices.version WHEN occ.written_here(invoices.xmin, invoices.version) THEN invoices.version "
     "ELSE occ.conflict(invoices.version, 4, invoices.version, to_jsonb(invoices.*), @inv.update@) END, "
     "total = 1 WHERE id = 1 AND line = 2 AND TRUE"},

    // version_bump: proxy.
    {"proxy", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 1",
     "UPDATE subscriptions SET version = subscriptions.version + 1, status = 'x' WHERE id = 1"},
    {"proxy-passthrough", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 1 AND version = 3",
     "UPDATE subscriptions SET version = subscriptions.version + 1, status = 'x' WHERE id = 1 AND version = 3"},
    {"proxy", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 1 AND version = 3",
     "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = 3 THEN subscriptions.version + "
     "1 WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version + 1 "
     "ELSE occ.conflict(subscriptions.version, 3, subscriptions.version + 1, to_jsonb(subscriptions.*), "
     "@sub.update@) END, status = 'x' WHERE id = 1 AND TRUE"},
    {"uuid", "app",
     "UPDATE subscriptions SET status = 'x' WHERE id = 1 AND version = '8d5f3a1e-0c4b-4f7e-9a51-2b6c7d8e9f01'",
     "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = "
     "'8d5f3a1e-0c4b-4f7e-9a51-2b6c7d8e9f01' THEN gen_random_uuid() WHEN "
     "occ.written_here(subscriptions.xmin, subscriptions.version) THEN gen_random_uuid() ELSE "
     "occ.conflict(subscriptions.version, '8d5f3a1e-0c4b-4f7e-9a51-2b6c7d8e9f01', gen_random_uuid(), "
     "to_jsonb(subscriptions.*), @sub.update@) END, status = 'x' WHERE id = 1 AND TRUE"},
    {"timestamp", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 1",
     "UPDATE subscriptions SET version = clock_timestamp(), status = 'x' WHERE id = 1"},
    {"redact", "app", "UPDATE subscriptions SET notes = 'x' WHERE id = 1 AND version = 3",
     "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = 3 THEN subscriptions.version "
     "WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
     "occ.conflict(subscriptions.version, 3, subscriptions.version, to_jsonb(subscriptions.*), "
     "@sub.update@) END, notes = 'x' WHERE id = 1 AND TRUE"},
    {"shadow", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 1 AND version = 3",
     "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = 3 THEN subscriptions.version "
     "WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
     "occ.conflict(subscriptions.version, 3, subscriptions.version, to_jsonb(subscriptions.*), "
     "@sub.update@) END, status = 'x' WHERE id = 1 AND TRUE"},

    // DELETE: a CASE guard behind the rest of the condition.
    {"enforce", "app", "DELETE FROM subscriptions s USING staging t WHERE s.id = t.id AND s.version = 3 RETURNING s.id",
     "DELETE FROM subscriptions s USING staging t WHERE s.id = t.id AND TRUE AND (CASE WHEN (s.id = t.id "
     "AND TRUE) IS NOT TRUE THEN false WHEN s.version = 3 THEN true WHEN occ.written_here(s.xmin, "
     "s.version) THEN true ELSE occ.conflict(s.version, 3, s.version, to_jsonb(s.*), @sub.delete@) IS NOT "
     "NULL END) RETURNING s.id"},

    // Force: no check, the write is marked so the server reports what it overwrote.
    {"enforce", "dba", "UPDATE subscriptions SET status = 'f' /*occ:force*/ WHERE id = 1 AND version = 3",
     "UPDATE subscriptions SET version = occ.forced(subscriptions.version, to_jsonb(subscriptions.*), @sub.update@), "
     "status = 'f' /*occ:force*/ WHERE id = 1 AND TRUE"},
    {"passthrough", "dba", "UPDATE subscriptions SET status = 'f' /*occ:force*/ WHERE id = 1 AND version = 3",
     "UPDATE subscriptions SET version = occ.forced(subscriptions.version, to_jsonb(subscriptions.*), @sub.update@), "
     "status = 'f' /*occ:force*/ WHERE id = 1 AND version = 3"},
    {"proxy", "dba", "/* occ:force */ UPDATE subscriptions SET status = 'f' WHERE id = 1",
     "/* occ:force */ UPDATE subscriptions SET version = occ.forced(subscriptions.version, "
     "to_jsonb(subscriptions.*), "
     "@sub.update@, subscriptions.version + 1), status = 'f' WHERE id = 1"},
    {"enforce", "dba", "UPDATE subscriptions SET version = 99 WHERE id = 1 -- occ:force",
     "UPDATE subscriptions SET version = occ.forced(subscriptions.version, to_jsonb(subscriptions.*), @sub.update@, "
     "99) WHERE id = 1 -- occ:force"},
    {"enforce", "dba", "DELETE FROM subscriptions WHERE id = 1 OR id = 2 /*occ:force*/",
     "DELETE FROM subscriptions WHERE (id = 1 OR id = 2) AND (CASE WHEN (id = 1 OR id = 2) IS NOT TRUE THEN false "
     "ELSE occ.forced(subscriptions.version, to_jsonb(subscriptions.*), @sub.delete@) IS NOT NULL END) "
     "/*occ:force*/"},
    {"enforce", "dba", "DELETE FROM subscriptions /*occ:force*/",
     "DELETE FROM subscriptions WHERE occ.forced(subscriptions.version, to_jsonb(subscriptions.*), @sub.delete@) IS "
     "NOT NULL /*occ:force*/"},
    {"enforce", "bob", "SELECT 1; UPDATE subscriptions SET status = 'f' /*occ:force*/ WHERE id = 1; SELECT 2",
     "SELECT 1; SELECT occ.reject('42501', 'occ: role \"bob\" may not force writes to public.subscriptions', 'Only "
     "roles listed in force.allowed_roles may override the version check; nothing was written.', 'Remove the "
     "/*occ:force*/ comment to write with the version check.', 'public', 'subscriptions'); SELECT 2"},
    {"enforce", "bob", "SELECT 'occ:force'; UPDATE subscriptions SET status = 'x' WHERE id = 1", ""},

    // INSERT ... ON CONFLICT ... DO UPDATE.
    {"enforce", "app",
     "INSERT INTO subscriptions AS s (id, status) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET status = "
     "excluded.status WHERE s.version = 3 RETURNING *",
     "INSERT INTO subscriptions AS s (id, status) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET version "
     "= CASE WHEN s.version = 3 THEN s.version WHEN occ.written_here(s.xmin, s.version) THEN s.version "
     "ELSE occ.conflict(s.version, 3, s.version, to_jsonb(s.*), @sub.update@) END, status = "
     "excluded.status WHERE TRUE RETURNING *"},
    {"proxy", "app",
     "INSERT INTO subscriptions (id, status) VALUES (1, 'x') ON CONFLICT (id) WHERE status <> 'y' DO UPDATE SET "
     "status = excluded.status",
     "INSERT INTO subscriptions (id, status) VALUES (1, 'x') ON CONFLICT (id) WHERE status <> 'y' DO UPDATE SET "
     "version = subscriptions.version + 1, status = excluded.status"},

    // MERGE: each WHEN MATCHED action.
    {"enforce", "app",
     "MERGE INTO subscriptions t USING staging s ON t.id = s.id WHEN MATCHED AND t.version = 3 AND s.gone THEN "
     "DELETE "
     "WHEN MATCHED AND t.version = 3 THEN UPDATE SET status = CASE WHEN s.x THEN 'a' ELSE 'b' END "
     "WHEN NOT MATCHED THEN INSERT (id) VALUES (s.id)",
     "MERGE INTO subscriptions t USING staging s ON t.id = s.id WHEN MATCHED AND TRUE AND s.gone AND "
     "(CASE WHEN (TRUE AND s.gone) IS NOT TRUE THEN false WHEN t.version = 3 THEN true "
     "ELSE occ.conflict(t.version, 3, t.version, "
     "to_jsonb(t.*), @sub.delete@) IS NOT NULL END) THEN DELETE WHEN MATCHED AND TRUE THEN UPDATE SET "
     "version = CASE WHEN t.version = 3 THEN t.version WHEN occ.written_here(t.xmin, t.version) THEN "
     "t.version ELSE occ.conflict(t.version, 3, t.version, to_jsonb(t.*), @sub.update@) END, status = "
     "CASE WHEN s.x THEN 'a' ELSE 'b' END WHEN NOT MATCHED THEN INSERT (id) VALUES (s.id)"},
    {"proxy", "app",
     "MERGE INTO subscriptions USING staging s ON subscriptions.id = s.id WHEN MATCHED THEN UPDATE SET "
     "status = s.status",
     "MERGE INTO subscriptions USING staging s ON subscriptions.id = s.id WHEN MATCHED THEN UPDATE SET version = "
     "subscriptions.version + 1, status = s.status"},
    {"enforce", "dba",
     "MERGE INTO subscriptions t USING staging s ON t.id = s.id WHEN MATCHED THEN DELETE -- occ:force",
     "MERGE INTO subscriptions t USING staging s ON t.id = s.id WHEN MATCHED AND (occ.forced(t.version, "
     "to_jsonb(t.*), @sub.delete@) IS NOT NULL) THEN DELETE -- occ:force"},

    // Forms the rewriter cannot handle: on_unsupported decides.
    {"enforce", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 1 AND (version = 3 OR version = 4)", ""},
    {"enforce", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 1 AND version = other_version", ""},
    {"enforce", "app", "UPDATE subscriptions SET (status, version) = ('x', 4) WHERE id = 1 AND version = 3", ""},
    {"enforce", "app", "UPDATE subscriptions SET version = DEFAULT WHERE id = 1 AND version = 3", ""},
    {"enforce", "dba", "DELETE FROM subscriptions WHERE CURRENT OF c /*occ:force*/", ""},
    {"enforce", "dba", "UPDATE subscriptions SET status = 'f' WHERE (version = 1 OR version = 2) /*occ:force*/", ""},
    {"enforce", "app",
     "MERGE INTO subscriptions t USING staging s ON t.id = s.id AND t.version = s.v WHEN MATCHED "
     "THEN UPDATE SET status = 'x'",
     ""},
    {"reject", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 1 AND NOT version = 3;",
     "SELECT occ.reject('0A000', 'occ: unsupported write on public.subscriptions: a version condition other than "
     "one top-level `version = constant or parameter` conjunct', 'The proxy cannot add its version check to this "
     "form of statement and on_unsupported is reject for this table; nothing was written.', 'Rewrite the statement "
     "in a supported form, or set on_unsupported: passthrough for this table.', 'public', 'subscriptions');"},
};

bool parses(const std::string& sql) {
  PgQueryParseResult result = pg_query_parse(sql.c_str());
  const bool ok = result.error == nullptr;
  pg_query_free_parse_result(result);
  return ok;
}

}  // namespace

TEST_CASE("statements are rewritten exactly, or forwarded byte for byte", "[rewrite]") {
  for (const Row& row : rewrite_rows) {
    INFO(row.variant << " / " << row.user << ": " << row.sql);
    Session s(row.variant);
    s.user = row.user;
    const occ::Rewrite r = s.rewrite(row.sql);
    const std::string expected = *row.expected ? expand(row.variant, row.expected) : std::string(row.sql);
    CHECK(sent(r, row.sql) == expected);
    CHECK((r.action == occ::Rewrite::Action::rewrite) == (*row.expected != '\0'));
    if (parses(row.sql)) CHECK(parses(sent(r, row.sql)));
  }
}

namespace {

// Rewrites 3000 random manglings (a piece cut out or repeated) of the rows' statements: none may
// crash the rewriter, and each that parses and is rewritten must still parse. How many were rewritten.
template <typename Rows>
int rewrite_mangled(const Rows& rows, std::uint32_t seed, const occ::ReadSetLookup* reads) {
  std::map<std::string, Session> sessions;
  std::mt19937 random(seed);
  int rewritten = 0;
  for (int i = 0; i < 3000; ++i) {
    const auto& row = rows[random() % std::size(rows)];
    std::string sql = row.sql;
    const std::size_t at = random() % (sql.size() + 1);
    const std::size_t length = random() % 12;
    if (random() % 2 == 0)
      sql.erase(at, length);
    else
      sql.insert(at, sql.substr(random() % (sql.size() + 1), length));
    INFO(row.variant << " / " << row.user << ": " << sql);
    Session& s = sessions.try_emplace(row.variant, row.variant).first->second;
    s.user = row.user;
    s.reads = reads;
    const occ::Rewrite r = s.rewrite(sql);
    if (r.action == occ::Rewrite::Action::rewrite && parses(sql)) {
      CHECK(parses(r.sql));
      ++rewritten;
    }
  }
  return rewritten;
}

}  // namespace

TEST_CASE("mangled statements never crash the rewriter, and what it rewrites still parses", "[rewrite]") {
  CHECK(rewrite_mangled(rewrite_rows, 20261125, nullptr) > 300);
}

TEST_CASE("unparsable SQL is forwarded unchanged and flagged", "[rewrite]") {
  Session s("enforce");
  const occ::Rewrite r = s.rewrite("UPDATE subscriptions SET WHERE id = 1");
  CHECK(r.action == occ::Rewrite::Action::forward);
  CHECK(r.parse_failed);
  CHECK(r.writes.empty());
}

TEST_CASE("unsupported forms are counted when passed through and refused under reject", "[rewrite]") {
  const std::string sql =
      "UPDATE subscriptions SET status = 'x' WHERE CURRENT OF c /*occ:force*/; "
      "DELETE FROM subscriptions WHERE CURRENT OF c /*occ:force*/";
  Session pass("enforce");
  pass.user = "dba";
  const occ::Rewrite passed = pass.rewrite(sql);
  CHECK(passed.unsupported_passed == 1);
  CHECK(passed.action == occ::Rewrite::Action::rewrite);
  CHECK(passed.writes.size() == 1);

  Session refuse("reject");
  refuse.user = "dba";
  const occ::Rewrite refused = refuse.rewrite("DELETE FROM subscriptions WHERE CURRENT OF c /*occ:force*/", true);
  CHECK(refused.action == occ::Rewrite::Action::reject);
  CHECK(refused.unsupported_passed == 0);
  REQUIRE(refused.rejection);
  CHECK(refused.rejection->sqlstate == "0A000");
  CHECK(refused.rejection->message == "occ: unsupported write on public.subscriptions: DELETE ... WHERE CURRENT OF");
  CHECK(refused.rejection->schema == "public");
  CHECK(refused.rejection->table == "subscriptions");

  // In the simple protocol the server raises it; the first refusal is still reported.
  const occ::Rewrite simple = refuse.rewrite("DELETE FROM subscriptions WHERE CURRENT OF c /*occ:force*/; SELECT 1");
  CHECK(simple.action == occ::Rewrite::Action::rewrite);
  CHECK(simple.sql.starts_with("SELECT occ.reject('0A000', 'occ: unsupported write on public.subscriptions: DELETE "));
  CHECK(simple.sql.ends_with("'public', 'subscriptions'); SELECT 1"));
  REQUIRE(simple.rejection);
  CHECK(simple.rejection->message == refused.rejection->message);
}

TEST_CASE("a force hint from a role not allowed is refused in the extended protocol", "[rewrite]") {
  Session s("enforce");
  s.user = "bob";
  const occ::Rewrite r = s.rewrite("UPDATE subscriptions SET status = $1 WHERE id = $2 /*occ:force*/", true);
  CHECK(r.action == occ::Rewrite::Action::reject);
  CHECK(r.sql.empty());
  CHECK(r.writes.empty());
  REQUIRE(r.rejection);
  CHECK(r.rejection->sqlstate == "42501");
  CHECK(r.rejection->message == "occ: role \"bob\" may not force writes to public.subscriptions");
  CHECK(r.rejection->detail ==
        "Only roles listed in force.allowed_roles may override the version check; nothing was written.");
  CHECK(r.rejection->hint == "Remove the /*occ:force*/ comment to write with the version check.");
  CHECK(r.rejection->schema == "public");
  CHECK(r.rejection->table == "subscriptions");
}

TEST_CASE("each checked or forced write is described for the audit", "[rewrite]") {
  Session s("enforce");
  s.user = "dba";
  const occ::Rewrite r = s.rewrite(
      "UPDATE subscriptions SET status = $1, (notes, plan) = (upper($2), 'p''1') WHERE id = $3 AND version = $4; "
      "UPDATE subscriptions SET status = 'x' WHERE id = 1; "
      "DELETE FROM subscriptions WHERE id = 9 /*occ:force*/");
  REQUIRE(r.writes.size() == 2);
  CHECK(r.writes[0].table == s.rules.find("public", "subscriptions"));
  CHECK_FALSE(r.writes[0].forced);
  using Assigned = std::vector<std::pair<std::string, std::string>>;
  CHECK(r.writes[0].assigned == Assigned{{"status", "$1"}, {"notes", "upper($2)"}, {"plan", "'p''1'"}});
  CHECK(r.writes[0].fingerprint.size() == 16);
  CHECK(r.writes[1].forced);
  CHECK(r.writes[1].assigned.empty());
  CHECK(r.writes[0].fingerprint != r.writes[1].fingerprint);

  // The fingerprint ignores constants: the same statement shape gets the same one.
  const occ::Rewrite again = s.rewrite(
      "UPDATE subscriptions SET status = $1, (notes, plan) = (upper($2), 'other') "
      "WHERE id = $3 AND version = $4");
  REQUIRE(again.writes.size() == 1);
  CHECK(again.writes[0].fingerprint == r.writes[0].fingerprint);
}

TEST_CASE("search_path changes are reported as written", "[rewrite]") {
  using Path = std::optional<std::vector<std::string>>;
  struct Row {
    const char* sql;
    Path expected;
  };
  const Row rows[] = {
      {"SET search_path TO billing, \"$user\", 'My Schema'", std::vector<std::string>{"billing", "$user", "My Schema"}},
      {"set search_path = Public", std::vector<std::string>{"public"}},
      {"SET SESSION search_path TO \"Billing\"", std::vector<std::string>{"Billing"}},
      {"SET LOCAL search_path TO billing", std::vector<std::string>{"billing"}},
      {"SET search_path TO DEFAULT", std::nullopt},
      {"RESET search_path", std::nullopt},
      {"RESET ALL", std::nullopt},
      {"DISCARD ALL", std::nullopt},
      {"SET search_path TO a; SELECT 1; SET search_path TO b", std::vector<std::string>{"b"}},
  };
  for (const Row& row : rows) {
    INFO(row.sql);
    Session s("enforce");
    const occ::Rewrite r = s.rewrite(row.sql);
    CHECK(r.action == occ::Rewrite::Action::forward);
    REQUIRE(r.search_path_change);
    CHECK(*r.search_path_change == row.expected);
  }
  Session s("enforce");
  for (const char* sql : {"SELECT set_config('search_path', 'billing', false)", "SET statement_timeout = 0",
                          "DISCARD PLANS", "SHOW search_path"}) {
    INFO(sql);
    CHECK_FALSE(s.rewrite(sql).search_path_change);
  }
}

TEST_CASE("unqualified names resolve through the session's search_path", "[rewrite]") {
  const std::string sql = "UPDATE invoices SET total = 1 WHERE id = 1 AND line = 1 AND version = 2";
  Session s("enforce");
  s.search_path = {"billing", "public"};
  const occ::Rewrite r = s.rewrite(sql);
  REQUIRE(r.writes.size() == 1);
  CHECK(r.writes[0].table == s.rules.find("billing", "invoices"));

  // With the catalog loaded, a relation of that name earlier in the path shadows the protected one.
  Session shadowed("enforce");
  shadowed.search_path = {"app", "billing"};
  shadowed.relations.loaded = true;
  shadowed.relations.schemas_by_name["invoices"] = {"app", "billing"};
  CHECK(shadowed.rewrite(sql).action == occ::Rewrite::Action::forward);
  shadowed.search_path = {"billing", "app"};
  CHECK(shadowed.rewrite(sql).action == occ::Rewrite::Action::rewrite);
}

TEST_CASE("the pre-filter passes texts naming a protected table, search_path or a session command", "[rewrite]") {
  const occ::Rules rules = rules_for("enforce");
  struct Row {
    const char* sql;
    bool expected;
  };
  const Row rows[] = {
      {"UPDATE subscriptions SET a = 1", true},
      {"update SUBSCRIPTIONS set a = 1", true},
      {"update public.\"subscriptions\" set a = 1", true},
      {"update \"Weird\".\"Name\" set a = 1", true},
      {"update \"a$occ$b\" set a = 1", true},
      {"update U&\"\\0061bc\" set a = 1", true},
      {"SET search_path TO x", true},
      {"DISCARD ALL", true},
      {"RESET ALL", true},
      {"SAVEPOINT a", true},
      {"release a", true},
      {"ROLLBACK TO SAVEPOINT a", true},
      {"rollback to a", true},
      {"SELECT rollback_id FROM x", false},
      {"SELECT 1", false},
      {"UPDATE subscriptions_archive SET a = 1", false},
      {"UPDATE my_subscriptions SET a = 1", false},
      {"UPDATE \"Subscriptions\" SET a = 1", false},
      {"UPDATE name SET a = 1", false},
      {"UPDATE \"Name\" SET a = 1", true},
      // A double quote inside a literal or comment does not open a quoted name.
      {"SELECT '\"'; UPDATE subscriptions SET a = 1", true},
      {"SELECT E'\\'\"'; UPDATE subscriptions SET a = 1", true},
      {"SELECT $$\"$$; UPDATE subscriptions SET a = 1", true},
      {"SELECT $x$\"$x$; UPDATE \"subscriptions\" SET a = 1", true},
      {"SELECT 1 -- \"\nUPDATE subscriptions SET a = 1", true},
      {"SELECT 1 /* \" /* \" */ */ UPDATE subscriptions SET a = 1", true},
      {"SELECT $1, '\"' AS \"x\"", false},
      {"", false},
  };
  for (const Row& row : rows) {
    INFO(row.sql);
    CHECK(occ::may_need_rewrite(row.sql, rules) == row.expected);
  }
}

namespace {

// Placeholders of the read-tracking rows, for a target named `ref` whose key is `keys`
// (comma-separated, default id): %M% the fake map, %E:ref[:keys[:type]]% the expected version
// looked up in it, %B:ref[:keys]% the read row, %V[:type]% and %VB% the version and read of row 7 as
// literals (the read goes in the meta, `@sub.update+read@`, unless the table redacts columns), %S:ref[:keys]% the columns appended to a SELECT,
// %R:ref[:keys]% those appended to a RETURNING list.
std::string expand_reads(const std::string& variant, std::string text) {
  const std::string map = R"($occ${"7":{"v":"3","b":{"status":"a"}}}$occ$::jsonb)";
  for (std::size_t at = text.find('%'); at != std::string::npos; at = text.find('%', at)) {
    const std::size_t end = text.find('%', at + 1);
    std::vector<std::string> parts;
    const std::string inner = text.substr(at + 1, end - at - 1);
    for (std::size_t from = 0; from <= inner.size();) {
      const std::size_t colon = std::min(inner.find(':', from), inner.size());
      parts.push_back(inner.substr(from, colon - from));
      from = colon + 1;
    }
    if (parts[0] == "V" || parts[0] == "VB") {
      const std::string out =
          parts[0] == "VB" ? R"($occ${"status":"a"}$occ$::text)" : "'3'::" + (parts.size() > 1 ? parts[1] : "bigint");
      text.replace(at, end - at + 1, out);
      at += out.size();
      continue;
    }
    std::vector<std::string> keys;
    const std::string key_list = parts.size() > 2 ? parts[2] : "id";
    for (std::size_t from = 0; from <= key_list.size();) {
      const std::size_t comma = std::min(key_list.find(',', from), key_list.size());
      keys.push_back(parts[1] + "." + key_list.substr(from, comma - from));
      from = comma + 1;
    }
    std::string lookup;
    for (const std::string& k : keys) lookup += "(" + k + ")::text, ";
    std::string out;
    if (parts[0] == "M") {
      out = map;
    } else if (parts[0] == "E") {
      out = "(" + map + " #>> ARRAY[" + lookup + "'v'])::" + (parts.size() > 3 ? parts[3] : "bigint");
    } else if (parts[0] == "B") {
      out = map + " #> ARRAY[" + lookup + "'b']";
    } else if (parts[0] == "S") {
      for (const std::string& k : keys) out += "(" + k + R"()::text AS "occ:key", )";
      out += "(" + parts[1] + R"(.version)::text AS "occ:version")";
    } else if (parts[0] == "R") {
      out = lookup + "(" + parts[1] + ".version)::text";
    }
    text.replace(at, end - at + 1, out);
    at += out.size();
  }
  return expand(variant, text);
}

// "tables/added[ drop][ deleted]", "table/in place" or "command name" per statement, "; " between statements.
std::string effects_text(const occ::Rewrite& r) {
  static const char* const commands[] = {"-", "savepoint", "release", "rollback_to", "discard_all", "reset_all"};
  std::string out;
  for (const occ::StatementEffect& e : r.effects) {
    if (!out.empty()) out += "; ";
    if (e.tracking.tracked()) {
      for (std::size_t i = 0; i < e.tracking.tables.size(); ++i)
        out += (i > 0 ? "," : "") + e.tracking.tables[i]->qualified_name();
      out += e.tracking.in_place ? std::string("/in place") : "/" + std::to_string(e.tracking.added_columns);
      if (e.tracking.drop_result) out += " drop";
      if (e.tracking.rows_deleted) out += " deleted";
    }
    if (e.row_write) {
      // The row a checked write names: the session learns its new version from the command tag.
      out += e.row_write->table->qualified_name() + (e.row_write->deletes ? " deletes" : " writes");
      if (!e.row_write->key.empty()) out += " [" + e.row_write->key.front() + "] read at " + e.row_write->version;
      if (e.row_write->version_param != 0) out += " $" + std::to_string(e.row_write->version_param);
    }
    if (!e.tracking.tracked() && !e.row_write) {
      out += commands[static_cast<int>(e.command)];
      if (!e.savepoint.empty()) out += " " + e.savepoint;
    }
    static const char* const named[] = {"", "declare", "fetch", "close", "prepare", "execute", "deallocate"};
    if (e.named != occ::NamedResult::none) out += std::string(" ") + named[static_cast<int>(e.named)] + " " + e.result_name;
    if (!e.shadow_for.empty()) out += " for " + e.shadow_for;
    if (e.hidden) out += " (added)";
  }
  return out.empty() ? "-" : out;
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : "; ") + item;
  return out;
}

struct ReadRow {
  const char* variant;
  const char* user;
  const char* sql;
  const char* expected;  // "" means forwarded unchanged
  const char* effects;   // effects_text, "-" for none
  const char* asked;     // the read set lookups, "; " between them
};

const ReadRow read_rows[] = {
    // A top-level SELECT on protected tables: each row carries every table's key and version.
    {"passthrough", "app", "SELECT id, status FROM subscriptions WHERE id = 1",
     "SELECT id, status, %S:subscriptions% FROM subscriptions WHERE id = 1", "public.subscriptions/2", ""},
    {"passthrough", "app",
     "SELECT * FROM subscriptions s JOIN billing.invoices i ON i.id = s.id ORDER BY id FOR UPDATE",
     "SELECT *, %S:s%, %S:i:id,line% FROM subscriptions s JOIN billing.invoices i ON i.id = s.id ORDER BY id FOR "
     "UPDATE",
     "public.subscriptions,billing.invoices/5", ""},
    {"passthrough", "app", "select notes /* why */ from public.subscriptions left join other using (id) limit 3",
     "select notes, %S:public.subscriptions% /* why */ from public.subscriptions left join other using (id) limit 3",
     "public.subscriptions/2", ""},
    {"passthrough", "app",
     "WITH x AS (SELECT count(*) FROM subscriptions) SELECT x.count, 1 AS from FROM x, subscriptions",
     "WITH x AS (SELECT count(*) FROM subscriptions) SELECT x.count, 1 AS from, %S:subscriptions% FROM x, "
     "subscriptions",
     "public.subscriptions/2", ""},
    {"passthrough", "app", "(SELECT a IS DISTINCT FROM b, t.from FROM subscriptions t)",
     "(SELECT a IS DISTINCT FROM b, t.from, %S:t% FROM subscriptions t)", "public.subscriptions/2", ""},
    {"passthrough", "app", R"(SELECT * FROM "Weird"."Name", quoted)",
     R"(SELECT *, ("Weird"."Name"."Key")::text AS "occ:key", ("Weird"."Name"."Ver")::text AS "occ:version", )"
     R"((quoted."we""ird")::text AS "occ:key", (quoted.version)::text AS "occ:version" FROM "Weird"."Name", quoted)",
     "Weird.Name,public.quoted/4", ""},
    // `*` over one table: its key and version are among the columns already (simple protocol).
    {"passthrough", "app", "SELECT * FROM subscriptions WHERE id = 7", "", "public.subscriptions/in place", ""},
    {"passthrough", "app", "SELECT s.*, now() FROM public.subscriptions AS s ORDER BY 1 FOR UPDATE", "",
     "public.subscriptions/in place", ""},
    {"passthrough", "app", "SELECT * FROM subscriptions, other",
     "SELECT *, %S:subscriptions% FROM subscriptions, other", "public.subscriptions/2", ""},
    {"passthrough", "app", "SELECT other.* FROM subscriptions JOIN other USING (id)",
     "SELECT other.*, %S:subscriptions% FROM subscriptions JOIN other USING (id)", "public.subscriptions/2", ""},
    // Not the table, or not its rows.
    {"passthrough", "app", "WITH subscriptions AS (SELECT 1 AS id) SELECT * FROM subscriptions", "", "-", ""},
    // An aliased join hides the names, but the server still tells each column's table: in place.
    {"passthrough", "app", "SELECT * FROM (subscriptions s JOIN other o USING (id)) AS j", "",
     "public.subscriptions/in place", ""},
    {"passthrough", "app", "WITH s AS (SELECT * FROM subscriptions WHERE id = 42) SELECT * FROM s", "",
     "public.subscriptions/in place", ""},
    {"passthrough", "app", "SELECT * FROM other WHERE id IN (SELECT id FROM subscriptions)", "", "-", ""},
    {"passthrough", "app", "EXPLAIN SELECT * FROM subscriptions", "", "-", ""},
    {"passthrough", "app", "SELECT * FROM invoices", "", "-", ""},

    // Writes check each row against the read set. A write pinned to one key compares with that
    // row's version as a literal (%V%) and carries its read in the meta; any other looks each row up
    // in a map.
    {"passthrough", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 7",
     "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = %V% THEN subscriptions.version "
     "WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
     "occ.conflict(subscriptions.version, %V%, subscriptions.version, to_jsonb(subscriptions.*), "
     "@sub.update+read@) END, status = 'x' WHERE id = 7",
     "public.subscriptions writes [7] read at 3", "public.subscriptions [7]"},
    // The command tag cannot tell the new version when a key column moves the row, when shadow
    // mode lets a stale write through, or when the version is no counter: RETURNING reports it.
    {"passthrough", "app", "UPDATE subscriptions SET id = 9 WHERE id = 7",
     "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = %V% THEN subscriptions.version "
     "WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
     "occ.conflict(subscriptions.version, %V%, subscriptions.version, to_jsonb(subscriptions.*), "
     "@sub.update+read@) END, id = 9 WHERE id = 7 RETURNING %R:subscriptions%",
     "public.subscriptions/2 drop", "public.subscriptions [7]"},
    {"shadow", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 7",
     "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = %V% THEN subscriptions.version "
     "WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
     "occ.conflict(subscriptions.version, %V%, subscriptions.version, to_jsonb(subscriptions.*), "
     "@sub.update+read@) END, status = 'x' WHERE id = 7 RETURNING %R:subscriptions%",
     "public.subscriptions/2 drop", "public.subscriptions [7]"},
    {"passthrough", "app", "DELETE FROM subscriptions WHERE id = 7",
     "DELETE FROM subscriptions WHERE id = 7 AND (CASE WHEN (id = 7) IS NOT TRUE THEN false WHEN "
     "subscriptions.version = %V% THEN true WHEN occ.written_here(subscriptions.xmin, "
     "subscriptions.version) THEN true ELSE occ.conflict(subscriptions.version, %V%, "
     "subscriptions.version, to_jsonb(subscriptions.*), @sub.delete+read@) IS NOT NULL END)",
     "public.subscriptions deletes [7] read at 3", "public.subscriptions [7]"},
    // Redacted columns may have been read under older rules: occ.conflict leaves them out of the read.
    {"redact", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 7",
     "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = %V% THEN subscriptions.version "
     "WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
     "occ.conflict(subscriptions.version, %V%, subscriptions.version, to_jsonb(subscriptions.*), "
     "@sub.update@, %VB%) END, status = 'x' WHERE id = 7",
     "public.subscriptions writes [7] read at 3", "public.subscriptions [7]"},
    // allow: a row never read is written as usual.
    {"passthrough", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 8",
     "UPDATE subscriptions SET status = 'x' WHERE id = 8 RETURNING %R:subscriptions%", "public.subscriptions/2 drop",
     "public.subscriptions [8]"},
    {"passthrough", "app",
     "UPDATE subscriptions s SET status = 'x' WHERE s.plan = 1 OR s.id = 7 RETURNING s.status -- end",
     "UPDATE subscriptions s SET version = CASE WHEN s.version = %E:s% THEN s.version WHEN %E:s% IS NULL "
     "THEN s.version WHEN occ.written_here(s.xmin, s.version) THEN s.version ELSE occ.conflict(s.version, "
     "%E:s%, s.version, to_jsonb(s.*), @sub.update@, %B:s%) END, status = 'x' WHERE s.plan = 1 OR s.id = "
     "7 RETURNING s.status, %R:s% -- end",
     "public.subscriptions/2", "public.subscriptions"},
    {"passthrough", "app", "UPDATE billing.invoices SET total = 1 WHERE id IN (1, -2) AND line = '3' AND 4 = line",
     "UPDATE billing.invoices SET version = CASE WHEN invoices.version = %E:invoices:id,line% THEN "
     "invoices.version WHEN %E:invoices:id,line% IS NULL THEN invoices.version WHEN "
     "occ.written_here(invoices.xmin, invoices.version) THEN invoices.version ELSE occ.conflict(invoices.version, "
     "%E:invoices:id,line%, invoices.version, to_jsonb(invoices.*), @inv.update@, %B:invoices:id,line%) "
     "END, total = 1 WHERE id IN (1, -2) AND line = '3' AND 4 = line RETURNING %R:invoices:id,line%",
     "billing.invoices/3 drop", "billing.invoices [1|3] [-2|3]"},
    {"passthrough", "app", "DELETE FROM subscriptions WHERE id = 7 RETURNING *",
     "DELETE FROM subscriptions WHERE id = 7 AND (CASE WHEN (id = 7) IS NOT TRUE THEN false WHEN "
     "subscriptions.version = %V% THEN true WHEN occ.written_here(subscriptions.xmin, "
     "subscriptions.version) THEN true ELSE occ.conflict(subscriptions.version, %V%, "
     "subscriptions.version, to_jsonb(subscriptions.*), @sub.delete+read@) IS NOT NULL END) RETURNING *, "
     "%R:subscriptions%",
     "public.subscriptions/2 deleted", "public.subscriptions [7]"},
    {"passthrough", "app", "DELETE FROM subscriptions WHERE id = 8",
     "DELETE FROM subscriptions WHERE id = 8 RETURNING %R:subscriptions%", "public.subscriptions/2 drop deleted",
     "public.subscriptions [8]"},
    {"passthrough", "app", "DELETE FROM subscriptions",
     "DELETE FROM subscriptions WHERE CASE WHEN subscriptions.version = %E:subscriptions% THEN true WHEN "
     "%E:subscriptions% IS NULL THEN true WHEN occ.written_here(subscriptions.xmin, "
     "subscriptions.version) THEN true ELSE occ.conflict(subscriptions.version, %E:subscriptions%, "
     "subscriptions.version, to_jsonb(subscriptions.*), @sub.delete@, %B:subscriptions%) IS NOT NULL END "
     "RETURNING %R:subscriptions%",
     "public.subscriptions/2 drop deleted", "public.subscriptions"},
    // reject: a row never read is refused by the server session.
    {"unknown-reject", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 8",
     "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = NULL::bigint THEN "
     "subscriptions.version WHEN NULL::bigint IS NULL THEN CASE WHEN occ.written_here(subscriptions.xmin, "
     "subscriptions.version) THEN subscriptions.version ELSE occ.unknown_version(subscriptions.version, "
     "subscriptions.version, to_jsonb(subscriptions.*), @sub.update@) END WHEN "
     "occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
     "occ.conflict(subscriptions.version, NULL::bigint, subscriptions.version, to_jsonb(subscriptions.*), "
     "@sub.update@) END, status = 'x' WHERE id = 8 RETURNING %R:subscriptions%",
     "public.subscriptions/2 drop", "public.subscriptions [8]"},
    {"unknown-reject", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 7",
     "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = %V% THEN subscriptions.version "
     "WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
     "occ.conflict(subscriptions.version, %V%, subscriptions.version, to_jsonb(subscriptions.*), "
     "@sub.update+read@) END, status = 'x' WHERE id = 7",
     "public.subscriptions writes [7] read at 3", "public.subscriptions [7]"},
    {"unknown-reject", "app", "DELETE FROM subscriptions WHERE status = 'x'",
     "DELETE FROM subscriptions WHERE status = 'x' AND (CASE WHEN (status = 'x') IS NOT TRUE THEN false "
     "WHEN subscriptions.version = %E:subscriptions% THEN true WHEN %E:subscriptions% IS NULL THEN CASE "
     "WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
     "occ.unknown_version(subscriptions.version, subscriptions.version, to_jsonb(subscriptions.*), "
     "@sub.delete@) END IS NOT NULL WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN "
     "true ELSE occ.conflict(subscriptions.version, %E:subscriptions%, subscriptions.version, "
     "to_jsonb(subscriptions.*), @sub.delete@, %B:subscriptions%) IS NOT NULL END) RETURNING "
     "%R:subscriptions%",
     "public.subscriptions/2 drop deleted", "public.subscriptions"},
    {"proxy-passthrough", "app", "UPDATE subscriptions SET status = 'x' WHERE 7 = id",
     "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = %V% THEN subscriptions.version "
     "+ 1 WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version + 1 "
     "ELSE occ.conflict(subscriptions.version, %V%, subscriptions.version + 1, to_jsonb(subscriptions.*), "
     "@sub.update+read@) END, status = 'x' WHERE 7 = id",
     "public.subscriptions writes [7] read at 3", "public.subscriptions [7]"},
    {"proxy-passthrough", "app", "UPDATE subscriptions SET status = 'x' WHERE 8 = id",
     "UPDATE subscriptions SET version = subscriptions.version + 1, status = 'x' WHERE 8 = id RETURNING "
     "%R:subscriptions%",
     "public.subscriptions/2 drop", "public.subscriptions [8]"},
    {"uuid-passthrough", "app", "UPDATE subscriptions SET status = 'x' WHERE id = '7'::int",
     "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = %V:uuid% THEN "
     "subscriptions.version WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN "
     "subscriptions.version ELSE occ.conflict(subscriptions.version, %V:uuid%, subscriptions.version, "
     "to_jsonb(subscriptions.*), @sub.update+read@) END, status = 'x' WHERE id = '7'::int RETURNING "
     "%R:subscriptions%",
     "public.subscriptions/2 drop", "public.subscriptions [7]"},
    // The statement's own version (enforce) is checked; the read still gives the conflict its base.
    {"enforce", "app", "UPDATE subscriptions SET status = 'x' WHERE id = 7 AND version = 3",
     "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = 3 THEN subscriptions.version "
     "WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
     "occ.conflict(subscriptions.version, 3, subscriptions.version, to_jsonb(subscriptions.*), "
     "@sub.update+read@) END, status = 'x' WHERE id = 7 AND TRUE RETURNING %R:subscriptions%",
     "public.subscriptions/2 drop", "public.subscriptions [7]"},
    // The app's own check (passthrough) and a force are not checked, but refresh the read set.
    {"passthrough", "app", "UPDATE subscriptions SET version = version + 1 WHERE id = 7 AND version = 3",
     "UPDATE subscriptions SET version = version + 1 WHERE id = 7 AND version = 3 RETURNING %R:subscriptions%",
     "public.subscriptions/2 drop", ""},
    {"enforce", "dba", "UPDATE subscriptions SET status = 'f' WHERE id = 7 /*occ:force*/",
     "UPDATE subscriptions SET version = occ.forced(subscriptions.version, to_jsonb(subscriptions.*), @sub.update@), "
     "status = 'f' WHERE id = 7 RETURNING %R:subscriptions% /*occ:force*/",
     "public.subscriptions/2 drop", ""},
    {"no-deletes", "app", "DELETE FROM subscriptions WHERE id = 1;",
     "DELETE FROM subscriptions WHERE id = 1 RETURNING %R:subscriptions%;", "public.subscriptions/2 drop deleted", ""},
    // Upserts: the VALUES pin the rows when the conflict is on the key.
    {"passthrough", "app",
     "INSERT INTO subscriptions AS s (id, status) VALUES (7, 'x'), (8, 'y') ON CONFLICT (id) DO UPDATE SET status = "
     "excluded.status",
     "INSERT INTO subscriptions AS s (id, status) VALUES (7, 'x'), (8, 'y') ON CONFLICT (id) DO UPDATE "
     "SET version = CASE WHEN s.version = %E:s% THEN s.version WHEN %E:s% IS NULL THEN s.version WHEN "
     "occ.written_here(s.xmin, s.version) THEN s.version ELSE occ.conflict(s.version, %E:s%, s.version, "
     "to_jsonb(s.*), @sub.update@, %B:s%) END, status = excluded.status RETURNING %R:s%",
     "public.subscriptions/2 drop", "public.subscriptions [7] [8]"},
    {"passthrough", "app",
     "INSERT INTO subscriptions (id, status) VALUES (7, 'x') ON CONFLICT (status) DO UPDATE SET notes = 'n' "
     "RETURNING id",
     "INSERT INTO subscriptions (id, status) VALUES (7, 'x') ON CONFLICT (status) DO UPDATE SET version = "
     "CASE WHEN subscriptions.version = %E:subscriptions% THEN subscriptions.version WHEN "
     "%E:subscriptions% IS NULL THEN subscriptions.version WHEN occ.written_here(subscriptions.xmin, "
     "subscriptions.version) THEN subscriptions.version ELSE occ.conflict(subscriptions.version, "
     "%E:subscriptions%, subscriptions.version, to_jsonb(subscriptions.*), @sub.update@, "
     "%B:subscriptions%) END, notes = 'n' RETURNING id, %R:subscriptions%",
     "public.subscriptions/2", "public.subscriptions"},
    // Rows the session inserts are rows it knows.
    {"passthrough", "app", "INSERT INTO subscriptions (id, status) VALUES (7, 'x')",
     "INSERT INTO subscriptions (id, status) VALUES (7, 'x') RETURNING %R:subscriptions%",
     "public.subscriptions/2 drop", ""},
    {"passthrough", "app",
     "insert into billing.invoices as i select * from staging on conflict do nothing returning i.total /* c */",
     "insert into billing.invoices as i select * from staging on conflict do nothing returning i.total, "
     "%R:i:id,line% /* c */",
     "billing.invoices/3", ""},
    {"passthrough", "app", "WITH n AS (INSERT INTO subscriptions (id) VALUES (7) RETURNING id) SELECT * FROM n", "",
     "-", ""},
    // MERGE and a writable CTE are checked, but their rows do not reach the session.
    {"passthrough", "app",
     "MERGE INTO subscriptions t USING staging s ON t.id = s.id AND t.id = 7 WHEN MATCHED THEN UPDATE SET status = "
     "s.status",
     "MERGE INTO subscriptions t USING staging s ON t.id = s.id AND t.id = 7 WHEN MATCHED THEN UPDATE SET "
     "version = CASE WHEN t.version = %V% THEN t.version WHEN occ.written_here(t.xmin, t.version) THEN "
     "t.version ELSE occ.conflict(t.version, %V%, t.version, to_jsonb(t.*), @sub.update+read@) END, "
     "status = s.status",
     "-", "public.subscriptions [7]"},
    {"passthrough", "app",
     "WITH u AS (UPDATE subscriptions SET status = 'x' WHERE id = 7 RETURNING id) SELECT * FROM u",
     "WITH u AS (UPDATE subscriptions SET version = CASE WHEN subscriptions.version = %V% THEN "
     "subscriptions.version WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN "
     "subscriptions.version ELSE occ.conflict(subscriptions.version, %V%, subscriptions.version, "
     "to_jsonb(subscriptions.*), @sub.update+read@) END, status = 'x' WHERE id = 7 RETURNING id) SELECT * "
     "FROM u",
     "-", "public.subscriptions [7]"},
    {"passthrough", "app", "EXPLAIN ANALYZE DELETE FROM subscriptions WHERE id = 7",
     "EXPLAIN ANALYZE DELETE FROM subscriptions WHERE id = 7 AND (CASE WHEN (id = 7) IS NOT TRUE THEN "
     "false WHEN subscriptions.version = %V% THEN true WHEN occ.written_here(subscriptions.xmin, "
     "subscriptions.version) THEN true ELSE occ.conflict(subscriptions.version, %V%, "
     "subscriptions.version, to_jsonb(subscriptions.*), @sub.delete+read@) IS NOT NULL END)",
     "-", "public.subscriptions [7]"},
    // A prepared write pinned to one key: each EXECUTE supplies the version and values read.
    {"passthrough", "app", "PREPARE p AS UPDATE subscriptions SET status = 'x' WHERE id = $1",
     "PREPARE p AS UPDATE subscriptions SET version = CASE WHEN subscriptions.version = $2::bigint THEN "
     "subscriptions.version WHEN $2::bigint IS NULL THEN subscriptions.version WHEN "
     "occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
     "occ.conflict(subscriptions.version, $2::bigint, subscriptions.version, to_jsonb(subscriptions.*), "
     "@sub.update@, $3::text) END, status = 'x' WHERE id = $1",
     "- prepare p", ""},
    {"passthrough", "app",
     "PREPARE p (text, int) AS UPDATE subscriptions SET status = $1 WHERE id = $2; EXECUTE p('x', 7); EXECUTE p('y', 8)",
     "PREPARE p (text, int) AS UPDATE subscriptions SET version = CASE WHEN subscriptions.version = $3::bigint THEN "
     "subscriptions.version WHEN $3::bigint IS NULL THEN subscriptions.version WHEN "
     "occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
     "occ.conflict(subscriptions.version, $3::bigint, subscriptions.version, to_jsonb(subscriptions.*), "
     "@sub.update@, $4::text) END, status = $1 WHERE id = $2; EXECUTE p('x', 7, E'3', E'{\"status\":\"a\"}'); "
     "EXECUTE p('y', 8, NULL, NULL)",
     "- prepare p; public.subscriptions writes [7] read at 3 execute p; public.subscriptions writes execute p",
     "public.subscriptions [7]; public.subscriptions [8]"},
    // A write that can touch several rows: only the version the statement names itself counts.
    {"passthrough", "app", "PREPARE q AS UPDATE subscriptions SET status = 'x' WHERE plan = $1", "", "- prepare q", ""},
    // Unsupported: forwarded as it is, nothing appended.
    {"passthrough", "app", "DELETE FROM subscriptions WHERE CURRENT OF c", "", "-", "public.subscriptions"},
    // Session commands, one effect per statement.
    {"passthrough", "app",
     "SAVEPOINT \"A b\"; UPDATE subscriptions SET status = 'x' WHERE id = 7; RELEASE SAVEPOINT \"A b\"; ROLLBACK TO "
     "A; DISCARD ALL; RESET ALL; SELECT 1",
     "SAVEPOINT \"A b\"; UPDATE subscriptions SET version = CASE WHEN subscriptions.version = %V% THEN "
     "subscriptions.version WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN "
     "subscriptions.version ELSE occ.conflict(subscriptions.version, %V%, subscriptions.version, "
     "to_jsonb(subscriptions.*), @sub.update+read@) END, status = 'x' WHERE id = 7; RELEASE SAVEPOINT \"A "
     "b\"; ROLLBACK TO A; DISCARD ALL; RESET ALL; SELECT 1",
     "savepoint A b; public.subscriptions writes [7] read at 3; release A b; rollback_to a; discard_all; reset_all; -",
     "public.subscriptions [7]"},
    {"passthrough", "app", "BEGIN; SELECT 1; COMMIT", "", "-", ""},
    // Through a view whose rows are the table's: its own columns carry the key and version, the
    // rows are noted as the table's, and a write finds its own earlier one by the table row's key.
    {"passthrough", "app", "SELECT notes FROM active_subs WHERE id = 7",
     "SELECT notes, %S:active_subs% FROM active_subs WHERE id = 7", "public.subscriptions/2", ""},
    {"passthrough", "app", "SELECT * FROM public.active_subs a WHERE id = 7", "", "public.subscriptions/in place", ""},
    {"passthrough", "app", "UPDATE active_subs SET status = 'x' WHERE id = 7",
     "UPDATE active_subs SET version = CASE WHEN active_subs.version = %V% THEN active_subs.version WHEN "
     "occ.written_here_in('public.subscriptions'::regclass, jsonb_build_object('id', active_subs.id), "
     "active_subs.version) THEN active_subs.version ELSE occ.conflict(active_subs.version, %V%, active_subs.version, "
     "to_jsonb(active_subs.*), @sub.update+read@) END, status = 'x' WHERE id = 7",
     "public.subscriptions writes [7] read at 3", "public.subscriptions [7]"},
    {"passthrough", "app", "DELETE FROM active_subs v WHERE id = 7",
     "DELETE FROM active_subs v WHERE id = 7 AND (CASE WHEN (id = 7) IS NOT TRUE THEN false WHEN v.version = %V% "
     "THEN true WHEN occ.written_here_in('public.subscriptions'::regclass, jsonb_build_object('id', v.id), "
     "v.version) THEN true ELSE occ.conflict(v.version, %V%, v.version, to_jsonb(v.*), @sub.delete+read@) IS NOT "
     "NULL END)",
     "public.subscriptions deletes [7] read at 3", "public.subscriptions [7]"},
    {"passthrough", "app", "UPDATE active_subs SET status = 'x' WHERE plan = 2",
     "UPDATE active_subs SET version = CASE WHEN active_subs.version = %E:active_subs% THEN active_subs.version "
     "WHEN %E:active_subs% IS NULL THEN active_subs.version WHEN occ.written_here_in('public.subscriptions'::regclass, "
     "jsonb_build_object('id', active_subs.id), active_subs.version) THEN active_subs.version ELSE "
     "occ.conflict(active_subs.version, %E:active_subs%, active_subs.version, to_jsonb(active_subs.*), @sub.update@, "
     "%B:active_subs%) END, status = 'x' WHERE plan = 2 RETURNING %R:active_subs%",
     "public.subscriptions/2 drop", "public.subscriptions"},
    {"passthrough", "app", "INSERT INTO active_subs (id, status) VALUES (9, 'new')",
     "INSERT INTO active_subs (id, status) VALUES (9, 'new') RETURNING %R:active_subs%", "public.subscriptions/2 drop",
     ""},
    // Named results: a cursor's query is tracked like a SELECT; FETCH, CLOSE, EXECUTE, DEALLOCATE
    // name what the session remembers; a prepared SELECT is tracked only where nothing is appended.
    {"passthrough", "app", "DECLARE \"Cur\" SCROLL CURSOR WITH HOLD FOR SELECT notes FROM subscriptions s",
     "DECLARE \"Cur\" SCROLL CURSOR WITH HOLD FOR SELECT notes, %S:s% FROM subscriptions s",
     "public.subscriptions/2 declare Cur", ""},
    {"passthrough", "app", "DECLARE c CURSOR FOR SELECT * FROM subscriptions", "", "public.subscriptions/in place declare c",
     ""},
    {"passthrough", "app", "FETCH BACKWARD 5 FROM c; MOVE NEXT IN c; CLOSE c; CLOSE ALL", "",
     "- fetch c; -; - close c; - close ", ""},
    {"passthrough", "app", "PREPARE r (int) AS SELECT * FROM subscriptions WHERE id = $1", "",
     "public.subscriptions/in place prepare r", ""},
    {"passthrough", "app", "EXECUTE r(42); DEALLOCATE r; DEALLOCATE ALL", "", "- execute r; - deallocate r; - deallocate ",
     ""},
};

}  // namespace

TEST_CASE("reads carry key and version, writes check each row against the read set", "[rewrite]") {
  for (const ReadRow& row : read_rows) {
    INFO(row.variant << " / " << row.user << ": " << row.sql);
    FakeReads reads;
    Session s(row.variant);
    s.user = row.user;
    s.reads = &reads;
    const occ::Rewrite r = s.rewrite(row.sql);
    const std::string expected = *row.expected ? expand_reads(row.variant, row.expected) : std::string(row.sql);
    CHECK(sent(r, row.sql) == expected);
    CHECK((r.action == occ::Rewrite::Action::rewrite) == (*row.expected != '\0'));
    CHECK(effects_text(r) == row.effects);
    CHECK(joined(reads.asked) == row.asked);
    CHECK(r.expected_params.empty());
    CHECK(r.untracked_reads == 0);
    if (parses(row.sql)) CHECK(parses(sent(r, row.sql)));
  }
}

namespace {

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("on_conflict: merge sends a stale UPDATE to occ.merge and keeps the other writer's columns", "[rewrite]") {
  struct MergeRow {
    const char* variant;
    const char* sql;
    bool extended;
    std::size_t merges;  // occ.merge calls: one per checked UPDATE of a merge table
    std::size_t kept;    // columns wrapped with occ.theirs_changed (enforce only)
    bool tag_notes;      // the command tag alone tells the new version (never after a merge)
  };
  const MergeRow rows[] = {
      {"merge", "UPDATE subscriptions SET notes = 'x' WHERE id = 7", false, 1, 1, false},
      {"merge", "UPDATE subscriptions SET notes = 'x', status = 'y', plan_id = 2 WHERE id = 7", false, 1, 3, false},
      {"merge", "UPDATE subscriptions SET notes = $1 WHERE id = $2", true, 1, 1, false},
      {"merge", "UPDATE subscriptions SET notes = 'x' WHERE id IN (7, 8)", false, 1, 1, false},
      {"merge", "UPDATE subscriptions SET notes = $1 WHERE status = $2", true, 1, 1, false},
      {"merge-proxy", "UPDATE subscriptions SET notes = 'x' WHERE id = 7", false, 1, 1, false},
      // shadow: the would-be merge is reported, the write goes as sent.
      {"merge-shadow", "UPDATE subscriptions SET notes = 'x' WHERE id = 7", false, 1, 0, false},
      // The statement's own version assignment is not a column to keep.
      {"merge", "UPDATE subscriptions SET notes = 'x', version = version + 1 WHERE id = 7", false, 1, 1, false},
      // Whole-row check: DELETE, an upsert, a row-wise or subscripted SET, a forced write.
      {"merge", "DELETE FROM subscriptions WHERE id = 7", false, 0, 0, true},
      {"merge", "INSERT INTO subscriptions (id, notes) VALUES (7, 'x') ON CONFLICT (id) DO UPDATE SET notes = 'x'",
       false, 0, 0, false},
      {"merge", "UPDATE subscriptions SET (notes, status) = ('x', 'y') WHERE id = 7", false, 0, 0, true},
      {"merge", "UPDATE subscriptions SET tags[1] = 'x' WHERE id = 7", false, 0, 0, true},
      {"merge", "/*occ:force*/ UPDATE subscriptions SET notes = 'x' WHERE id = 7", false, 0, 0, false},
      // reject: today's check.
      {"passthrough", "UPDATE subscriptions SET notes = 'x' WHERE id = 7", false, 0, 0, true},
  };
  for (const MergeRow& row : rows) {
    INFO(row.variant << ": " << row.sql);
    FakeReads reads;
    Session s(row.variant);
    s.user = "dba";
    s.reads = &reads;
    const occ::Rewrite r = s.rewrite(row.sql, row.extended);
    REQUIRE(r.action == occ::Rewrite::Action::rewrite);
    CHECK(occurrences(r.sql, "occ.merge(") == row.merges);
    CHECK(occurrences(r.sql, "occ.theirs_changed(") == row.kept);
    CHECK((!r.effects.empty() && r.effects[0].row_write.has_value()) == row.tag_notes);
    if (!row.extended) CHECK(parses(r.sql));
  }

  // One statement exactly: the version's CASE sends a stale row to occ.merge with the read and the
  // values written (typed as their columns); the column keeps the current value where the other
  // writer changed it.
  FakeReads reads;
  Session s("merge");
  s.reads = &reads;
  const std::string meta = R"($occ${"schema":"public","table":"subscriptions","key":["id"],"version_column":"version",)"
                           R"("sqlstate":"40001","mode":"enforce","op":"update","base":{"status":"a"}}$occ$)";
  const std::string base = R"($occ${"status":"a"}$occ$::text)";
  CHECK(s.rewrite("UPDATE subscriptions SET notes = 'x' WHERE id = 7").sql ==
        "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = '3'::bigint THEN subscriptions.version "
        "WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE occ.merge(subscriptions.version, '3'::bigint, subscriptions.version, to_jsonb(subscriptions.*), " +
            meta + ", " + base +
            ", (jsonb_build_object('notes', CASE WHEN false THEN subscriptions.notes ELSE ('x') END))) END, notes = "
            "CASE WHEN CASE WHEN subscriptions.version = '3'::bigint OR '3'::bigint IS NULL THEN false WHEN "
            "occ.written_here(subscriptions.xmin, subscriptions.version) THEN false ELSE occ.theirs_changed(to_jsonb(subscriptions.*), " +
            base + ", 'notes', " + meta +
            ") END THEN subscriptions.notes ELSE ('x') END WHERE id = 7 RETURNING (subscriptions.id)::text, "
            "(subscriptions.version)::text");
}

// The session's SQL-level prepared statements with a shadow, as the server confirmed them.
struct FakeShadows : occ::SqlPrepared {
  std::map<std::string, std::string> shadows;
  std::map<std::string, occ::PreparedWrite> writes;
  const occ::PreparedWrite* prepared_write(const std::string& name) const override {
    auto it = writes.find(name);
    return it == writes.end() ? nullptr : &it->second;
  }
  const std::string* shadow_of(const std::string& name) const override {
    auto it = shadows.find(name);
    return it == shadows.end() ? nullptr : &it->second;
  }
};

struct ShadowRow {
  const char* sql;
  bool extended;
  const char* sent;  // "" means forwarded unchanged
  const char* effects;
};

// A prepared SELECT that names its columns stays as written (its EXECUTE may feed CREATE TABLE AS
// or EXPLAIN); its shadow, with the key and version appended, follows it, and a plain EXECUTE runs
// the shadow. The session already knows r's shadow as "occ:p3"; the next one is number 7.
const ShadowRow shadow_rows[] = {
    {"PREPARE r2 AS SELECT notes FROM subscriptions WHERE id = $1", false,
     "PREPARE r2 AS SELECT notes FROM subscriptions WHERE id = $1; PREPARE \"occ:p7\" AS SELECT notes, "
     "(subscriptions.id)::text AS \"occ:key\", (subscriptions.version)::text AS \"occ:version\" FROM subscriptions "
     "WHERE id = $1",
     "- prepare r2; public.subscriptions/2 prepare occ:p7 for r2 (added)"},
    // The shadow goes before a trailing comment, which would swallow it.
    {"PREPARE r2 (int) AS SELECT s.notes FROM subscriptions s WHERE id = $1 -- by id", false,
     "PREPARE r2 (int) AS SELECT s.notes FROM subscriptions s WHERE id = $1; PREPARE \"occ:p7\" (int) AS SELECT "
     "s.notes, (s.id)::text AS \"occ:key\", (s.version)::text AS \"occ:version\" FROM subscriptions s WHERE id = $1 "
     "-- by id",
     "- prepare r2; public.subscriptions/2 prepare occ:p7 for r2 (added)"},
    // SELECT * carries the key and version already: tracked in place, no shadow.
    {"PREPARE r2 AS SELECT * FROM subscriptions WHERE id = $1", false, "", "public.subscriptions/in place prepare r2"},
    // A Parse holds one statement: no room for a shadow, the read stays untracked.
    {"PREPARE r2 AS SELECT notes FROM subscriptions WHERE id = $1", true, "", "- prepare r2"},
    {"EXECUTE r(42)", false, "EXECUTE \"occ:p3\"(42)", "- execute occ:p3 for r"},
    {"EXECUTE r", false, "EXECUTE \"occ:p3\"", "- execute occ:p3 for r"},
    // EXPLAIN and CREATE TABLE AS run the client's statement: their output must not show added columns.
    {"EXPLAIN ANALYZE EXECUTE r(42)", false, "", "- execute r"},
    {"CREATE TABLE copied AS EXECUTE r(42)", false, "", "-"},
    {"DEALLOCATE r", false, "DEALLOCATE r; DEALLOCATE \"occ:p3\"", "- deallocate r; - deallocate occ:p3 for r (added)"},
    {"DEALLOCATE PREPARE r;", false, "DEALLOCATE PREPARE r; DEALLOCATE \"occ:p3\";",
     "- deallocate r; - deallocate occ:p3 for r (added)"},
    {"DEALLOCATE ALL", false, "", "- deallocate "},
    {"DEALLOCATE r", true, "", "- deallocate r"},
    {"EXECUTE r(42)", true, "EXECUTE \"occ:p3\"(42)", "- execute occ:p3 for r"},
    // Within one text each statement sees what the ones before it left.
    {"DEALLOCATE ALL; EXECUTE r(1)", false, "", "- deallocate ; - execute r"},
    {"DISCARD ALL; EXECUTE r(1)", false, "", "discard_all; - execute r"},
    {"DEALLOCATE r; PREPARE r AS SELECT 1; EXECUTE r", false, "DEALLOCATE r; DEALLOCATE \"occ:p3\"; PREPARE r AS SELECT 1; EXECUTE r",
     "- deallocate r; - deallocate occ:p3 for r (added); - prepare r; - execute r"},
    // w is a checked write the session prepared: its EXECUTE gets the version read, unless the
    // text re-prepared the name first.
    {"EXECUTE w(7)", false, "EXECUTE w(7)", "public.subscriptions writes execute w"},
    {"DEALLOCATE w; PREPARE w AS SELECT 1; EXECUTE w", false, "", "- deallocate w; - prepare w; - execute w"},
    {"DISCARD ALL; PREPARE w AS SELECT 1; EXECUTE w", false, "", "discard_all; - prepare w; - execute w"},
    {"PREPARE q AS SELECT status FROM subscriptions WHERE id = $1; EXECUTE q(5)", false,
     "PREPARE q AS SELECT status FROM subscriptions WHERE id = $1; PREPARE \"occ:p7\" AS SELECT status, "
     "(subscriptions.id)::text AS \"occ:key\", (subscriptions.version)::text AS \"occ:version\" FROM subscriptions "
     "WHERE id = $1; EXECUTE \"occ:p7\"(5)",
     "- prepare q; public.subscriptions/2 prepare occ:p7 for q (added); - execute occ:p7 for q"},
};

TEST_CASE("an SQL-level prepared SELECT that names its columns is tracked through its shadow", "[rewrite]") {
  for (const ShadowRow& row : shadow_rows) {
    INFO(row.sql << (row.extended ? " (Parse)" : " (Query)"));
    FakeReads reads;
    FakeShadows shadows;
    shadows.shadows["r"] = "occ:p3";
    Session s("passthrough");
    shadows.writes["w"].row_write.table = &s.rules.tables.front();
    s.reads = &reads;
    s.prepared = &shadows;
    s.next_shadow = 7;
    const occ::Rewrite r = s.rewrite(row.sql, row.extended);
    CHECK(sent(r, row.sql) == (*row.sent ? row.sent : row.sql));
    CHECK(effects_text(r) == row.effects);
    CHECK(r.shadows_named == (std::string(row.effects).find("prepare occ:p7") != std::string::npos ? 1u : 0u));
    CHECK(r.untracked_reads == (std::string(row.sql).starts_with("PREPARE") && row.extended ? 1u : 0u));
  }
}

TEST_CASE("the row a checked write's tag reports is named by its own parameter, not a writable CTE's",
          "[rewrite]") {
  FakeReads reads;
  Session s("passthrough");
  s.reads = &reads;
  const occ::Rewrite r = s.rewrite(
      "WITH c AS (UPDATE subscriptions SET notes = 'c' WHERE id = $1 RETURNING id) "
      "UPDATE subscriptions SET status = $2 WHERE id = $3",
      true);
  REQUIRE(r.effects.size() == 1);
  REQUIRE(r.effects[0].row_write);
  // $4 and $5 carry the CTE's row, $6 and $7 the top-level write's.
  CHECK(r.effects[0].row_write->version_param == 6);
  REQUIRE(r.expected_params.size() == 4);
  const occ::ExpectedParam& own = r.expected_params[2];
  CHECK((own.param_number == 6 && own.carries == occ::ExpectedParam::Carries::version));
  CHECK(own.keys == std::vector<std::vector<occ::ExpectedParam::KeySource>>{{{3, ""}}});
}

TEST_CASE("mangled statements with a read set still parse once rewritten", "[rewrite]") {
  FakeReads reads;
  CHECK(rewrite_mangled(read_rows, 20261126, &reads) > 300);
}

TEST_CASE("without a read set nothing is appended and no row is looked up", "[rewrite]") {
  Session s("passthrough");
  const occ::Rewrite r = s.rewrite("SELECT * FROM subscriptions; UPDATE subscriptions SET a = 1 WHERE id = 7");
  CHECK(r.action == occ::Rewrite::Action::forward);
  CHECK(r.effects.empty());
  const occ::Rewrite command = s.rewrite("SAVEPOINT a");
  REQUIRE(command.effects.size() == 1);
  CHECK(command.effects[0].command == occ::SessionCommand::savepoint);
}

TEST_CASE("reads whose rows cannot be traced to table rows are counted and forwarded", "[rewrite]") {
  const char* const untraceable[] = {
      "SELECT count(*) FROM subscriptions",
      "SELECT DISTINCT status FROM subscriptions",
      "SELECT DISTINCT ON (status) id FROM subscriptions",
      "SELECT status FROM subscriptions GROUP BY status",
      "SELECT 1 FROM subscriptions HAVING true",
      "SELECT id FROM subscriptions UNION ALL SELECT id FROM other",
      "SELECT id INTO copy FROM subscriptions",
      "SELECT rank() OVER (ORDER BY id) FROM subscriptions",
      "SELECT id FROM subscriptions WINDOW w AS (ORDER BY id)",
      "SELECT string_agg(status, ',' ORDER BY id) FROM subscriptions s",
      "SELECT id FROM subscriptions ORDER BY max(id)",
      "SELECT (SELECT max(s.id)) FROM subscriptions s",
      "SELECT FROM subscriptions",
      "TABLE subscriptions",
      "SELECT * FROM subscriptions AS s (a, b)",
  };
  FakeReads reads;
  Session s("passthrough");
  s.reads = &reads;
  for (const char* sql : untraceable) {
    INFO(sql);
    const occ::Rewrite r = s.rewrite(sql);
    CHECK(r.action == occ::Rewrite::Action::forward);
    CHECK(r.effects.empty());
    CHECK(r.untracked_reads == 1);
  }
  const occ::Rewrite two = s.rewrite("SELECT count(*) FROM subscriptions; SELECT * FROM subscriptions GROUP BY 1");
  CHECK(two.untracked_reads == 2);
}

TEST_CASE("the extended protocol carries the read set in added parameters", "[rewrite]") {
  using Carries = occ::ExpectedParam::Carries;
  using Keys = std::vector<std::vector<std::pair<int, std::string>>>;  // per tuple: (param number, literal)
  struct Added {
    Carries carries;
    int type_oid;
    Keys keys;
  };
  struct Row {
    const char* variant;
    const char* sql;
    int declared;
    const char* expected;  // "" means forwarded unchanged
    int client_params;
    const char* table;  // the added parameters'
    std::vector<Added> added;
    const char* effects = nullptr;  // effects_text, where the case is about it
  };
  const std::vector<Row> rows = {
      // Pinned to one key: the row's version and base as two scalars, NULL when never read.
      {"passthrough",
       "UPDATE subscriptions SET status = $1 WHERE id = $2",
       0,
       "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = $3::bigint THEN "
       "subscriptions.version WHEN $3::bigint IS NULL THEN subscriptions.version WHEN "
       "occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
       "occ.conflict(subscriptions.version, $3::bigint, subscriptions.version, to_jsonb(subscriptions.*), "
       "@sub.update@, $4::text) END, status = $1 WHERE id = $2",
       2,
       "public.subscriptions",
       {{Carries::version, 20, {{{2, ""}}}}, {Carries::base, 25, {{{2, ""}}}}},
       "public.subscriptions writes $3"},
      {"passthrough",
       "DELETE FROM subscriptions WHERE id = $1",
       0,
       "DELETE FROM subscriptions WHERE id = $1 AND (CASE WHEN (id = $1) IS NOT TRUE THEN false WHEN "
       "subscriptions.version = $2::bigint THEN true WHEN $2::bigint IS NULL THEN true WHEN "
       "occ.written_here(subscriptions.xmin, subscriptions.version) THEN true ELSE "
       "occ.conflict(subscriptions.version, $2::bigint, subscriptions.version, to_jsonb(subscriptions.*), "
       "@sub.delete@, $3::text) IS NOT NULL END)",
       1,
       "public.subscriptions",
       {{Carries::version, 20, {{{1, ""}}}}, {Carries::base, 25, {{{1, ""}}}}},
       "public.subscriptions deletes $2"},
      {"uuid-passthrough",
       "UPDATE subscriptions SET status = 'x' WHERE id = 7",
       0,
       "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = $1::uuid THEN "
       "subscriptions.version WHEN $1::uuid IS NULL THEN subscriptions.version WHEN "
       "occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
       "occ.conflict(subscriptions.version, $1::uuid, subscriptions.version, to_jsonb(subscriptions.*), "
       "@sub.update@, $2::text) END, status = 'x' WHERE id = 7 RETURNING (subscriptions.id)::text, "
       "(subscriptions.version)::text",
       0,
       "public.subscriptions",
       {{Carries::version, 2950, {{{0, "7"}}}}, {Carries::base, 25, {{{0, "7"}}}}}},
      // The statement's own version is the check; the read gives the conflict its base.
      {"enforce",
       "UPDATE subscriptions SET status = $1 WHERE id = $2::int AND version = $3",
       4,
       "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = $3 THEN subscriptions.version "
       "WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
       "occ.conflict(subscriptions.version, $3, subscriptions.version, to_jsonb(subscriptions.*), "
       "@sub.update@, $5::text) END, status = $1 WHERE id = $2::int AND TRUE RETURNING "
       "(subscriptions.id)::text, (subscriptions.version)::text",
       4,
       "public.subscriptions",
       {{Carries::base, 25, {{{2, ""}}}}}},
      // Several keys: one map of the rows read, each written row looked up in it.
      {"passthrough",
       "DELETE FROM billing.invoices i WHERE i.id = $1 AND i.line IN (1, $2)",
       0,
       "DELETE FROM billing.invoices i WHERE i.id = $1 AND i.line IN (1, $2) AND (CASE WHEN (i.id = $1 AND "
       "i.line IN (1, $2)) IS NOT TRUE THEN false WHEN i.version = ($3::jsonb #>> ARRAY[(i.id)::text, "
       "(i.line)::text, 'v'])::bigint THEN true WHEN ($3::jsonb #>> ARRAY[(i.id)::text, (i.line)::text, "
       "'v'])::bigint IS NULL THEN true WHEN occ.written_here(i.xmin, i.version) THEN true ELSE "
       "occ.conflict(i.version, ($3::jsonb #>> ARRAY[(i.id)::text, (i.line)::text, 'v'])::bigint, "
       "i.version, to_jsonb(i.*), @inv.delete@, $3::jsonb #> ARRAY[(i.id)::text, (i.line)::text, 'b']) IS "
       "NOT NULL END) RETURNING (i.id)::text, (i.line)::text, (i.version)::text",
       2,
       "billing.invoices",
       {{Carries::map, 3802, {{{1, ""}, {0, "1"}}, {{1, ""}, {2, ""}}}}}},
      {"passthrough",
       "UPDATE subscriptions SET status = $1 WHERE status = $2",
       0,
       "UPDATE subscriptions SET version = CASE WHEN subscriptions.version = ($3::jsonb #>> "
       "ARRAY[(subscriptions.id)::text, 'v'])::bigint THEN subscriptions.version WHEN ($3::jsonb #>> "
       "ARRAY[(subscriptions.id)::text, 'v'])::bigint IS NULL THEN subscriptions.version WHEN "
       "occ.written_here(subscriptions.xmin, subscriptions.version) THEN subscriptions.version ELSE "
       "occ.conflict(subscriptions.version, ($3::jsonb #>> ARRAY[(subscriptions.id)::text, 'v'])::bigint, "
       "subscriptions.version, to_jsonb(subscriptions.*), @sub.update@, $3::jsonb #> "
       "ARRAY[(subscriptions.id)::text, 'b']) END, status = $1 WHERE status = $2 RETURNING "
       "(subscriptions.id)::text, (subscriptions.version)::text",
       2,
       "public.subscriptions",
       {{Carries::map, 3802, {}}}},
      {"passthrough",
       "INSERT INTO subscriptions (id, status) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET status = $2",
       0,
       "INSERT INTO subscriptions (id, status) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET version = "
       "CASE WHEN subscriptions.version = $3::bigint THEN subscriptions.version WHEN $3::bigint IS NULL "
       "THEN subscriptions.version WHEN occ.written_here(subscriptions.xmin, subscriptions.version) THEN "
       "subscriptions.version ELSE occ.conflict(subscriptions.version, $3::bigint, subscriptions.version, "
       "to_jsonb(subscriptions.*), @sub.update@, $4::text) END, status = $2 RETURNING "
       "(subscriptions.id)::text, (subscriptions.version)::text",
       2,
       "public.subscriptions",
       {{Carries::version, 20, {{{1, ""}}}}, {Carries::base, 25, {{{1, ""}}}}}},
      {"passthrough",
       "SELECT * FROM subscriptions WHERE id = $1",
       0,
       "SELECT *, (subscriptions.id)::text AS \"occ:key\", (subscriptions.version)::text AS \"occ:version\" FROM "
       "subscriptions WHERE id = $1",
       1,
       "",
       {}},
      {"passthrough", "DELETE FROM subscriptions WHERE CURRENT OF c", 0, "", 0, "", {}},
  };
  for (const Row& row : rows) {
    INFO(row.variant << ": " << row.sql);
    FakeReads reads;
    Session s(row.variant);
    s.reads = &reads;
    s.declared_params = row.declared;
    const occ::Rewrite r = s.rewrite(row.sql, true);
    CHECK(sent(r, row.sql) == (*row.expected ? expand(row.variant, row.expected) : std::string(row.sql)));
    CHECK(r.client_param_count == row.client_params);
    if (row.effects) CHECK(effects_text(r) == row.effects);
    CHECK(reads.asked.empty());
    REQUIRE(r.expected_params.size() == row.added.size());
    for (std::size_t i = 0; i < row.added.size(); ++i) {
      const occ::ExpectedParam& param = r.expected_params[i];
      CHECK(param.param_number == row.client_params + 1 + static_cast<int>(i));
      CHECK(param.table->qualified_name() == row.table);
      CHECK(param.carries == row.added[i].carries);
      CHECK(param.type_oid == row.added[i].type_oid);
      Keys keys;
      for (const auto& tuple : param.keys) {
        auto& out = keys.emplace_back();
        for (const occ::ExpectedParam::KeySource& source : tuple) out.emplace_back(source.param_number, source.literal);
      }
      CHECK(keys == row.added[i].keys);
    }
  }
}

namespace {

// The e2e suite's read set: a fixed map per table ("schema.name" -> the map of every row read),
// cut down to the rows asked for, as the session's read set would be.
}  // namespace

TEST_CASE("error positions in a rewritten text map back to the client's text", "[rewrite]") {
  Session s("enforce");
  // Non-ASCII before and after the edit: positions count characters, as the server's do.
  const std::string sql = "UPDATE subscriptions SET notes = 'é' WHERE id = 1 AND version = 2 AND nosuch = 'ü'";
  const occ::Rewrite r = s.rewrite(sql);
  REQUIRE(r.action == occ::Rewrite::Action::rewrite);
  REQUIRE_FALSE(r.shifts.empty());
  auto position_of = [](const std::string& text, const std::string& part) {
    const std::string before = text.substr(0, text.find(part));
    int characters = 0;
    for (char ch : before) characters += (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
    return characters + 1;
  };
  CHECK(occ::original_position(r.shifts, position_of(r.sql, "nosuch")) == position_of(sql, "nosuch"));
  CHECK(occ::original_position(r.shifts, position_of(r.sql, "subscriptions")) == position_of(sql, "subscriptions"));
  CHECK(occ::original_position(r.shifts, position_of(r.sql, "notes")) == position_of(sql, "notes"));
  // Inside the proxy's own text: where that text went in.
  CHECK(occ::original_position(r.shifts, position_of(r.sql, "occ.conflict")) == position_of(sql, " notes"));
  CHECK(occ::original_position({}, 17) == 17);
}

TEST_CASE("a view whose rows or writes the proxy cannot follow is counted, or refused under reject", "[rewrite]") {
  struct ViewRow {
    const char* variant;
    const char* sql;
    unsigned untracked_reads;
    unsigned unsupported_passed;
    const char* effects;  // effects_text
    const char* refusal;  // the rejection's message; "" for none
  };
  const ViewRow rows[] = {
      {"passthrough", "SELECT * FROM sub_notes WHERE id = 7", 1, 0, "-", ""},
      // The joined table's rows are still tracked.
      {"passthrough", "SELECT n.notes, s.status FROM sub_notes n JOIN subscriptions s USING (id)", 1, 0,
       "public.subscriptions/2", ""},
      {"passthrough", "UPDATE sub_notes SET notes = 'x' WHERE id = 7", 0, 1, "-", ""},
      {"passthrough", "UPDATE sub_form SET notes = 'x' WHERE id = 7", 0, 1, "-", ""},
      {"reject", "DELETE FROM sub_notes WHERE id = 7", 0, 0, "-",
       "occ: unsupported write on public.subscriptions: a write through view public.sub_notes (it does not show "
       "the version column version under its own name)"},
      {"reject", "UPDATE public.sub_form SET notes = 'x' WHERE id = 7", 0, 0, "-",
       "occ: unsupported write on public.subscriptions: a write through view public.sub_form (it is written through an "
       "INSTEAD OF trigger or rule)"},
  };
  for (const ViewRow& row : rows) {
    INFO(row.variant << ": " << row.sql);
    FakeReads reads;
    Session s(row.variant);
    s.reads = &reads;
    const occ::Rewrite r = s.rewrite(row.sql, true);
    CHECK(r.untracked_reads == row.untracked_reads);
    CHECK(r.unsupported_passed == row.unsupported_passed);
    if (*row.refusal == '\0') {
      CHECK(effects_text(r) == row.effects);
      CHECK((r.action == occ::Rewrite::Action::forward) == (std::string(row.effects) == "-"));
      CHECK(r.expected_params.empty());
    } else {
      CHECK(r.action == occ::Rewrite::Action::reject);
      REQUIRE(r.rejection);
      CHECK(r.rejection->sqlstate == "0A000");
      CHECK(r.rejection->message == row.refusal);
      CHECK(r.rejection->table == "subscriptions");
    }
  }
}
