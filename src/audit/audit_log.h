// Conflict and forced-write records (SPEC 3.7): JSON lines, optional occ.conflict_log rows,
// and a bounded list of recent ones for the stats page. Never blocks the client path.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace occ {

struct Config;

namespace audit {

// How many records recent() keeps in memory.
inline constexpr std::size_t kRecentCapacity = 200;
// Records waiting for the writer; beyond this record() drops (and counts) instead of waiting.
inline constexpr std::size_t kQueueCapacity = 10000;

// Starts the writer thread; file from config.audit_file (empty: the main log), table insert when
// config.audit_table. Safe to call once at start-up.
void start(const Config& config);
void stop();
// Opens log.audit_file again by name (SIGHUP, after logrotate); returns why it could not, empty on
// success or without an audit file. Lines queued meanwhile are not lost.
std::string reopen_file();

// Queue one record (kind: "conflict", "shadow_conflict", "merged", "shadow_merged", "forced_write");
// returns at once.
// `event` must be a JSON object; it gets a "ts" field when it has none. Records queued before
// start() are written once it runs; when the queue is full the record is dropped and counted.
void record(nlohmann::json event);

// Most recent records, newest first, at most `limit`.
std::vector<nlohmann::json> recent(std::size_t limit = 100);

// The recent record whose "id" is `id`; null once it has left the recent list (or never was).
nlohmann::json find(std::string_view id);

// A fresh record id (16 hex digits) for a record whose event came without one.
std::string new_id();

// ISO-8601 UTC with milliseconds, e.g. "2024-05-01T12:34:56.789Z".
std::string format_timestamp(std::chrono::system_clock::time_point t);

}  // namespace audit
}  // namespace occ
