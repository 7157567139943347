// Conflict and forced-write records (SPEC 3.7): JSON lines, optional occ.conflict_log rows,
// and a bounded list of recent ones for the stats page. Never blocks the client path.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace occ {

struct Config;

namespace audit {

// Starts the writer thread; file from config.audit_file (empty: the main log), table insert when
// config.audit_table. Safe to call once at start-up.
void start(const Config& config);
void stop();

// Queue one record (kind: "conflict", "shadow_conflict", "forced_write"); returns at once.
void record(nlohmann::json event);

// Most recent records, newest first, at most `limit`.
std::vector<nlohmann::json> recent(std::size_t limit = 100);

}  // namespace audit
}  // namespace occ
