// libFuzzer target: the SQL layer on any text; a rewrite still parses, the pre-filter misses no write.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <pg_query.h>

#include "admin/catalog.h"
#include "sql/json_text.h"
#include "sql/plan_cache.h"
#include "sql/rewrite.h"
#include "config/rules.h"

namespace {

// Two schemas hold a protected `invoices`, so search_path decides; the policies cover the
// rewrite's variants (trigger/proxy bump, counter/uuid/timestamp, shadow, reject, deletes off).
const char* const kRules = R"(defaults:
  app_managed_version: enforce
  force:
    allowed_roles: [dba]
tables:
  - table: public.subscriptions
    key: [id]
  - table: billing.invoices
    key: [id, line]
    version_bump: proxy
    version_kind: uuid
  - table: public.invoices
    key: [id]
    mode: shadow
    conflict_sqlstate: "40P01"
    check_deletes: false
  - table: '"Odd"."Ta$ble"'
    key: ['"K"']
    version_column: '"V"'
    version_bump: proxy
    version_kind: timestamp
    on_unsupported: reject
    on_unknown_version: reject
)";

void check(bool ok, const char* what, const std::string& sql) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_sql: %s\n--- SQL ---\n%s\n", what, sql.c_str());
  std::abort();
}

// A read set that knows one row of every table, with values that need quoting in any SQL text.
class FixedReads : public occ::ReadSetLookup {
 public:
  std::string expected_map(const occ::TablePolicy& table,
                           const std::vector<std::vector<std::string>>& keys) const override {
    std::string map = "{";
    occ::append_json_string(map, keys.empty() || keys.front().empty() ? "1" : keys.front().front());
    return map + R"(:{"v":"3","b":)" + std::string(kBase) + "}}";
  }

  std::optional<occ::RowRead> read_row(const occ::TablePolicy&, const std::vector<std::string>&) const override {
    return occ::RowRead{"3", kBase};
  }

 private:
  static constexpr std::string_view kBase = R"({"note":"it's $occ$ \"x\" \\ done"})";
};

struct Fixture {
  occ::Rules rules = occ::parse_rules(kRules, "fuzz_rules.yaml");
  occ::RelationIndex relations;
  occ::PlanCache cache{256, 1u << 20};
  FixedReads reads;

  Fixture() {
    relations.loaded = true;
    relations.schemas_by_name = {
        {"subscriptions", {"public"}}, {"invoices", {"billing", "public"}}, {"Ta$ble", {"Odd"}}};
  }
};

bool parses(const std::string& sql) {
  PgQueryParseResult result = pg_query_parse(sql.c_str());
  const bool ok = result.error == nullptr;
  pg_query_free_parse_result(result);
  return ok;
}

