// lift_constants: the lexer's tokens, a context test around each constant, read_constant for its value.
#include "sql/lifted_constants.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "sql/sql_lexer.h"

namespace occ {
namespace {

bool is_operator_char(char ch) { return ch != '\0' && std::strchr("+-*/<>=~!@#%^&|`?", ch) != nullptr; }

bool word_is(std::string_view sql, const Lexeme& lx, std::string_view word) {
  if (lx.kind != Lexeme::Kind::word || lx.end - lx.begin != word.size()) return false;
  for (std::size_t k = 0; k < word.size(); ++k)
    if ((sql[lx.begin + k] | 0x20) != word[k]) return false;
  return true;
}

template <std::size_t N>
bool word_in(std::string_view sql, const Lexeme& lx, const std::array<std::string_view, N>& words) {
  for (std::string_view w : words)
    if (word_is(sql, lx, w)) return true;
  return false;
}

// Keywords after which a clause or a boolean operand ends: a constant before one is a whole operand.
constexpr std::array<std::string_view, 14> kClauseAfter = {"and",   "or",    "returning", "where", "order",
                                                           "limit", "offset", "for",      "group", "having",
                                                           "from",  "then",  "else",      "end"};
// Keywords before which an expression starts: a string after one is no typed literal's.
constexpr std::array<std::string_view, 9> kExpressionBefore = {"select", "when", "then", "else", "and",
                                                               "or",     "not",  "where", "returning"};
constexpr std::array<std::string_view, 5> kStatements = {"select", "insert", "update", "delete", "with"};
constexpr std::array<std::string_view, 7> kComparisons = {"=", "<>", "!=", "<", ">", "<=", ">="};
constexpr std::array<std::string_view, 4> kArithmetic = {"+", "-", "*", "/"};
// Keywords an operator after which is a prefix one (`BY -1`, `WHERE -x`), not an operand.
constexpr std::array<std::string_view, 30> kNoOperand = {
    "select", "where",  "and",   "or",     "not",   "when",     "then",      "else",   "case",  "by",
    "limit",  "offset", "having", "on",    "returning", "is",   "like",      "ilike",  "between", "values",
    "distinct", "all",  "any",   "some",   "array", "set",      "in",        "fetch",  "escape", "interval"};

bool is_char(std::string_view sql, const Lexeme& lx, char ch) {
  return lx.kind == Lexeme::Kind::other && sql[lx.begin] == ch;
}

// The type the server gives a literal of only digits (scan.l, then make_const).
int32_t integer_type(std::string_view digits) {
  std::size_t first = digits.find_first_not_of('0');
  const std::string_view significant = first == std::string_view::npos ? std::string_view("0") : digits.substr(first);
  auto fits = [&](std::string_view max) {
    return significant.size() < max.size() || (significant.size() == max.size() && significant <= max);
  };
  if (fits("2147483647")) return kOidInt4;
  if (fits("9223372036854775807")) return kOidInt8;
  return kOidNumeric;
}

}  // namespace

std::optional<LiftedConstants> lift_constants(std::string_view sql, StringSyntax syntax) {
  std::vector<Lexeme> tokens;  // without spaces and comments
  bool refused = false;
  bool non_ascii = false;
  lex_sql(
      sql,
      [&](const Lexeme& lx) {
        if (lx.kind == Lexeme::Kind::comment) return true;
        if (lx.kind == Lexeme::Kind::other && std::strchr(" \t\n\r\f", sql[lx.begin])) return true;
        if (lx.kind == Lexeme::Kind::parameter || sql[lx.begin] == '\0') refused = true;
        if (!tokens.empty() && is_char(sql, tokens.back(), ';')) refused = true;  // a second statement
        for (std::size_t k = lx.begin; k < lx.end; ++k) non_ascii |= static_cast<unsigned char>(sql[k]) >= 0x80;
        tokens.push_back(lx);
        return !refused;
      },
      syntax.standard_conforming_strings);
  if (refused || tokens.empty() || !word_in(sql, tokens.front(), kStatements) || (non_ascii && !syntax.utf8))
    return std::nullopt;

  // The operator right before token i, as one run of operator characters; empty if none.
  auto operator_before = [&](std::size_t i) {
    std::size_t first = i;
    while (first > 0 && tokens[first - 1].kind == Lexeme::Kind::other && is_operator_char(sql[tokens[first - 1].begin]) &&
           (first == i || tokens[first - 1].end == tokens[first].begin))
      --first;
    return sql.substr(tokens[first].begin, first == i ? 0 : tokens[i - 1].end - tokens[first].begin);
  };
  auto cast_after = [&](std::size_t i) {
    return i + 2 < tokens.size() && is_char(sql, tokens[i + 1], ':') && is_char(sql, tokens[i + 2], ':') &&
           tokens[i + 1].end == tokens[i + 2].begin;
  };
  auto boundary_after = [&](std::size_t i) {
    if (i + 1 == tokens.size()) return true;
    const Lexeme& next = tokens[i + 1];
    return is_char(sql, next, ')') || is_char(sql, next, ',') || is_char(sql, next, ';') ||
           word_in(sql, next, kClauseAfter);
  };
  auto comparison_before = [&](std::size_t i) {
    const std::string_view op = operator_before(i);
    for (std::string_view c : kComparisons)
      if (op == c) return true;
    return false;
  };
  // A name, a number or a closing parenthesis: what a binary operator has on its left.
  auto operand_at = [&](std::size_t k) {
    const Lexeme& lx = tokens[k];
    if (lx.kind == Lexeme::Kind::number || lx.kind == Lexeme::Kind::quoted_name) return true;
    if (lx.kind == Lexeme::Kind::word) return !word_in(sql, lx, kNoOperand);
    return is_char(sql, lx, ')');
  };
  // A binary + - * / right before token i (`abalance + 5`): its right operand is a whole operand.
  auto arithmetic_before = [&](std::size_t i) {
    const std::string_view op = operator_before(i);
    if (i < 2 || std::find(kArithmetic.begin(), kArithmetic.end(), op) == kArithmetic.end()) return false;
    return operand_at(i - 2);
  };
  // A string after a name is a typed literal's (DATE '...', varchar '...').
  auto expression_starts_before = [&](std::size_t i) {
    if (i == 0) return false;
    const Lexeme& prev = tokens[i - 1];
    if (prev.kind == Lexeme::Kind::other)
      return is_operator_char(sql[prev.begin]) || std::strchr("(,[", sql[prev.begin]) != nullptr;
    return word_in(sql, prev, kExpressionBefore);
  };

  // The rewriter's own constant (the values read, for a conflict's detail) as an occ function's
  // argument: a text that changes at every read.
  auto proxy_argument = [&](std::size_t i) {
    const Lexeme& lx = tokens[i];
    return lx.kind == Lexeme::Kind::dollar_string && sql.substr(lx.begin, lx.body_begin - lx.begin) == "$occ$" &&
           i > 0 && i + 1 < tokens.size() && (is_char(sql, tokens[i - 1], ',') || is_char(sql, tokens[i - 1], '(')) &&
           (is_char(sql, tokens[i + 1], ',') || is_char(sql, tokens[i + 1], ')'));
  };

  LiftedConstants out;
  std::size_t copied = 0;   // bytes of `sql` copied to out.sql
  int chars = 0;            // characters of `sql` before `copied`
  auto count_chars = [&](std::size_t from, std::size_t to) {
    int n = 0;
    for (std::size_t k = from; k < to; ++k) n += (static_cast<unsigned char>(sql[k]) & 0xC0) != 0x80;
    return n;
  };
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const Lexeme& lx = tokens[i];
    int32_t type = kOidUnknown;
    std::size_t operand = i;  // where the operand starts: the number, or its prefix minus
    if (lx.kind == Lexeme::Kind::number) {
      bool digits_only = true;
      for (std::size_t k = lx.begin; k < lx.end; ++k) digits_only &= sql_digit(sql[k]);
      // `1_000`, `0x1F`, `12abc`: not a whole integer token.
      if (!digits_only || (lx.end < sql.size() && sql_ident_char(sql[lx.end]))) continue;
      type = integer_type(sql.substr(lx.begin, lx.end - lx.begin));
      // A prefix minus folds into the literal (`-5` is one int4 constant, and so is -2147483648):
      // the number is lifted behind it (`-$1`) only where alone it is int4, as its negation is.
      if (i > 0 && operator_before(i) == "-" && (i < 2 || !operand_at(i - 2))) {
        if (type != kOidInt4) continue;
        operand = i - 1;
      }
    } else if (lx.kind == Lexeme::Kind::string) {
      if (sql_string_prefixed(sql, lx.begin) || (lx.by_setting && sql.substr(lx.body_begin, lx.body_end - lx.body_begin).find('\\') != std::string_view::npos))
        continue;
      if (!expression_starts_before(i)) continue;
    } else if (lx.kind != Lexeme::Kind::dollar_string || !expression_starts_before(i)) {
      continue;
    }
    const bool whole_operand = (comparison_before(operand) || arithmetic_before(operand)) && boundary_after(i);
    if (!cast_after(i) && !whole_operand && !proxy_argument(i)) continue;
    auto constant = read_constant(sql, lx.begin, syntax);
    if (!constant || constant->end != lx.end) continue;  // refused, or continued on another line

    const int at = chars + count_chars(copied, lx.begin);
    const std::string param = "$" + std::to_string(out.values.size() + 1);
    out.sql.append(sql.substr(copied, lx.begin - copied)).append(param);
    const int removed = count_chars(lx.begin, lx.end);
    out.shifts.push_back({at, removed, static_cast<int>(param.size())});
    out.param_positions.push_back(at + 1);
    out.param_types.push_back(type);
    out.values.push_back(lx.kind == Lexeme::Kind::number ? std::string(sql.substr(lx.begin, lx.end - lx.begin))
                                                         : std::move(constant->value));
    chars = at + removed;
    copied = lx.end;
  }
  if (out.values.empty()) return std::nullopt;
  out.sql.append(sql.substr(copied));
  return out;
}

}  // namespace occ
