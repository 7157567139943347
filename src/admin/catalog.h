// The proxy's view of the live catalog through admin_dsn: the start-up check (`occproxy check`)
// and the schemas that hold each protected table's name, for search_path resolution.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/rules.h"

namespace occ {

struct Config;
class PgConnection;

// For each protected table name: every schema holding a relation of that name (any relkind).
struct RelationIndex {
  std::unordered_map<std::string, std::vector<std::string>> schemas_by_name;
  bool loaded = false;

  // Each protected table ("schema.name") as the wire names it: RowDescription gives a column's
  // table OID and attribute number, which is how a result's columns are traced to the table.
  struct TableIdentity {
    uint32_t oid = 0;
    std::unordered_map<int, std::string> column_by_attnum;
    // By view OID, for the views that show the table's rows (Rules::views): the table column each
    // of their columns shows, where it shows one under its own name.
    std::unordered_map<uint32_t, std::unordered_map<int, std::string>> view_column_by_attnum;
    // The table column that column `attnum` of `relation_oid` (the table or one of those views) is.
    const std::string* column(uint32_t relation_oid, int attnum) const;
  };
  std::unordered_map<std::string, TableIdentity> tables;
  const TableIdentity* table(const std::string& qualified_name) const;

  // The schema an unqualified `name` resolves to under `search_path` (already without "$user"
  // placeholders), or nullopt. Without a loaded catalog, the first search_path schema that has a
  // protected table or view of that name.
  std::optional<std::string> resolve(std::string_view name, const std::vector<std::string>& search_path,
                                     const Rules& rules) const;
};

struct CatalogReport {
  bool ok = false;
  std::vector<std::string> problems;  // one readable line each
  std::vector<std::string> notes;     // what was checked and found fine
  RelationIndex relations;
  std::vector<ProtectedView> views;  // for Rules::views
  std::string text() const;           // the report `occproxy check` prints
};

// Connects with config.admin_dsn (libpq); checks each protected table exists with its key and
// version columns and that the occ helper schema is installed.
CatalogReport check_catalog(const Config& config, const Rules& rules);

// One relation as the catalog has it, for the check and for migrate.
struct TableShape {
  std::string oid;
  char relkind = 'r';  // pg_class.relkind: 'r' table, 'p' partitioned table, 'v' view...
  struct Column {
    std::string name;
    std::string type;       // as format_type() spells it, e.g. "timestamp with time zone"
    std::string base_type;  // pg_type.typname, domains resolved, e.g. "timestamptz"
    int attnum = 0;
  };
  std::vector<Column> columns;  // in table order, dropped ones left out

  bool is_table() const { return relkind == 'r' || relkind == 'p'; }
  const Column* column(std::string_view name) const;
};
std::optional<TableShape> read_table_shape(PgConnection& db, const std::string& schema, const std::string& name);

}  // namespace occ
