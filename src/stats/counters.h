// Process-wide counters for /stats and /metrics: cheap on the hot path (sharded relaxed atomics).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace occ::stats {

enum class Counter : unsigned {
  connections_total,
  connections_refused,
  queries_simple,
  queries_extended,
  statements_rewritten,
  conflicts,
  shadow_conflicts,
  merges,
  shadow_merges,
  forced_writes,
  force_refused,
  unknown_version_rejected,
  parse_failures_passed,
  unsupported_passed,
  unsupported_rejected,
  reads_tracked,
  reads_untracked,
  rules_reload_ok,
  rules_reload_failed,
  bytes_client_to_server,
  bytes_server_to_client,
  protocol_errors,
  upstream_errors,
  cancels_stale,       // a CancelRequest for a session with nothing in flight: dropped
  replies_out_of_sync, // a server reply that matched no request in flight (Relay::out_of_sync)
  audit_dropped,       // audit queue full: the record was not written
  audit_table_errors,  // a record that did not reach occ.conflict_log
  count_  // keep last
};

enum class Gauge : unsigned { connections_current, count_ };

// Per protected table ("schema.name"), counted where it applies.
enum class TableCounter : unsigned {
  rewritten,
  conflicts,
  shadow_conflicts,
  forced_writes,
  merges,
  shadow_merges,
  count_
};

void add(Counter c, uint64_t n = 1) noexcept;
void gauge_add(Gauge g, int64_t delta) noexcept;
void table_add(std::string_view qualified_table, TableCounter c, uint64_t n = 1);
// A write on a protected table from inside a function, procedure, DO block or trigger, which
// the proxy cannot check (the version trigger reports it).
void unchecked_write(std::string_view qualified_table, uint64_t n = 1);
// Makes a protected table's per-table series exist (at zero) before anything is counted on it,
// so alerts and dashboards see every protected table from the start.
void register_table(std::string_view qualified_table);
// Time the proxy itself spent on one statement (analysis, rewriting, stripping).
void observe_added_latency(std::chrono::nanoseconds d) noexcept;

struct Snapshot {
  std::array<uint64_t, static_cast<unsigned>(Counter::count_)> counters{};
  std::array<int64_t, static_cast<unsigned>(Gauge::count_)> gauges{};
  struct Table {
    std::string name;
    std::array<uint64_t, static_cast<unsigned>(TableCounter::count_)> counters{};
    uint64_t unchecked_writes = 0;  // exported as occproxy_unchecked_writes_total{table}
  };
  std::vector<Table> tables;  // sorted by name
  std::vector<double> latency_bucket_bounds_seconds;  // upper bounds, ascending
  std::vector<uint64_t> latency_bucket_counts;        // cumulative, same length, then +Inf
  uint64_t latency_count = 0;
  double latency_sum_seconds = 0;
};
Snapshot snapshot();

const char* name(Counter c);
const char* name(Gauge g);
const char* name(TableCounter c);
// One sentence for /metrics "# HELP" lines.
const char* help(Counter c);
const char* help(Gauge g);
const char* help(TableCounter c);

}  // namespace occ::stats
