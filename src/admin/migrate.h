// `occproxy migrate`: numbered SQL files from migrations/, then per protected table the version
// column and (version_bump: trigger) the bump trigger. Idempotent.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/rules.h"

namespace occ {

struct Config;
class PgConnection;

struct MigrateResult {
  bool ok = false;
  std::vector<std::string> applied;  // readable lines: what changed; empty when nothing did
  std::string error;
};

MigrateResult run_migrations(const Config& config, const Rules& rules, const std::string& migrations_dir);

// Where this binary's migrations are: the source tree's for a binary in its build tree, else
// share/occproxy/migrations beside the bin folder it runs from (/usr/share/... when packaged).
std::string migrations_dir();

// What migrate installs, so that `check` verifies exactly that.

// Base type names (pg_type.typname) a version column of this kind may have.
bool version_type_fits(VersionKind kind, std::string_view type_name);
// For messages: "bigint, integer or smallint".
const char* version_types_text(VersionKind kind);

inline constexpr std::string_view bump_trigger_name = "occ_bump_version";
// The per-table trigger function in schema occ (unquoted name, at most 63 bytes).
std::string bump_function_name(const TablePolicy& table);

enum class BumpTrigger { missing, current, disabled, outdated };

// track_writer: the trigger that keeps occ_modified_by / occ_modified_at on every INSERT and UPDATE,
// and its per-table function in schema occ.
inline constexpr std::string_view writer_trigger_name = "occ_track_writer";
std::string writer_function_name(const TablePolicy& table);
// The occ_track_writer trigger, compared with what migrate installs (function, body, events).
BumpTrigger writer_trigger_state(PgConnection& db, const std::string& table_oid, const TablePolicy& table);
// The occ_bump_version trigger on the table with this oid, compared with what migrate installs for
// `table` (function, body, events, WHEN on the version column).
BumpTrigger bump_trigger_state(PgConnection& db, const std::string& table_oid, const TablePolicy& table);

}  // namespace occ
