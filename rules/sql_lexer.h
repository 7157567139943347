// The few token classes that the pre-filter and the plan cache's literal shape need from
// PostgreSQL's lexer (standard_conforming_strings on, as libpg_query parses): enough to tell
// names, constants, parameters and comments apart, without allocating. Never a parser.
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

// Calls visit(const Lexeme&) for each lexeme of `sql` in order; stops when it returns false.
// Unterminated strings, names and comments run to the end of the text.
template <typename Visit>
void lex_sql(std::string_view sql, Visit visit) {
  const std::size_t n = sql.size();
  bool after_e = false;  // the previous lexeme is the bare word E, right before a quote
  for (std::size_t i = 0; i < n;) {
    const char ch = sql[i];
    const bool escapes = after_e;  // E'...': a backslash escapes the next character
    after_e = false;
    Lexeme lx{Lexeme::Kind::other, i, i + 1, i, i};
    if (sql_ident_start(ch)) {
      std::size_t j = i;
      while (j < n && sql_ident_char(sql[j])) ++j;
      after_e = j == i + 1 && (ch == 'e' || ch == 'E') && j < n && sql[j] == '\'';
      lx = {Lexeme::Kind::word, i, j, i, j};
    } else if (ch == '"' || ch == '\'') {
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
      lx = {ch == '"' ? Lexeme::Kind::quoted_name : Lexeme::Kind::string, i, j < n ? j + 1 : n, i + 1, body_end};
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
