// `occproxy check`: compares the rules with the live catalog, and indexes where protected names live.
#include "admin/catalog.h"

#include <algorithm>
#include <memory>
#include <set>

#include "config/config.h"
#include "admin/migrate.h"
#include "admin/pg_connection.h"
#include "admin/view_catalog.h"

namespace occ {

const RelationIndex::TableIdentity* RelationIndex::table(const std::string& qualified_name) const {
  auto it = tables.find(qualified_name);
  return it == tables.end() ? nullptr : &it->second;
}

const std::string* RelationIndex::TableIdentity::column(uint32_t relation_oid, int attnum) const {
  const std::unordered_map<int, std::string>* columns = &column_by_attnum;
  if (relation_oid != oid) {
    auto view = view_column_by_attnum.find(relation_oid);
    if (view == view_column_by_attnum.end()) return nullptr;
    columns = &view->second;
  }
  auto it = columns->find(attnum);
  return it == columns->end() ? nullptr : &it->second;
}

std::optional<std::string> RelationIndex::resolve(std::string_view name, const std::vector<std::string>& search_path,
                                                  const Rules& rules) const {
  if (loaded) {
    auto it = schemas_by_name.find(std::string(name));
    if (it != schemas_by_name.end() && !it->second.empty()) {
      const auto& holders = it->second;
      auto holds = [&](std::string_view schema) { return std::find(holders.begin(), holders.end(), schema) != holders.end(); };
      // The server looks in pg_catalog before the path unless the path names it somewhere.
      if (std::find(search_path.begin(), search_path.end(), "pg_catalog") == search_path.end() && holds("pg_catalog")) {
        return "pg_catalog";
      }
      for (const auto& schema : search_path) {
        if (holds(schema)) return schema;
      }
      return std::nullopt;
    }
  }
  for (const auto& schema : search_path) {
    if (rules.find(schema, name) || rules.find_view(schema, name)) return schema;
  }
  return std::nullopt;
}

const TableShape::Column* TableShape::column(std::string_view name) const {
  auto it = std::find_if(columns.begin(), columns.end(), [&](const Column& c) { return c.name == name; });
  return it == columns.end() ? nullptr : &*it;
}

std::optional<TableShape> read_table_shape(PgConnection& db, const std::string& schema, const std::string& name) {
  auto rel = db.query(
      "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
      " WHERE n.nspname = $1 AND c.relname = $2",
      {schema, name});
  if (rel.rows() == 0) return std::nullopt;
  TableShape shape;
  shape.oid = rel.text(0, 0);
  shape.relkind = rel.text(0, 1).front();
  auto cols = db.query(
      "SELECT a.attname, format_type(a.atttypid, a.atttypmod), bt.typname, a.attnum"
      "  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
      "  JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END"
      " WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
      {shape.oid});
  for (int i = 0; i < cols.rows(); ++i)
    shape.columns.push_back({cols.text(i, 0), cols.text(i, 1), cols.text(i, 2), std::stoi(cols.text(i, 3))});
  return shape;
}

namespace {

// {"a","b"} with quotes and backslashes escaped, for a text[] parameter.
std::string text_array(const std::set<std::string>& items) {
  std::string out = "{";
  for (const auto& item : items) {
    if (out.size() > 1) out += ',';
    out += '"';
    for (char c : item) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

std::string column_list(const TableShape& shape) {
  std::string out;
  for (const auto& c : shape.columns) out += (out.empty() ? "" : ", ") + c.name;
  return out.empty() ? "none" : out;
}

class Checker {
 public:
  Checker(const Config& config, const Rules& rules, PgConnection& db, CatalogReport& report)
      : config_(config), rules_(rules), db_(db), report_(report),
        migrate_fix_("run `occproxy migrate --config " + config.path + "`") {}

  void run() {
    auto who = db_.exec("SELECT current_database(), current_user, current_setting('server_version')");
    report_.notes.push_back("connected to database " + who.text(0, 0) + " as " + who.text(0, 1) + " (PostgreSQL " +
                            who.text(0, 2) + ")");
    if (rules_.tables.empty()) {
      report_.notes.push_back("no protected tables in the rules: the proxy only relays");
    } else {
      check_helper_schema();
    }
    if (config_.audit_table) check_audit_table();
    for (const auto& table : rules_.tables) check_table(table);
    if (report_.problems.empty()) find_protected_views(db_, rules_, report_);
    index_relations();
  }

 private:
  void problem(std::string text) { report_.problems.push_back(std::move(text)); }

  void check_helper_schema() {
    if (!db_.exec("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'occ')").flag(0, 0)) {
      problem("schema occ (the proxy's helper functions) is missing; " + migrate_fix_);
      return;
    }
    // Exact signatures: an occ schema from an older migrate lacks the newer overloads that
    // rewritten statements call.
    bool complete = true;
    for (const char* function : {"occ.conflict(anycompatible, anycompatible, anycompatible, jsonb, text)",
                                 "occ.conflict(anycompatible, anycompatible, anycompatible, jsonb, text, jsonb)",
                                 "occ.conflict(anycompatible, anycompatible, anycompatible, jsonb, text, text)",
                                 "occ.merge(anycompatible, anycompatible, anycompatible, jsonb, text, text, jsonb)",
                                 "occ.theirs_changed(jsonb, text, text, text)",
                                 "occ.written_here(xid, anyelement)",
                                 "occ.written_here_in(regclass, jsonb, anyelement)",
                                 "occ.reject(text, text, text, text, text, text)"}) {
      if (!db_.query("SELECT to_regprocedure($1) IS NOT NULL", {function}).flag(0, 0)) {
        problem("function " + std::string(function) + " is missing; " + migrate_fix_);
        complete = false;
      }
    }
    if (complete) report_.notes.push_back("schema occ with occ.conflict and occ.reject is installed");
  }

  void check_audit_table() {
    if (db_.exec("SELECT to_regclass('occ.conflict_log') IS NOT NULL").flag(0, 0)) {
      report_.notes.push_back("table occ.conflict_log is there for audit.table");
    } else {
      problem("table occ.conflict_log (audit.table: true) is missing; " + migrate_fix_);
    }
  }

  void check_table(const TablePolicy& table) {
    const std::string shown = table.qualified_name();
    const auto shape = read_table_shape(db_, table.schema, table.name);
    if (!shape) {
      problem(shown + ": table does not exist; create it or remove it from " + rules_.path);
      return;
    }
    if (!shape->is_table()) {
      problem(shown + ": is not a table (relkind " + std::string(1, shape->relkind) + "); only tables can be protected");
      return;
    }
    auto& identity = report_.relations.tables[table.qualified_name()];
    identity.oid = static_cast<uint32_t>(std::stoul(shape->oid));
    for (const auto& c : shape->columns) identity.column_by_attnum[c.attnum] = c.name;
    const std::size_t before = report_.problems.size();
    for (const auto& key : table.key) {
      if (!shape->column(key)) {
        problem(shown + ": key column " + key + " does not exist (columns: " + column_list(*shape) + "); fix `key` in " +
                rules_.path);
      }
    }
    const auto* version = shape->column(table.version_column);
    if (!version) {
      problem(shown + ": version column " + table.version_column + " is missing; " + migrate_fix_ +
              " to add it");
    } else if (!version_type_fits(table.version_kind, version->base_type)) {
      problem(shown + ": version column " + table.version_column + " is " + version->type + ", but version_kind " +
              to_string(table.version_kind) + " needs " + version_types_text(table.version_kind) +
              "; change the column or version_kind in " + rules_.path);
      return;  // migrate refuses to touch the trigger until the type is settled
    }
    const BumpTrigger trigger = bump_trigger_state(db_, shape->oid, table);
    const std::string trigger_name(bump_trigger_name);
    if (table.version_bump == VersionBump::proxy) {
      if (trigger != BumpTrigger::missing) {
        problem(shown + ": trigger " + trigger_name +
                " is installed but version_bump is proxy, so each write would advance " + table.version_column +
                " twice; " + migrate_fix_ + " to drop it");
      }
    } else if (trigger == BumpTrigger::missing) {
      problem(shown + ": trigger " + trigger_name + " is missing, so writes that bypass the proxy would not advance " +
              table.version_column + "; " + migrate_fix_);
    } else if (trigger == BumpTrigger::disabled) {
      problem(shown + ": trigger " + trigger_name + " is disabled; " + migrate_fix_);
    } else if (trigger == BumpTrigger::outdated) {
      problem(shown + ": trigger " + trigger_name + " does not match the rules (version column " + table.version_column +
              ", " + to_string(table.version_kind) + "); " + migrate_fix_);
    }
    if (table.track_writer) {
      for (const std::string_view column : {kModifiedByColumn, kModifiedAtColumn})
        if (!shape->column(column))
          problem(shown + ": column " + std::string(column) + " (track_writer) is missing; " + migrate_fix_);
      const BumpTrigger writer = writer_trigger_state(db_, shape->oid, table);
      if (writer != BumpTrigger::current)
        problem(shown + ": trigger " + std::string(writer_trigger_name) + " (track_writer) is " +
                (writer == BumpTrigger::missing ? "missing" : writer == BumpTrigger::disabled ? "disabled" : "outdated") +
                "; " + migrate_fix_);
    }
    if (report_.problems.size() == before) {
      std::string keys;
      for (const auto& k : table.key) keys += (keys.empty() ? "" : ", ") + k;
      const std::string bump = table.version_bump == VersionBump::trigger ? "trigger " + trigger_name : "bumped by the proxy";
      report_.notes.push_back(shown + ": key " + keys + "; version " + table.version_column + " " + version->type + "; " +
                              bump);
    }
  }

  void index_relations() {
    std::set<std::string> names;
    for (const auto& t : rules_.tables) names.insert(t.name);
    for (const auto& v : report_.views) names.insert(v.name);
    auto r = db_.query(
        "SELECT c.relname, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relname = ANY ($1::text[]) ORDER BY 1, 2",
        {text_array(names)});
    for (int i = 0; i < r.rows(); ++i) report_.relations.schemas_by_name[r.text(i, 0)].push_back(r.text(i, 1));
    report_.relations.loaded = true;
  }

  const Config& config_;
  const Rules& rules_;
  PgConnection& db_;
  CatalogReport& report_;
  const std::string migrate_fix_;
};

}  // namespace

CatalogReport check_catalog(const Config& config, const Rules& rules) {
  CatalogReport report;
  if (config.admin_dsn.empty()) {
    report.problems.push_back("admin_dsn is not set in " + config.path + "; the catalog cannot be checked");
    return report;
  }
  std::unique_ptr<PgConnection> db;
  try {
    db = std::make_unique<PgConnection>(config.admin_dsn);
  } catch (const PgError& e) {
    report.problems.push_back("cannot connect with admin_dsn: " + std::string(e.what()));
    return report;
  }
  try {
    Checker(config, rules, *db, report).run();
  } catch (const PgError& e) {
    report.problems.push_back("catalog query failed: " + std::string(e.what()));
    report.relations = RelationIndex{};
  }
  report.ok = report.problems.empty();
  return report;
}

std::string CatalogReport::text() const {
  std::string out;
  for (const auto& n : notes) out += "ok: " + n + "\n";
  for (const auto& p : problems) out += "problem: " + p + "\n";
  if (ok) {
    out += "check passed\n";
  } else {
    out += "check failed: " + std::to_string(problems.size()) + (problems.size() == 1 ? " problem\n" : " problems\n");
  }
  return out;
}

}  // namespace occ
