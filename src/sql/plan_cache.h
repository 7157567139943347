// Analyses of SQL texts, kept per io thread (no locks) so a repeated statement is parsed once.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "config/rules.h"
#include "sql/sql_analysis.h"

namespace occ {

// The cache key that texts differing only in their constants share: every digit of a numeric
// constant becomes 0 and every byte inside a string constant x, so offsets stay those of `sql`;
// identifiers, parameters ($n) and comments are kept. Starts with a NUL, which no SQL text
// contains, so it never equals a text. Empty when `sql` has no constant.
std::string literal_shape(std::string_view sql);

// Least-recently-used map from SQL text to its analysis under one Rules object. Analyses depend
// on which names are protected, so the cache empties itself when it sees other rules. An analysis
// whose pieces taken from constants can be read again at the same offsets of another text (key
// pins, version conditions, SET values; not SET search_path) is kept under the text's
// literal_shape, so the simple protocol's `... WHERE id = 42`, `... = 43` parse once; a text that
// reads differently under the session's string syntax is kept per syntax and never shared. Bounded
// in entries and in bytes of SQL text; a text above max_bytes / 64 (or holding a NUL) is analysed
// but not kept (a bulk statement is rarely repeated verbatim).
class PlanCache {
 public:
  explicit PlanCache(std::size_t capacity = 4096, std::size_t max_bytes = 32u << 20);

  // The analysis of `sql` as a session with `syntax` reads it.
  std::shared_ptr<const SqlAnalysis> analysis(std::string_view sql, const Rules& rules, StringSyntax syntax = {});

  std::size_t size() const { return entries_.size(); }
  std::uint64_t hits() const { return hits_; }
  std::uint64_t misses() const { return misses_; }
  void clear();

 private:
  struct Entry {
    std::string sql;
    std::shared_ptr<const SqlAnalysis> analysis;
  };

  std::size_t capacity_;
  std::size_t max_bytes_;
  std::size_t bytes_ = 0;                                                   // SQL text held
  std::list<Entry> entries_;                                                // most recently used first
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;  // views into entries_
  const Rules* rules_ = nullptr;
  std::chrono::system_clock::time_point rules_loaded_at_{};
  std::uint64_t hits_ = 0;
  std::uint64_t misses_ = 0;
};

// This thread's cache.
PlanCache& thread_plan_cache();

}  // namespace occ
