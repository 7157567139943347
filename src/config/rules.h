// The rules file (SPEC 2): which tables are protected and how.
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace occ {

enum class VersionKind { counter, uuid, timestamp };
enum class EnforceMode { enforce, shadow };
enum class VersionBump { trigger, proxy };
enum class OnConflict { reject, merge };

// One protected table with every default already applied.
struct TablePolicy {
  std::string schema;  // catalog spelling (unquoted, case as stored), e.g. "public"
  std::string name;    // e.g. "subscriptions"
  std::vector<std::string> key;  // key columns, catalog spelling
  std::string version_column = "version";
  VersionKind version_kind = VersionKind::counter;
  bool reject_unknown_version = false;  // on_unknown_version: reject
  bool enforce_app_managed = false;     // app_managed_version: enforce
  bool check_deletes = true;
  EnforceMode mode = EnforceMode::enforce;
  VersionBump version_bump = VersionBump::trigger;
  bool reject_unsupported = false;  // on_unsupported: reject
  std::string conflict_sqlstate = "40001";
  std::chrono::milliseconds read_ttl{60'000};
  std::vector<std::string> force_roles;
  std::vector<std::string> redact;
  OnConflict on_conflict = OnConflict::reject;  // merge: SPEC 3.10
  bool track_writer = false;  // occ_modified_by / occ_modified_at kept by a trigger (SPEC 3.7)

  std::string qualified_name() const { return schema + "." + name; }
  bool may_force(std::string_view role) const;
  bool is_redacted(std::string_view column) const;
};

// A reconciliation check (SPEC 7): `query` returns the rows that violate it; run on admin_dsn
// every `interval`, cancelled by the server after `timeout`.
struct Invariant {
  std::string name;
  std::string query;
  std::chrono::milliseconds interval{60'000};
  std::chrono::milliseconds timeout{30'000};

  bool operator==(const Invariant&) const = default;
};

// A view whose rows come from a protected table (SPEC 3.9), found in the catalog at start and at
// reload, not in the rules file: reads through it are tracked and writes checked as the table's.
struct ProtectedView {
  std::string schema;  // catalog spelling
  std::string name;
  std::string table_schema;  // the protected table its rows are rows of
  std::string table_name;
  // Empty when each of its rows is one table row with the key and version columns under their own
  // names (the rewrite then names them through the view); else why not, for the log and refusals.
  std::string unsupported;
  std::string unsupported_write;  // writes only: why they cannot be checked (an INSTEAD OF trigger)

  std::string qualified_name() const { return schema + "." + name; }
};

struct Rules {
  std::string path;
  std::chrono::system_clock::time_point loaded_at;
  std::vector<TablePolicy> tables;
  std::vector<Invariant> invariants;
  std::vector<ProtectedView> views;  // from the catalog (check_catalog), not the rules file

  // Exact catalog spelling; nullptr when the table is not protected.
  const TablePolicy* find(std::string_view schema, std::string_view name) const;
  const ProtectedView* find_view(std::string_view schema, std::string_view name) const;
  // Any protected table or view over one with this name, in any schema: the names the SQL
  // analysis reports and search_path resolution looks up.
  bool has_table_named(std::string_view name) const;
};

// "file:line: what is wrong"; never a silently ignored key.
struct RulesError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

Rules load_rules(const std::string& path);
Rules parse_rules(const std::string& yaml_text, const std::string& file_name_for_errors);

// Rules are swapped whole on SIGHUP; readers keep the snapshot they took.
using RulesPtr = std::shared_ptr<const Rules>;
RulesPtr current_rules() noexcept;
void set_current_rules(RulesPtr rules) noexcept;

const char* to_string(VersionKind);
const char* to_string(EnforceMode);
const char* to_string(VersionBump);
const char* to_string(OnConflict);

// The columns track_writer adds; bookkeeping, never a change a conflict or merge is about.
inline constexpr std::string_view kModifiedByColumn = "occ_modified_by";
inline constexpr std::string_view kModifiedAtColumn = "occ_modified_at";

}  // namespace occ
