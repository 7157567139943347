// Process-wide counters: per-thread shards of relaxed atomics, summed only when someone reads them.
#include "stats/counters.h"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

namespace occ::stats {
namespace {

constexpr unsigned kCounters = static_cast<unsigned>(Counter::count_);
constexpr unsigned kGauges = static_cast<unsigned>(Gauge::count_);
constexpr unsigned kTableCounters = static_cast<unsigned>(TableCounter::count_);

// More shards than io threads in practice, so two threads rarely share a cache line's writes.
constexpr unsigned kShards = 64;
constexpr std::size_t kCacheLine = 64;

using std::chrono::microseconds;
using std::chrono::milliseconds;
constexpr std::array<std::chrono::nanoseconds, 10> kLatencyBounds{
    microseconds(5),   microseconds(10),  microseconds(25), microseconds(50),
    microseconds(100), microseconds(250), microseconds(500), milliseconds(1),
    milliseconds(5),   milliseconds(25)};
constexpr unsigned kLatencyBuckets = kLatencyBounds.size() + 1;  // the last one is +Inf

struct alignas(kCacheLine) Shard {
  std::array<std::atomic<uint64_t>, kCounters> counters{};
  std::array<std::atomic<int64_t>, kGauges> gauges{};
  std::array<std::atomic<uint64_t>, kLatencyBuckets> latency_buckets{};
  std::atomic<uint64_t> latency_sum_ns{0};
};

struct alignas(kCacheLine) TableShard {
  std::array<std::atomic<uint64_t>, kTableCounters> counters{};
  std::atomic<uint64_t> unchecked_writes{0};
};

struct TableSlot {
  std::array<TableShard, kShards> shards;
};

struct Registry {
  std::array<Shard, kShards> shards;
  std::atomic<unsigned> next_shard{0};
  std::shared_mutex tables_mutex;
  // Slots are never removed, so pointers handed to thread caches stay valid for the process.
  std::map<std::string, std::unique_ptr<TableSlot>, std::less<>> tables;
};

Registry& registry() {
  static Registry r;
  return r;
}

unsigned my_shard() noexcept {
  thread_local const unsigned shard =
      registry().next_shard.fetch_add(1, std::memory_order_relaxed) % kShards;
  return shard;
}

Shard& shard() noexcept { return registry().shards[my_shard()]; }

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

TableSlot& table_slot(std::string_view table) {
  thread_local std::unordered_map<std::string, TableSlot*, StringHash, std::equal_to<>> cache;
  if (auto it = cache.find(table); it != cache.end()) return *it->second;

  Registry& r = registry();
  TableSlot* slot = nullptr;
  {
    std::shared_lock lock(r.tables_mutex);
    if (auto it = r.tables.find(table); it != r.tables.end()) slot = it->second.get();
  }
  if (!slot) {
    std::unique_lock lock(r.tables_mutex);
    auto& owned = r.tables[std::string(table)];
    if (!owned) owned = std::make_unique<TableSlot>();
    slot = owned.get();
  }
  cache.emplace(std::string(table), slot);
  return *slot;
}

struct Described {
  const char* name;
  const char* help;
};

constexpr std::array<Described, kCounters> kCounterInfo{{
    {"connections_total", "Client connections accepted."},
    {"connections_refused", "Client connections refused (connection limit or shutdown)."},
    {"queries_simple", "Simple-protocol Query messages."},
    {"queries_extended", "Extended-protocol Execute messages."},
    {"statements_rewritten", "Statements rewritten with a version check or increment."},
    {"conflicts", "Writes refused with a version conflict."},
    {"shadow_conflicts", "Version conflicts detected in shadow mode and let through."},
    {"merges", "Stale writes merged column by column (on_conflict: merge)."},
    {"shadow_merges", "Stale writes that would have been merged, detected in shadow mode and let through as written."},
    {"forced_writes", "Writes that overrode the version check with /*occ:force*/."},
    {"force_refused", "Force hints refused because the role is not allowed."},
    {"unknown_version_rejected", "Writes refused because the expected version was unknown."},
    {"parse_failures_passed", "Statements libpg_query could not parse, forwarded unchanged."},
    {"unsupported_passed", "Unsupported write forms on protected tables, forwarded unchanged."},
    {"unsupported_rejected", "Unsupported write forms on protected tables, refused."},
    {"reads_tracked", "Statements on protected tables whose returned rows were noted in the read set."},
    {"reads_untracked", "SELECTs on protected tables whose rows cannot be traced (aggregates, DISTINCT, set operations...)."},
    {"rules_reload_ok", "Successful rules reloads."},
    {"rules_reload_failed", "Failed rules reloads (the old rules stayed in force)."},
    {"bytes_client_to_server", "Bytes relayed from clients to the server."},
    {"bytes_server_to_client", "Bytes relayed from the server to clients."},
    {"protocol_errors", "Client connections closed for a malformed protocol message."},
    {"upstream_errors", "Failures to connect to or talk with the upstream server."},
    {"cancels_stale", "Cancel requests dropped: their session had nothing in flight, so the statement they meant had ended."},
    {"replies_out_of_sync", "Server replies that matched no request in flight; all but a lone ReadyForQuery end the session."},
    {"audit_dropped", "Audit records dropped because the audit queue was full."},
    {"audit_table_errors", "Audit records that could not be inserted into occ.conflict_log."},
}};

constexpr std::array<Described, kGauges> kGaugeInfo{{
    {"connections_current", "Client connections open now."},
}};

constexpr std::array<Described, kTableCounters> kTableCounterInfo{{
    {"rewritten", "Statements on this table rewritten with a version check or increment."},
    {"conflicts", "Writes on this table refused with a version conflict."},
    {"shadow_conflicts", "Version conflicts on this table detected in shadow mode."},
    {"forced_writes", "Forced writes on this table."},
    {"merges", "Stale writes on this table merged column by column (on_conflict: merge)."},
    {"shadow_merges", "Stale writes on this table that would have been merged, detected in shadow mode."},
}};

// A missing row would leave a null name at the end: catch it when an enum grows.
template <std::size_t N>
constexpr bool all_described(const std::array<Described, N>& info) {
  for (const Described& d : info)
    if (d.name == nullptr || d.help == nullptr) return false;
  return true;
}
static_assert(all_described(kCounterInfo));
static_assert(all_described(kGaugeInfo));
static_assert(all_described(kTableCounterInfo));

}  // namespace

void add(Counter c, uint64_t n) noexcept {
  shard().counters[static_cast<unsigned>(c)].fetch_add(n, std::memory_order_relaxed);
}

void gauge_add(Gauge g, int64_t delta) noexcept {
  shard().gauges[static_cast<unsigned>(g)].fetch_add(delta, std::memory_order_relaxed);
}

void table_add(std::string_view qualified_table, TableCounter c, uint64_t n) {
  table_slot(qualified_table).shards[my_shard()].counters[static_cast<unsigned>(c)].fetch_add(
      n, std::memory_order_relaxed);
}

void unchecked_write(std::string_view qualified_table, uint64_t n) {
  table_slot(qualified_table).shards[my_shard()].unchecked_writes.fetch_add(n, std::memory_order_relaxed);
}

void register_table(std::string_view qualified_table) { table_slot(qualified_table); }

void observe_added_latency(std::chrono::nanoseconds d) noexcept {
  unsigned bucket = 0;
  while (bucket < kLatencyBounds.size() && d > kLatencyBounds[bucket]) ++bucket;
  Shard& s = shard();
  s.latency_buckets[bucket].fetch_add(1, std::memory_order_relaxed);
  s.latency_sum_ns.fetch_add(static_cast<uint64_t>(std::max<int64_t>(d.count(), 0)),
                             std::memory_order_relaxed);
}

Snapshot snapshot() {
  Registry& r = registry();
  Snapshot snap;
  std::array<uint64_t, kLatencyBuckets> buckets{};
  uint64_t sum_ns = 0;
  for (const Shard& s : r.shards) {
    for (unsigned i = 0; i < kCounters; ++i)
      snap.counters[i] += s.counters[i].load(std::memory_order_relaxed);
    for (unsigned i = 0; i < kGauges; ++i)
      snap.gauges[i] += s.gauges[i].load(std::memory_order_relaxed);
    for (unsigned i = 0; i < kLatencyBuckets; ++i)
      buckets[i] += s.latency_buckets[i].load(std::memory_order_relaxed);
    sum_ns += s.latency_sum_ns.load(std::memory_order_relaxed);
  }

  uint64_t cumulative = 0;
  for (unsigned i = 0; i < kLatencyBuckets; ++i) {
    cumulative += buckets[i];
    snap.latency_bucket_counts.push_back(cumulative);
    if (i < kLatencyBounds.size())
      snap.latency_bucket_bounds_seconds.push_back(
          std::chrono::duration<double>(kLatencyBounds[i]).count());
  }
  snap.latency_count = cumulative;
  snap.latency_sum_seconds = static_cast<double>(sum_ns) / 1e9;

  std::shared_lock lock(r.tables_mutex);
  snap.tables.reserve(r.tables.size());
  for (const auto& [table_name, slot] : r.tables) {
    Snapshot::Table& t = snap.tables.emplace_back();
    t.name = table_name;
    for (const TableShard& s : slot->shards) {
      for (unsigned i = 0; i < kTableCounters; ++i)
        t.counters[i] += s.counters[i].load(std::memory_order_relaxed);
      t.unchecked_writes += s.unchecked_writes.load(std::memory_order_relaxed);
    }
  }
  return snap;
}

const char* name(Counter c) { return kCounterInfo[static_cast<unsigned>(c)].name; }
const char* name(Gauge g) { return kGaugeInfo[static_cast<unsigned>(g)].name; }
const char* name(TableCounter c) { return kTableCounterInfo[static_cast<unsigned>(c)].name; }
const char* help(Counter c) { return kCounterInfo[static_cast<unsigned>(c)].help; }
const char* help(Gauge g) { return kGaugeInfo[static_cast<unsigned>(g)].help; }
const char* help(TableCounter c) { return kTableCounterInfo[static_cast<unsigned>(c)].help; }

}  // namespace occ::stats
