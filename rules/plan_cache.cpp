// PlanCache: an LRU list plus a map of views into it; one instance per thread.
#include "rules/plan_cache.h"

#include <stdexcept>

namespace occ {

PlanCache::PlanCache(std::size_t capacity, std::size_t max_bytes) : capacity_(capacity), max_bytes_(max_bytes) {
  if (capacity_ == 0) throw std::invalid_argument("PlanCache capacity must be at least 1");
}

void PlanCache::clear() {
  index_.clear();
  entries_.clear();
  bytes_ = 0;
}

std::shared_ptr<const SqlAnalysis> PlanCache::analysis(std::string_view sql, const Rules& rules) {
  // A reload allocates a new Rules; its load time tells it apart even if the address is reused.
  if (&rules != rules_ || rules.loaded_at != rules_loaded_at_) {
    clear();
    rules_ = &rules;
    rules_loaded_at_ = rules.loaded_at;
  }
  if (auto it = index_.find(sql); it != index_.end()) {
    ++hits_;
    entries_.splice(entries_.begin(), entries_, it->second);
    return it->second->analysis;
  }
  ++misses_;
  auto analysis = std::make_shared<const SqlAnalysis>(analyze_sql(sql, rules));
  if (sql.size() > max_bytes_ / 64) return analysis;
  while (!entries_.empty() && (entries_.size() >= capacity_ || bytes_ + sql.size() > max_bytes_)) {
    bytes_ -= entries_.back().sql.size();
    index_.erase(entries_.back().sql);
    entries_.pop_back();
  }
  entries_.push_front(Entry{std::string(sql), analysis});
  index_.emplace(entries_.front().sql, entries_.begin());
  bytes_ += sql.size();
  return analysis;
}

PlanCache& thread_plan_cache() {
  thread_local PlanCache cache;
  return cache;
}

}  // namespace occ
