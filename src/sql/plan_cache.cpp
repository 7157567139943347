// PlanCache: an LRU list plus a map of views into it; one instance per thread.
#include "sql/plan_cache.h"

#include <optional>
#include <stdexcept>

#include "sql/literal.h"
#include "sql/sql_lexer.h"

namespace occ {

namespace {

// A constant as key_value() spells it, read from the text at its token. Texts are shared by shape
// only where their reading does not depend on the session's string syntax, so the default one.
std::optional<std::string> plain_constant(std::string_view sql, int token) {
  if (token < 0 || static_cast<std::size_t>(token) >= sql.size()) return std::nullopt;
  auto constant = read_constant(sql, static_cast<std::size_t>(token));
  if (!constant) return std::nullopt;
  return std::move(constant->value);
}

// Whether how `sql` reads depends on `syntax` being other than the default: a backslash (an escape
// with standard_conforming_strings off, or a \u escape whose bytes depend on the encoding) or an
// ampersand (U&'', refused with the setting off, its escapes encoding-dependent).
bool reads_by_syntax(std::string_view sql, StringSyntax syntax) {
  if (syntax == StringSyntax{}) return false;
  return sql.find_first_of("\\&") != std::string_view::npos;
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

std::shared_ptr<const SqlAnalysis> PlanCache::analysis(std::string_view sql, const Rules& rules, StringSyntax syntax) {
  // A reload allocates a new Rules; its load time tells it apart even if the address is reused.
  if (&rules != rules_ || rules.loaded_at != rules_loaded_at_) {
    clear();
    rules_ = &rules;
    rules_loaded_at_ = rules.loaded_at;
  }
  // A text that reads differently under `syntax` is kept under its own key: two NULs (which no
  // SQL text and no literal_shape starts with), the syntax, then the text; it is never shared by
  // shape.
  std::string own_key;
  if (reads_by_syntax(sql, syntax)) {
    own_key.assign(2, '\0');
    own_key += static_cast<char>('0' + (syntax.standard_conforming_strings ? 1 : 0) + (syntax.utf8 ? 2 : 0));
    own_key.append(sql);
  }
  const std::string_view key = own_key.empty() ? sql : std::string_view(own_key);
  if (auto it = index_.find(key); it != index_.end()) {
    ++hits_;
    entries_.splice(entries_.begin(), entries_, it->second);
    return it->second->analysis;
  }
  if (sql.size() > max_bytes_ / 64 || sql.find('\0') != std::string_view::npos) {
    ++misses_;
    return std::make_shared<const SqlAnalysis>(analyze_sql(sql, rules, syntax));
  }
  std::string shape = own_key.empty() ? literal_shape(sql) : std::string();
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
  auto analysis = std::make_shared<const SqlAnalysis>(analyze_sql(sql, rules, syntax));
  std::string stored = !shape.empty() && shareable(*analysis, sql) ? std::move(shape) : std::string(key);
  while (!entries_.empty() && (entries_.size() >= capacity_ || bytes_ + stored.size() > max_bytes_)) {
    bytes_ -= entries_.back().sql.size();
    index_.erase(entries_.back().sql);
    entries_.pop_back();
  }
  bytes_ += stored.size();
  entries_.push_front(Entry{std::move(stored), analysis});
  index_.emplace(entries_.front().sql, entries_.begin());
  return analysis;
}

PlanCache& thread_plan_cache() {
  thread_local PlanCache cache;
  return cache;
}

}  // namespace occ