// Input: one flags byte, then the SQL text (a Query string or a Parse statement: no NUL).
//   bit 0: extended protocol          bit 1: the session user may force (dba)
//   bit 2: search_path billing first  bit 3: no read tracking
//   bits 4-5: parameter types the Parse declared
void run(const uint8_t* data, std::size_t size) {
  static Fixture fixture;
  if (size < 1) return;
  const uint8_t flags = data[0];
  const std::string sql(reinterpret_cast<const char*>(data + 1), size - 1);
  if (sql.find('\0') != std::string::npos) return;

  const bool extended = flags & 1;
  const std::string user = (flags & 2) ? "dba" : "app";
  const std::vector<std::string> path = (flags & 4) ? std::vector<std::string>{"billing", "public"}
                                                    : std::vector<std::string>{"public", "billing"};
  const occ::SessionView view{user, path, fixture.rules, fixture.relations, (flags & 8) ? nullptr : &fixture.reads,
                              (flags >> 4) & 3, nullptr, occ::StringSyntax{(flags & 64) == 0, true}};

  const bool candidate = occ::may_need_rewrite(sql, fixture.rules, view.syntax.standard_conforming_strings);
  const occ::Rewrite first = occ::rewrite_sql(sql, extended, view, fixture.cache);
  // The session skips rewrite_sql when the pre-filter says no: the filter must never miss a write.
  if (!candidate) {
    check(first.action == occ::Rewrite::Action::forward && first.writes.empty() && !first.search_path_change &&
              first.effects.empty() && first.expected_params.empty(),
          "may_need_rewrite() said no to a text the rewriter changes", sql);
  }
  if (first.parse_failed) {
    check(first.action == occ::Rewrite::Action::forward, "unparsable SQL was not forwarded unchanged", sql);
    // With standard_conforming_strings off the text is parsed as that session's server reads it.
    if (view.syntax.standard_conforming_strings)
      check(!parses(sql), "parse_failed on SQL that libpg_query parses", sql);
  }
  if (first.action == occ::Rewrite::Action::rewrite) {
    check(!first.parse_failed, "a rewrite of SQL that did not parse", sql);
    // Parsed as the session's server reads it (with standard_conforming_strings off, not as is).
    const bool rewritten_parses = view.syntax.standard_conforming_strings
                                      ? parses(first.sql)
                                      : !occ::analyze_sql(first.sql, fixture.rules, view.syntax).parse_failed;
    check(rewritten_parses, "the rewritten SQL does not parse", sql + "\n--- rewritten ---\n" + first.sql);
  }
  if (first.action == occ::Rewrite::Action::reject) {
    check(extended && first.rejection && !first.rejection->sqlstate.empty() && !first.rejection->message.empty(),
          "a rejection without an error, or in the simple protocol", sql);
  }
  for (const auto& e : first.expected_params)
    check(e.table != nullptr && e.param_number > first.client_param_count, "an added parameter overlaps the client's",
          sql);

  // The second time comes from the plan cache: same answer.
  const occ::Rewrite again = occ::rewrite_sql(sql, extended, view, fixture.cache);
  check(again.action == first.action && again.sql == first.sql && again.writes.size() == first.writes.size() &&
            again.parse_failed == first.parse_failed,
        "a cached analysis rewrites differently", sql);

  // The same text with other digits in its numbers and other letters in its strings shares the
  // cached analysis by its literal shape: it must rewrite exactly as if analysed afresh.
  const std::string shape = occ::literal_shape(sql);
  if (shape.empty()) return;
  std::string variant = sql;
  for (std::size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (shape[i + 1] == '0' && c >= '0' && c <= '9') variant[i] = static_cast<char>('0' + (c - '0' + 7) % 10);
    if (shape[i + 1] == 'x' && c >= 'a' && c <= 'y') variant[i] = static_cast<char>(c + 1);
  }
  occ::PlanCache fresh_cache{4, 1u << 20};
  const occ::Rewrite shared = occ::rewrite_sql(variant, extended, view, fixture.cache);
  const occ::Rewrite fresh = occ::rewrite_sql(variant, extended, view, fresh_cache);
  auto assigned = [](const occ::Rewrite& r) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& w : r.writes) out.insert(out.end(), w.assigned.begin(), w.assigned.end());
    return out;
  };
  auto key_sources = [](const occ::Rewrite& r) {
    std::vector<std::string> out;
    for (const auto& e : r.expected_params)
      for (const auto& tuple : e.keys)
        for (const auto& k : tuple) out.push_back(std::to_string(k.param_number) + ":" + k.literal);
    return out;
  };
  check(shared.action == fresh.action && shared.sql == fresh.sql && shared.parse_failed == fresh.parse_failed &&
            shared.writes.size() == fresh.writes.size() && assigned(shared) == assigned(fresh) &&
            key_sources(shared) == key_sources(fresh) && shared.effects.size() == fresh.effects.size(),
        "a text sharing a cached analysis by its literal shape rewrites differently from a fresh analysis",
        sql + "\n--- variant ---\n" + variant);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  run(data, size);
  return 0;
}
