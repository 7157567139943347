// PlanCache: an LRU list plus a map of views into it; one instance per thread.
#include "rules/plan_cache.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace occ {

namespace {

bool ident_start(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || static_cast<unsigned char>(ch) >= 0x80;
}
bool ident_char(char ch) { return ident_start(ch) || (ch >= '0' && ch <= '9') || ch == '$'; }
bool digit(char ch) { return ch >= '0' && ch <= '9'; }

// Positions and the statement's structure are all an analysis takes from a text unless it has a
// checked write (key pins, the version condition, the values for the audit) or a search_path.
bool takes_no_constants(const SqlAnalysis& analysis) {
  if (analysis.parse_failed) return false;
  for (const StatementAnalysis& st : analysis.statements)
    if (!st.writes.empty() || st.search_path_change) return false;
  return true;
}

}  // namespace

// Follows PostgreSQL's lexer (standard_conforming_strings on, as libpg_query parses) only as far
// as telling constants from names, parameters and comments.
std::string literal_shape(std::string_view sql) {
  std::string shape;
  auto ensure_copy = [&] {
    if (shape.empty()) shape.assign(1, '\0').append(sql);
  };
  auto blank = [&](std::size_t from, std::size_t to, char with) {
    ensure_copy();
    for (std::size_t k = from; k < to; ++k) shape[k + 1] = with;
  };
  const std::size_t n = sql.size();
  std::size_t i = 0;
  bool after_e = false;  // the previous token is the bare word E: a string after it has backslash escapes
  while (i < n) {
    const char ch = sql[i];
    const bool e_prefix = std::exchange(after_e, false);
    if (ident_start(ch)) {
      std::size_t j = i;
      while (j < n && ident_char(sql[j])) ++j;
      after_e = j == i + 1 && (ch == 'e' || ch == 'E') && j < n && sql[j] == '\'';
      i = j;
    } else if (ch == '"') {
      std::size_t j = i + 1;
      while (j < n && !(sql[j] == '"' && !(j + 1 < n && sql[j + 1] == '"'))) j += sql[j] == '"' ? 2 : 1;
      i = j + 1;
    } else if (ch == '\'') {
      std::size_t j = i + 1;
      for (; j < n; ++j) {
        if (e_prefix && sql[j] == '\\') {
          ++j;
        } else if (sql[j] == '\'') {
          if (j + 1 < n && sql[j + 1] == '\'') {
            ++j;
          } else {
            break;
          }
        }
      }
      blank(i + 1, std::min(j, n), 'x');
      i = j + 1;
    } else if (ch == '$') {
      std::size_t j = i + 1;
      if (j < n && digit(sql[j])) {  // a parameter
        while (j < n && digit(sql[j])) ++j;
        i = j;
        continue;
      }
      while (j < n && ident_char(sql[j]) && sql[j] != '$') ++j;
      if (j < n && sql[j] == '$') {  // $tag$ ... $tag$
        const std::string_view tag = sql.substr(i, j - i + 1);
        const std::size_t close = sql.find(tag, j + 1);
        const std::size_t body_end = close == std::string_view::npos ? n : close;
        blank(j + 1, body_end, 'x');
        i = close == std::string_view::npos ? n : close + tag.size();
      } else {
        i = j;
      }
    } else if (ch == '-' && i + 1 < n && sql[i + 1] == '-') {
      const std::size_t j = sql.find('\n', i);
      i = j == std::string_view::npos ? n : j;
    } else if (ch == '/' && i + 1 < n && sql[i + 1] == '*') {
      int depth = 1;
      std::size_t j = i + 2;
      while (j < n && depth > 0) {
        if (sql[j] == '/' && j + 1 < n && sql[j + 1] == '*') {
          ++depth;
          j += 2;
        } else if (sql[j] == '*' && j + 1 < n && sql[j + 1] == '/') {
          --depth;
          j += 2;
        } else {
          ++j;
        }
      }
      i = j;
    } else if (digit(ch) || (ch == '.' && i + 1 < n && digit(sql[i + 1]))) {
      // 12, 1.5, .5, 1e-3: only the digits change; the rest of the token stays as it is.
      std::size_t j = i;
      while (j < n && (digit(sql[j]) || sql[j] == '.')) ++j;
      if (j < n && (sql[j] == 'e' || sql[j] == 'E')) {
        std::size_t k = j + 1;
        if (k < n && (sql[k] == '+' || sql[k] == '-')) ++k;
        if (k < n && digit(sql[k])) {
          j = k;
          while (j < n && digit(sql[j])) ++j;
        }
      }
      ensure_copy();
      for (std::size_t k = i; k < j; ++k)
        if (digit(sql[k])) shape[k + 1] = '0';
      i = j;
    } else {
      ++i;
    }
  }
  return shape;
}

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
  if (sql.size() > max_bytes_ / 64) {
    ++misses_;
    return std::make_shared<const SqlAnalysis>(analyze_sql(sql, rules));
  }
  std::string shape = literal_shape(sql);
  if (!shape.empty()) {
    if (auto it = index_.find(shape); it != index_.end()) {
      ++hits_;
      entries_.splice(entries_.begin(), entries_, it->second);
      return it->second->analysis;
    }
  }
  ++misses_;
  auto analysis = std::make_shared<const SqlAnalysis>(analyze_sql(sql, rules));
  std::string key = !shape.empty() && takes_no_constants(*analysis) ? std::move(shape) : std::string(sql);
  while (!entries_.empty() && (entries_.size() >= capacity_ || bytes_ + key.size() > max_bytes_)) {
    bytes_ -= entries_.back().sql.size();
    index_.erase(entries_.back().sql);
    entries_.pop_back();
  }
  bytes_ += key.size();
  entries_.push_front(Entry{std::move(key), analysis});
  index_.emplace(entries_.front().sql, entries_.begin());
  return analysis;
}

PlanCache& thread_plan_cache() {
  thread_local PlanCache cache;
  return cache;
}

}  // namespace occ
