// The real rewriter from the command line, for the end-to-end suite (tests/e2e/test_occ_sql.py).
// Reads OCC_REWRITE_RULES (rules YAML), OCC_REWRITE_SQL, OCC_REWRITE_USER, OCC_REWRITE_EXTENDED
// ("1"), OCC_REWRITE_SEARCH_PATH (comma-separated), OCC_REWRITE_READS (JSON: "schema.name" -> the
// read set's map for that table; unset: no read tracking) and writes the result as JSON to
// OCC_REWRITE_OUT (standard output when unset). With OCC_REWRITE_LIFT ("on" or "off": the
// session's standard_conforming_strings) it writes lift_constants' result for OCC_REWRITE_SQL
// instead (null: left alone), no rules needed.
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "admin/catalog.h"
#include "sql/lifted_constants.h"
#include "sql/plan_cache.h"
#include "sql/rewrite.h"

namespace {

struct CliReads : occ::ReadSetLookup {
  nlohmann::json maps;

  std::string expected_map(const occ::TablePolicy& table,
                           const std::vector<std::vector<std::string>>& keys) const override {
    const nlohmann::json all = maps.value(table.qualified_name(), nlohmann::json::object());
    if (keys.empty()) return all.dump();
    nlohmann::json some = nlohmann::json::object();
    for (const std::vector<std::string>& key : keys) {
      nlohmann::json::json_pointer path;
      for (const std::string& part : key) path /= part;
      if (all.contains(path)) some[path] = all[path];
    }
    return some.dump();
  }

  std::optional<occ::RowRead> read_row(const occ::TablePolicy& table,
                                       const std::vector<std::string>& key) const override {
    nlohmann::json::json_pointer path("/" + table.qualified_name());
    for (const std::string& part : key) path /= part;
    if (!maps.contains(path)) return std::nullopt;
    const nlohmann::json& row = maps[path];
    versions.push_back(row.at("v").get<std::string>());
    bases.push_back(row.value("b", nlohmann::json::object()).dump());
    return occ::RowRead{versions.back(), bases.back()};
  }

  mutable std::deque<std::string> versions, bases;  // what read_row's views point into
};

}  // namespace

int main() try {
  auto env = [](const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return std::string(v != nullptr ? v : fallback);
  };
  if (const char* lift = std::getenv("OCC_REWRITE_LIFT")) {
    occ::StringSyntax syntax;
    syntax.standard_conforming_strings = std::string(lift) != "off";
    nlohmann::json out;
    if (auto lifted = occ::lift_constants(env("OCC_REWRITE_SQL", ""), syntax))
      out = {{"sql", lifted->sql}, {"param_types", lifted->param_types}, {"values", lifted->values}};
    std::ofstream(env("OCC_REWRITE_OUT", "/dev/stdout")) << out.dump() << '\n';
    return 0;
  }
  const occ::Rules rules = occ::parse_rules(env("OCC_REWRITE_RULES", ""), "OCC_REWRITE_RULES");
  const occ::RelationIndex relations;
  std::vector<std::string> path;
  const std::string path_text = env("OCC_REWRITE_SEARCH_PATH", "public");
  for (std::size_t at = 0; at <= path_text.size();) {
    const std::size_t comma = std::min(path_text.find(',', at), path_text.size());
    path.push_back(path_text.substr(at, comma - at));
    at = comma + 1;
  }
  const std::string user = env("OCC_REWRITE_USER", "app");
  const std::string sql = env("OCC_REWRITE_SQL", "");
  CliReads reads;
  const bool tracking = std::getenv("OCC_REWRITE_READS") != nullptr;
  if (tracking) reads.maps = nlohmann::json::parse(env("OCC_REWRITE_READS", "{}"));
  occ::PlanCache cache;
  const occ::Rewrite r =
      occ::rewrite_sql(sql, env("OCC_REWRITE_EXTENDED", "0") == "1",
                       occ::SessionView{user, path, rules, relations, tracking ? &reads : nullptr}, cache);
  nlohmann::json out;
  out["action"] = r.action == occ::Rewrite::Action::rewrite  ? "rewrite"
                  : r.action == occ::Rewrite::Action::reject ? "reject"
                                                             : "forward";
  out["sql"] = r.action == occ::Rewrite::Action::rewrite ? r.sql : sql;
  out["parse_failed"] = r.parse_failed;
  out["unsupported_passed"] = r.unsupported_passed;
  out["untracked_reads"] = r.untracked_reads;
  out["writes"] = nlohmann::json::array();
  for (const occ::WriteInfo& w : r.writes)
    out["writes"].push_back({{"table", w.table->qualified_name()}, {"forced", w.forced}, {"assigned", w.assigned}});
  if (r.rejection) out["rejection"] = {{"sqlstate", r.rejection->sqlstate}, {"message", r.rejection->message}};
  out["effects"] = nlohmann::json::array();
  for (const occ::StatementEffect& e : r.effects) {
    nlohmann::json tables = nlohmann::json::array();
    for (const occ::TablePolicy* t : e.tracking.tables) tables.push_back(t->qualified_name());
    out["effects"].push_back({{"tables", tables},
                              {"added_columns", e.tracking.added_columns},
                              {"drop_result", e.tracking.drop_result},
                              {"rows_deleted", e.tracking.rows_deleted},
                              {"command", static_cast<int>(e.command)},
                              {"savepoint", e.savepoint}});
    if (e.row_write)
      out["effects"].back()["row_write"] = {{"table", e.row_write->table->qualified_name()},
                                            {"deletes", e.row_write->deletes},
                                            {"key", e.row_write->key},
                                            {"version", e.row_write->version}};
  }
  out["client_param_count"] = r.client_param_count;
  out["expected_params"] = nlohmann::json::array();
  for (const occ::ExpectedParam& p : r.expected_params) {
    nlohmann::json keys = nlohmann::json::array();
    for (const auto& tuple : p.keys) {
      nlohmann::json sources = nlohmann::json::array();
      for (const auto& source : tuple) sources.push_back({source.param_number, source.literal});
      keys.push_back(sources);
    }
    static const char* const carries[] = {"map", "version", "base"};
    out["expected_params"].push_back({{"table", p.table->qualified_name()},
                                      {"carries", carries[static_cast<int>(p.carries)]},
                                      {"param_number", p.param_number},
                                      {"type_oid", p.type_oid},
                                      {"keys", keys}});
  }
  std::ofstream(env("OCC_REWRITE_OUT", "/dev/stdout")) << out.dump() << '\n';
  return 0;
} catch (const std::exception& e) {
  std::cerr << "occ_rewrite: " << e.what() << '\n';
  return 2;
}
