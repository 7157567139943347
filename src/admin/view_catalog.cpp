// find_protected_views: views over protected tables, from pg_depend and each view's definition.
#include "admin/view_catalog.h"

#include <algorithm>
#include <set>
#include <unordered_map>

#include "admin/pg_connection.h"
#include "admin/view_definition.h"

namespace occ {
namespace {

// Views nested deeper than this are not followed (a cycle is impossible, but the walk stays bounded).
constexpr int kMaxViewDepth = 16;

// pg_relation_is_updatable() bits for UPDATE and DELETE.
constexpr int kUpdateAndDelete = (1 << 2) | (1 << 3);

// A relation rows can be traced through: a protected table, or a view already found over one.
struct RowSource {
  const TablePolicy* table = nullptr;
  // The table column each of its columns shows under its own name (by attnum - 1); for the table
  // itself every column.
  std::vector<std::optional<std::string>> columns;
  std::string unsupported;  // a view whose rows are not the table's: nor are those of views over it

  bool shows(const std::string& column) const {
    return table != nullptr && unsupported.empty() &&
           (columns.empty() || std::find(columns.begin(), columns.end(), column) != columns.end());
  }
};

std::string oid_array(const std::vector<std::string>& oids) {
  std::string out = "{";
  for (const auto& oid : oids) out += (out.size() > 1 ? "," : "") + oid;
  return out + "}";
}

// Why reads through a view of `table` that shows the table columns `columns` cannot be tracked;
// empty if they can.
std::string hidden_row_columns(const TablePolicy& table, const std::vector<std::optional<std::string>>& columns) {
  auto shown = [&](const std::string& column) { return std::find(columns.begin(), columns.end(), column) != columns.end(); };
  for (const auto& key : table.key)
    if (!shown(key)) return "it does not show the key column " + key + " under its own name";
  if (!shown(table.version_column))
    return "it does not show the version column " + table.version_column + " under its own name";
  return {};
}

}  // namespace

void find_protected_views(PgConnection& db, const Rules& rules, CatalogReport& report) {
  // Every relation outside pg_catalog comes out of pg_get_viewdef schema-qualified.
  db.exec("SET search_path = pg_catalog");
  std::unordered_map<std::string, RowSource> sources;  // by "schema.name"
  std::vector<std::string> frontier;                    // OIDs whose dependent views are looked for next
  for (const auto& table : rules.tables) {
    const auto* identity = report.relations.table(table.qualified_name());
    if (identity == nullptr) continue;
    sources[table.qualified_name()].table = &table;
    frontier.push_back(std::to_string(identity->oid));
  }
  std::set<std::string> seen;
  for (int depth = 0; depth < kMaxViewDepth && !frontier.empty(); ++depth) {
    auto found = db.query(
        "SELECT DISTINCT v.oid, n.nspname, v.relname, pg_get_viewdef(v.oid),"
        "       pg_relation_is_updatable(v.oid, false), pg_relation_is_updatable(v.oid, true)"
        "  FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid"
        "  JOIN pg_class v ON v.oid = r.ev_class JOIN pg_namespace n ON n.oid = v.relnamespace"
        " WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass"
        "   AND d.refobjid = ANY ($1::oid[]) AND v.relkind = 'v' AND v.oid <> d.refobjid"
        " ORDER BY 2, 3",
        {oid_array(frontier)});
    frontier.clear();
    for (int i = 0; i < found.rows(); ++i) {
      const std::string oid = found.text(i, 0);
      if (!seen.insert(oid).second) continue;
      const ViewDefinition definition = read_view_definition(found.text(i, 3));
      ProtectedView view{found.text(i, 1), found.text(i, 2), {}, {}, definition.not_rows, {}};
      const RowSource* source = nullptr;
      if (definition.not_rows.empty()) {
        auto it = sources.find(definition.source_schema + "." + definition.source_name);
        // A view that reads a protected table only in a subquery does not show its rows.
        if (it == sources.end()) continue;
        source = &it->second;
      }
      RowSource shown;
      if (source != nullptr) {
        shown.table = source->table;
        for (const auto& column : definition.columns)
          shown.columns.push_back(column && source->shows(*column) ? column : std::nullopt);
        view.unsupported = !source->unsupported.empty()
                               ? "it reads a view that does not show the table's rows"
                               : hidden_row_columns(*source->table, shown.columns);
      } else {
        // Name the protected table it depends on, for the log and a refused write.
        auto table = db.query(
            "SELECT n.nspname, c.relname FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid"
            "  JOIN pg_class c ON c.oid = d.refobjid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE d.classid = 'pg_rewrite'::regclass AND r.ev_class = $1::oid AND c.oid <> r.ev_class"
            " ORDER BY 1, 2",
            {oid});
        for (int k = 0; k < table.rows() && shown.table == nullptr; ++k)
          if (auto it = sources.find(table.text(k, 0) + "." + table.text(k, 1)); it != sources.end())
            shown.table = it->second.table;
        if (shown.table == nullptr) continue;
      }
      shown.unsupported = view.unsupported;
      view.table_schema = shown.table->schema;
      view.table_name = shown.table->name;
      const int auto_updatable = std::stoi(found.text(i, 4));
      const int writable = std::stoi(found.text(i, 5));
      if ((auto_updatable & kUpdateAndDelete) == 0 && (writable & kUpdateAndDelete) != 0)
        view.unsupported_write = "it is written through an INSTEAD OF trigger or rule";
      if (view.unsupported.empty()) {
        auto& columns = report.relations.tables[shown.table->qualified_name()].view_column_by_attnum[
            static_cast<uint32_t>(std::stoul(oid))];
        for (std::size_t c = 0; c < shown.columns.size(); ++c)
          if (shown.columns[c]) columns[static_cast<int>(c) + 1] = *shown.columns[c];
        report.notes.push_back("view " + view.qualified_name() + " shows rows of " + shown.table->qualified_name() +
                               ": reads through it are tracked" +
                               (view.unsupported_write.empty() ? ", writes checked" : ""));
      } else {
        report.notes.push_back("view " + view.qualified_name() + " reads " + shown.table->qualified_name() +
                               " but its reads are not tracked nor its writes checked: " + view.unsupported);
      }
      sources[view.qualified_name()] = std::move(shown);
      report.views.push_back(std::move(view));
      frontier.push_back(oid);
    }
  }
}

}  // namespace occ
