// PlanCache: an LRU list plus a map of views into it; one instance per thread.
#include "rules/plan_cache.h"

#include <optional>
#include <stdexcept>

#include "rules/sql_lexer.h"

namespace occ {

namespace {

// A constant as key_value() spells it, read from the text at its token: a '...' string without a
// prefix, or an unsigned integer of at most 9 digits (always an int4 constant). Nullopt for any
// other token.
std::optional<std::string> plain_constant(std::string_view sql, int token) {
  const std::size_t n = sql.size();
  if (token < 0 || static_cast<std::size_t>(token) >= n) return std::nullopt;
  const auto at = static_cast<std::size_t>(token);
  if (sql_digit(sql[at])) {
    std::size_t j = at;
    while (j < n && sql_digit(sql[j])) ++j;
    if (j - at > 9 || (j < n && (sql[j] == '.' || sql_ident_char(sql[j])))) return std::nullopt;
    return std::to_string(std::stol(std::string(sql.substr(at, j - at))));
  }
  // A string continued on the next line is not one token: the caller's comparison with the parsed
  // value finds that.
  if (sql[at] != '\'' || sql_string_prefixed(sql, at)) return std::nullopt;
  std::string value;
  for (std::size_t j = at + 1; j < n; ++j) {
    if (sql[j] != '\'') {
      value += sql[j];
    } else if (j + 1 < n && sql[j + 1] == '\'') {
      value += '\'';
      ++j;
    } else {
      return value;
    }
  }
  return std::nullopt;
}

// Every piece of `analysis` that comes from a constant of `sql`, with `change` applied: it
// returns the piece's new text, or false when the piece cannot be re-read. What a write takes
// from its constants: key pins, the version condition, the values it sets (for the audit); and
// the arguments of an EXECUTE, which name the row a prepared write checks.
// `Analysis` is SqlAnalysis, or const SqlAnalysis to only look.
template <typename Analysis, typename Change>
bool for_each_constant(Analysis& analysis, Change change) {
  for (auto& st : analysis.statements) {
    for (auto& arg : st.execute_args)
      if (arg && arg->param_number == 0 && !change(arg->literal, std::optional<int>(arg->token), TextRange{}))
        return false;
    for (auto& site : st.writes) {
      for (auto* pins : {&site.pins, &site.inserted_pins})
        for (auto& pin : *pins)
          for (auto& value : pin.values)
            if (value.param_number == 0 && !change(value.literal, std::optional<int>(value.token), TextRange{}))
              return false;
      for (auto& facts : site.versions)
        if (facts.condition.kind == VersionUse::Kind::equality &&
            !change(facts.condition.expected, std::nullopt, facts.condition.expected_at))
          return false;
      for (auto& item : site.set_items)
        if (!change(item.value, std::nullopt, item.value_at)) return false;
    }
  }
  return true;
}

// The text of a piece: a constant's token (`token`) or a range.
std::optional<std::string> piece(std::string_view sql, std::optional<int> token, TextRange range) {
  if (token) return plain_constant(sql, *token);
  if (!range.valid() || static_cast<std::size_t>(range.end) > sql.size()) return std::nullopt;
  return std::string(sql.substr(static_cast<std::size_t>(range.begin), static_cast<std::size_t>(range.end - range.begin)));
}

// Whether every piece `analysis` took from a constant reads the same from `sql`.
bool same_constants(const SqlAnalysis& analysis, std::string_view sql) {
  return for_each_constant(analysis, [&](const std::string& text, std::optional<int> token, TextRange range) {
    const auto again = piece(sql, token, range);
    return again && *again == text;
  });
}

// Whether texts of the same literal_shape can share `analysis` (of `sql`): it parsed, sets no
// search_path (whose names would be constants), and every piece it took from a constant can be
// read again from another text at the same place.
bool shareable(const SqlAnalysis& analysis, std::string_view sql) {
  if (analysis.parse_failed) return false;
  for (const StatementAnalysis& st : analysis.statements)
    if (st.search_path_change) return false;
  return same_constants(analysis, sql);
}

// `shared`, analysed from another text of the same shape, as the analysis of `sql`; null when a
// piece cannot be re-read.
std::shared_ptr<const SqlAnalysis> rebased(const std::shared_ptr<const SqlAnalysis>& shared, std::string_view sql) {
  if (same_constants(*shared, sql)) return shared;
  auto copy = std::make_shared<SqlAnalysis>(*shared);
  const bool ok = for_each_constant(*copy, [&](std::string& text, std::optional<int> token, TextRange range) {
    auto again = piece(sql, token, range);
    if (!again) return false;
    text = std::move(*again);
    return true;
  });
  return ok ? copy : nullptr;
}

}  // namespace

// Whether a string parses can depend on what is in it (escapes in E'' and U&'', the encoding of
// non-ASCII bytes): a text with such a string gets no shape.
std::string literal_shape(std::string_view sql) {
  std::string shape;
  bool shaped = true;
  auto copy = [&] {
    if (shape.empty()) shape.assign(1, '\0').append(sql);
  };
  lex_sql(sql, [&](const Lexeme& lx) {
    switch (lx.kind) {
      case Lexeme::Kind::number:
        copy();
        for (std::size_t k = lx.begin; k < lx.end; ++k)
          if (sql_digit(sql[k])) shape[k + 1] = '0';
        return true;
      case Lexeme::Kind::string:
        if (sql_string_prefixed(sql, lx.begin)) {
          shaped = false;
          return false;
        }
        [[fallthrough]];
      case Lexeme::Kind::dollar_string:
        copy();
        for (std::size_t k = lx.body_begin; k < lx.body_end; ++k) {
          if (static_cast<unsigned char>(sql[k]) >= 0x80) {
            shaped = false;
            return false;
          }
          shape[k + 1] = 'x';
        }
        return true;
      default:
        return true;
    }
  });
  return shaped ? shape : std::string();
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
      if (auto analysis = rebased(it->second->analysis, sql)) {
        ++hits_;
        entries_.splice(entries_.begin(), entries_, it->second);
        return analysis;
      }
    }
  }
  ++misses_;
  auto analysis = std::make_shared<const SqlAnalysis>(analyze_sql(sql, rules));
  std::string key = !shape.empty() && shareable(*analysis, sql) ? std::move(shape) : std::string(sql);
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
