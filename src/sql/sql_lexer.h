// The few token classes that the pre-filter and the plan cache's literal shape need from
// PostgreSQL's lexer, under either standard_conforming_strings: enough to tell names, constants,
// parameters and comments apart, without allocating. Never a parser.
#pragma once

#include <cstddef>
#include <string_view>

namespace occ {

struct Lexeme {
  enum class Kind {
    word,           // a keyword or bare name: letters, digits, _, $, bytes >= 0x80
    quoted_name,    // "..." ("" inside is one quote); body excludes the quotes
    string,         // '...' with any prefix (E, U&, B, X, a type name) before it; body excludes the quotes
    dollar_string,  // $tag$...$tag$; body is what lies between the tags
    number,         // 12, 1.5, .5, 1e-3
    parameter,      // $1
    comment,        // -- to the end of the line, or /* ... */ (nested)
    other,          // one character of punctuation or space
  };
  Kind kind;
  std::size_t begin;  // the whole lexeme: [begin, end)
  std::size_t end;
  std::size_t body_begin;  // quoted_name, string, dollar_string: the content
  std::size_t body_end;
  bool escapes = false;  // string: a backslash escapes the next character (E'', or '' with the setting off)
  bool by_setting = false;  // string: escapes only because standard_conforming_strings is off
};

inline bool sql_ident_start(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || static_cast<unsigned char>(ch) >= 0x80;
}
inline bool sql_digit(char ch) { return ch >= '0' && ch <= '9'; }
inline bool sql_ident_char(char ch) { return sql_ident_start(ch) || sql_digit(ch) || ch == '$'; }
// Whether the quote at `at` opens a prefixed string: E'', U&'', B'', X'' or a typed literal
// written without a space (`date'...'`), whose content is not a plain constant's.
inline bool sql_string_prefixed(std::string_view sql, std::size_t at) {
  return at > 0 && (sql_ident_char(sql[at - 1]) || sql[at - 1] == '&');
}

// Whether the prefix right before the quote at `at` is the one-letter token `letter` (any case).
inline bool sql_prefix_letter(std::string_view sql, std::size_t at, char letter) {
  return at > 0 && (sql[at - 1] | 0x20) == letter && (at == 1 || !sql_ident_char(sql[at - 2]));
}

// After the closing quote at `i - 1`: where a continuation of the string on a later line (only
// spaces, newlines and -- comments between, scan.l's quotecontinue) opens, or npos.
inline std::size_t sql_string_continues(std::string_view sql, std::size_t i) {
  const std::size_t n = sql.size();
  while (i < n && (sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\f' || (sql[i] == '-' && i + 1 < n && sql[i + 1] == '-'))) {
    if (sql[i] != '-') {
      ++i;
      continue;
    }
    while (i < n && sql[i] != '\n' && sql[i] != '\r') ++i;
  }
  if (i >= n || (sql[i] != '\n' && sql[i] != '\r')) return std::string_view::npos;
  for (;;) {
    while (i < n && (sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\n' || sql[i] == '\r' || sql[i] == '\f')) ++i;
    if (i + 1 < n && sql[i] == '-' && sql[i + 1] == '-') {
      while (i < n && sql[i] != '\n' && sql[i] != '\r') ++i;
      if (i >= n) return std::string_view::npos;
      continue;
    }
    return i < n && sql[i] == '\'' ? i : std::string_view::npos;
  }
}

// Calls visit(const Lexeme&) for each lexeme of `sql` in order; stops when it returns false.
// Unterminated strings, names and comments run to the end of the text. A plain '...' string
// follows `standard_conforming_strings`; E'...' always escapes; B'', X'' and U&'' never do.
template <typename Visit>
void lex_sql(std::string_view sql, Visit visit, bool standard_conforming_strings = true) {
  const std::size_t n = sql.size();
  std::size_t continued_at = std::string_view::npos;  // a string continues with the quote here
  bool continued_escapes = false;                      // ... read as the string it continues
  bool continued_by_setting = false;
  for (std::size_t i = 0; i < n;) {
    const char ch = sql[i];
    Lexeme lx{Lexeme::Kind::other, i, i + 1, i, i};
    if (sql_ident_start(ch)) {
      std::size_t j = i;
      while (j < n && sql_ident_char(sql[j])) ++j;
      lx = {Lexeme::Kind::word, i, j, i, j};
    } else if (ch == '"' || ch == '\'') {
      bool escapes = false;
      bool by_setting = false;
      if (ch == '\'' && i == continued_at) {
        escapes = continued_escapes;
        by_setting = continued_by_setting;
      } else if (ch == '\'') {
        const bool e = sql_prefix_letter(sql, i, 'e');
        const bool never = sql_prefix_letter(sql, i, 'b') || sql_prefix_letter(sql, i, 'x') ||
                           (i >= 2 && sql[i - 1] == '&' && sql_prefix_letter(sql, i - 1, 'u'));
        escapes = e || (!never && !standard_conforming_strings);
        by_setting = escapes && !e;
      }
      std::size_t j = i + 1;
      while (j < n) {
        if (escapes && sql[j] == '\\') {
          j += 2;
        } else if (sql[j] == ch) {
          if (j + 1 < n && sql[j + 1] == ch) {
            j += 2;
          } else {
            break;
          }
        } else {
          ++j;
        }
      }
      const std::size_t body_end = j < n ? j : n;
      lx = {ch == '"' ? Lexeme::Kind::quoted_name : Lexeme::Kind::string, i, j < n ? j + 1 : n, i + 1, body_end,
            escapes, by_setting};
      if (ch == '\'' && j < n) {
        continued_at = sql_string_continues(sql, j + 1);
        continued_escapes = escapes;
        continued_by_setting = by_setting;
      }
    } else if (ch == '$' && i + 1 < n && sql_digit(sql[i + 1])) {
      std::size_t j = i + 1;
      while (j < n && sql_digit(sql[j])) ++j;
      lx = {Lexeme::Kind::parameter, i, j, i, i};
    } else if (ch == '$') {
      std::size_t j = i + 1;
      while (j < n && sql_ident_char(sql[j]) && sql[j] != '$') ++j;
      if (j < n && sql[j] == '$') {
        const std::string_view tag = sql.substr(i, j - i + 1);
        const std::size_t close = sql.find(tag, j + 1);
        const std::size_t body_end = close == std::string_view::npos ? n : close;
        lx = {Lexeme::Kind::dollar_string, i, close == std::string_view::npos ? n : close + tag.size(), j + 1, body_end};
      }
    } else if (ch == '-' && i + 1 < n && sql[i + 1] == '-') {
      const std::size_t j = sql.find('\n', i);
      lx = {Lexeme::Kind::comment, i, j == std::string_view::npos ? n : j, i, i};
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
      lx = {Lexeme::Kind::comment, i, j < n ? j : n, i, i};
    } else if (sql_digit(ch) || (ch == '.' && i + 1 < n && sql_digit(sql[i + 1]))) {
      std::size_t j = i;
      while (j < n && (sql_digit(sql[j]) || sql[j] == '.')) ++j;
      if (j < n && (sql[j] == 'e' || sql[j] == 'E')) {
        std::size_t k = j + 1;
        if (k < n && (sql[k] == '+' || sql[k] == '-')) ++k;
        if (k < n && sql_digit(sql[k])) {
          j = k;
          while (j < n && sql_digit(sql[j])) ++j;
        }
      }
      lx = {Lexeme::Kind::number, i, j, i, j};
    }
    if (!visit(lx)) return;
    i = lx.end;
  }
}

}  // namespace occ
