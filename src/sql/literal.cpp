// read_constant: PostgreSQL 15's scan.l (and parser.c for UESCAPE) for the constants a key, a
// version or an assigned value is written as; anything the rules below do not cover is unknown.
#include "sql/literal.h"

#include <cstdint>

#include "sql/sql_lexer.h"

namespace occ {
namespace {

bool is_hex(char ch) { return sql_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F'); }
int hex_value(char ch) { return sql_digit(ch) ? ch - '0' : (ch | 0x20) - 'a' + 10; }
bool is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f'; }

// Past spaces and comments from `i`.
std::size_t skip_blanks(std::string_view sql, std::size_t i) {
  const std::size_t n = sql.size();
  for (;;) {
    while (i < n && is_space(sql[i])) ++i;
    if (i + 1 < n && sql[i] == '-' && sql[i + 1] == '-') {
      while (i < n && sql[i] != '\n' && sql[i] != '\r') ++i;
    } else if (i + 1 < n && sql[i] == '/' && sql[i + 1] == '*') {
      int depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (i + 1 < n && sql[i] == '/' && sql[i + 1] == '*') {
          ++depth;
          i += 2;
        } else if (i + 1 < n && sql[i] == '*' && sql[i + 1] == '/') {
          --depth;
          i += 2;
        } else {
          ++i;
        }
      }
    } else {
      return i;
    }
  }
}

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || c == 0 || i + len > s.size()) return false;
    std::uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

// A code point as the server stores it; false where the server refuses it.
bool add_code_point(std::string& out, std::uint32_t cp, StringSyntax syntax) {
  if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
    return true;
  }
  if (!syntax.utf8) return false;
  if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
  }
  out += static_cast<char>(0x80 | (cp & 0x3F));
  return true;
}

bool high_surrogate(std::uint32_t cp) { return cp >= 0xD800 && cp <= 0xDBFF; }
bool low_surrogate(std::uint32_t cp) { return cp >= 0xDC00 && cp <= 0xDFFF; }

// `count` hex digits at `i`, or nullopt.
std::optional<std::uint32_t> hex_digits(std::string_view s, std::size_t i, std::size_t count) {
  if (i + count > s.size()) return std::nullopt;
  std::uint32_t v = 0;
  for (std::size_t k = 0; k < count; ++k) {
    if (!is_hex(s[i + k])) return std::nullopt;
    v = v * 16 + static_cast<std::uint32_t>(hex_value(s[i + k]));
  }
  return v;
}

enum class Form { standard, escape, unicode, bits, hex };

// One quoted segment opening at `open`, appended to `out` (an escape string decoded, the others
// raw). Returns the position past its closing quote, or npos.
std::size_t read_segment(std::string_view sql, std::size_t open, Form form, std::string& out, bool& high_bytes,
                         StringSyntax syntax) {
  const std::size_t n = sql.size();
  std::size_t i = open + 1;
  while (i < n) {
    const char ch = sql[i];
    if (ch == '\'') {
      if (form != Form::bits && form != Form::hex && i + 1 < n && sql[i + 1] == '\'') {
        out += '\'';
        i += 2;
        continue;
      }
      return i + 1;
    }
    if (form != Form::escape || ch != '\\') {
      out += ch;
      ++i;
      continue;
    }
    if (i + 1 >= n) return std::string_view::npos;
    const char e = sql[i + 1];
    if (e >= '0' && e <= '7') {
      unsigned v = 0;
      std::size_t k = i + 1;
      for (; k < n && k < i + 4 && sql[k] >= '0' && sql[k] <= '7'; ++k) v = v * 8 + static_cast<unsigned>(sql[k] - '0');
      const auto byte = static_cast<unsigned char>(v & 0xFF);
      if (byte == 0) return std::string_view::npos;
      high_bytes = high_bytes || byte >= 0x80;
      out += static_cast<char>(byte);
      i = k;
    } else if (e == 'x' && i + 2 < n && is_hex(sql[i + 2])) {
      unsigned v = static_cast<unsigned>(hex_value(sql[i + 2]));
      std::size_t k = i + 3;
      if (k < n && is_hex(sql[k])) v = v * 16 + static_cast<unsigned>(hex_value(sql[k++]));
      if (v == 0) return std::string_view::npos;
      high_bytes = high_bytes || v >= 0x80;
      out += static_cast<char>(v);
      i = k;
    } else if (e == 'u' || e == 'U') {
      const std::size_t digits = e == 'u' ? 4 : 8;
      const auto cp = hex_digits(sql, i + 2, digits);
      if (!cp) return std::string_view::npos;
      i += 2 + digits;
      std::uint32_t code = *cp;
      if (high_surrogate(code)) {
        // Only `\uXXXX` or `\UXXXXXXXX` holding the low half may follow.
        if (i + 1 >= n || sql[i] != '\\' || (sql[i + 1] != 'u' && sql[i + 1] != 'U')) return std::string_view::npos;
        const std::size_t d2 = sql[i + 1] == 'u' ? 4 : 8;
        const auto low = hex_digits(sql, i + 2, d2);
        if (!low || !low_surrogate(*low)) return std::string_view::npos;
        code = 0x10000 + ((code - 0xD800) << 10) + (*low - 0xDC00);
        i += 2 + d2;
      }
      if (!add_code_point(out, code, syntax)) return std::string_view::npos;
    } else {
      switch (e) {
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        default:
          high_bytes = high_bytes || static_cast<unsigned char>(e) >= 0x80;
          out += e;
      }
      i += 2;
    }
  }
  return std::string_view::npos;
}

// parser.c's str_udeescape: a U&'' body with escape character `esc`.
std::optional<std::string> unicode_unescape(std::string_view body, char esc, StringSyntax syntax) {
  std::string out;
  std::uint32_t first = 0;  // a high surrogate waiting for its low half
  for (std::size_t i = 0; i < body.size();) {
    if (body[i] != esc) {
      if (first) return std::nullopt;
      out += body[i++];
      continue;
    }
    std::optional<std::uint32_t> cp;
    if (i + 1 < body.size() && body[i + 1] == esc) {
      if (first) return std::nullopt;
      out += esc;
      i += 2;
      continue;
    }
    if ((cp = hex_digits(body, i + 1, 4))) {
      i += 5;
    } else if (i + 1 < body.size() && body[i + 1] == '+' && (cp = hex_digits(body, i + 2, 6))) {
      i += 8;
    } else {
      return std::nullopt;
    }
    if (first) {
      if (!low_surrogate(*cp)) return std::nullopt;
      if (!add_code_point(out, 0x10000 + ((first - 0xD800) << 10) + (*cp - 0xDC00), syntax)) return std::nullopt;
      first = 0;
    } else if (high_surrogate(*cp)) {
      first = *cp;
    } else if (!add_code_point(out, *cp, syntax)) {
      return std::nullopt;
    }
  }
  if (first) return std::nullopt;
  return out;
}

// A string constant whose first quote is at `open`, in `form`.
std::optional<Constant> read_string(std::string_view sql, std::size_t open, Form form, StringSyntax syntax) {
  std::string body;
  bool high_bytes = false;
  std::size_t end = read_segment(sql, open, form, body, high_bytes, syntax);
  if (end == std::string_view::npos) return std::nullopt;
  for (std::size_t next; (next = sql_string_continues(sql, end)) != std::string_view::npos;) {
    end = read_segment(sql, next, form, body, high_bytes, syntax);
    if (end == std::string_view::npos) return std::nullopt;
  }
  // Escapes that made bytes above 0x7F must still spell valid characters.
  if (high_bytes && (!syntax.utf8 || !valid_utf8(body))) return std::nullopt;
  switch (form) {
    case Form::standard:
    case Form::escape:
      return Constant{std::move(body), end};
    case Form::bits:
      for (char ch : body)
        if (ch != '0' && ch != '1') return std::nullopt;
      return Constant{std::move(body), end};
    case Form::hex: {
      std::string bits;
      for (char ch : body) {
        if (!is_hex(ch)) return std::nullopt;
        const int v = hex_value(ch);
        for (int b = 3; b >= 0; --b) bits += (v >> b) & 1 ? '1' : '0';
      }
      return Constant{std::move(bits), end};
    }
    case Form::unicode: {
      char esc = '\\';
      const std::size_t word = skip_blanks(sql, end);
      constexpr std::string_view uescape = "uescape";
      bool has_uescape = word + uescape.size() <= sql.size() &&
                         (word + uescape.size() == sql.size() || !sql_ident_char(sql[word + uescape.size()]));
      for (std::size_t k = 0; has_uescape && k < uescape.size(); ++k)
        has_uescape = (sql[word + k] | 0x20) == uescape[k];
      if (has_uescape) {
        const std::size_t quote = skip_blanks(sql, word + uescape.size());
        if (quote + 2 >= sql.size() || sql[quote] != '\'' || sql[quote + 2] != '\'') return std::nullopt;
        esc = sql[quote + 1];
        if (is_hex(esc) || esc == '+' || esc == '\'' || esc == '"' || is_space(esc)) return std::nullopt;
        if (static_cast<unsigned char>(esc) >= 0x80) return std::nullopt;
        end = quote + 3;
      }
      auto value = unicode_unescape(body, esc, syntax);
      if (!value) return std::nullopt;
      return Constant{std::move(*value), end};
    }
  }
  return std::nullopt;
}

// numeric_out of the value `sql[begin, end)` spells (digits, at most one point, an exponent).
std::optional<std::string> numeric_text(std::string_view digits_text, bool negative) {
  std::string digits;  // all mantissa digits
  long point = -1;     // digits before the point
  std::size_t i = 0;
  for (; i < digits_text.size() && (sql_digit(digits_text[i]) || digits_text[i] == '.'); ++i) {
    if (digits_text[i] == '.') {
      if (point >= 0) return std::nullopt;
      point = static_cast<long>(digits.size());
    } else {
      digits += digits_text[i];
    }
  }
  if (digits.empty()) return std::nullopt;
  const long fraction = point < 0 ? 0 : static_cast<long>(digits.size()) - point;
  long exponent = 0;
  if (i < digits_text.size()) {
    if (digits_text[i] != 'e' && digits_text[i] != 'E') return std::nullopt;
    ++i;
    bool minus = false;
    if (i < digits_text.size() && (digits_text[i] == '+' || digits_text[i] == '-')) minus = digits_text[i++] == '-';
    if (i >= digits_text.size()) return std::nullopt;
    for (; i < digits_text.size(); ++i) {
      if (!sql_digit(digits_text[i]) || exponent > 1000) return std::nullopt;
      exponent = exponent * 10 + (digits_text[i] - '0');
    }
    if (minus) exponent = -exponent;
  }
  // value = digits * 10^(exponent - fraction), printed with max(0, fraction - exponent) decimals.
  const long scale = fraction - exponent;
  std::string integer;
  std::string decimals;
  if (scale <= 0) {
    integer = digits + std::string(static_cast<std::size_t>(-scale), '0');
  } else {
    if (static_cast<long>(digits.size()) < scale) digits.insert(0, static_cast<std::size_t>(scale) - digits.size(), '0');
    integer = digits.substr(0, digits.size() - static_cast<std::size_t>(scale));
    decimals = digits.substr(digits.size() - static_cast<std::size_t>(scale));
  }
  const std::size_t nonzero = integer.find_first_not_of('0');
  integer = nonzero == std::string::npos ? "0" : integer.substr(nonzero);
  const bool zero = integer == "0" && decimals.find_first_not_of('0') == std::string::npos;
  std::string out = negative && !zero ? "-" : "";
  out += integer;
  if (!decimals.empty()) out += "." + decimals;
  return out;
}

std::optional<Constant> read_number(std::string_view sql, std::size_t at, bool negative) {
  const std::size_t n = sql.size();
  std::size_t j = at;
  while (j < n && sql_digit(sql[j])) ++j;
  if (j < n && sql[j] == '.' && !(j + 1 < n && sql[j + 1] == '.')) {
    ++j;
    while (j < n && sql_digit(sql[j])) ++j;
  }
  if (j < n && (sql[j] == 'e' || sql[j] == 'E')) {
    std::size_t k = j + 1;
    if (k < n && (sql[k] == '+' || sql[k] == '-')) ++k;
    if (k >= n || !sql_digit(sql[k])) return std::nullopt;  // `1e` / `1e+`: PostgreSQL 15 refuses it
    while (k < n && sql_digit(sql[k])) ++k;
    j = k;
  }
  // Trailing junk (`0x1F`, `1_000`, `12abc`): an error in PostgreSQL 15, a number in later ones.
  if (j < n && (sql_ident_char(sql[j]) || sql[j] == '.')) return std::nullopt;
  auto text = numeric_text(sql.substr(at, j - at), negative);
  if (!text) return std::nullopt;
  return Constant{std::move(*text), j};
}

}  // namespace

std::optional<Constant> read_constant(std::string_view sql, std::size_t at, StringSyntax syntax) {
  const std::size_t n = sql.size();
  if (at >= n) return std::nullopt;
  // A prefix letter starts a token only where no name runs into it.
  if (at > 0 && (sql_ident_char(sql[at - 1]) || sql[at - 1] == '&') && sql[at] != '\'' && sql[at] != '-') return std::nullopt;
  const char ch = sql[at];
  if (ch == '-') {
    const std::size_t k = skip_blanks(sql, at + 1);
    if (k >= n || !(sql_digit(sql[k]) || (sql[k] == '.' && k + 1 < n && sql_digit(sql[k + 1])))) return std::nullopt;
    return read_number(sql, k, true);
  }
  if (sql_digit(ch) || (ch == '.' && at + 1 < n && sql_digit(sql[at + 1]))) return read_number(sql, at, false);
  if (ch == '\'') return read_string(sql, at, syntax.standard_conforming_strings ? Form::standard : Form::escape, syntax);
  if (at + 1 < n && sql[at + 1] == '\'') {
    switch (ch) {
      case 'e': case 'E': return read_string(sql, at + 1, Form::escape, syntax);
      case 'b': case 'B': return read_string(sql, at + 1, Form::bits, syntax);
      case 'x': case 'X': return read_string(sql, at + 1, Form::hex, syntax);
      case 'n': case 'N':
        return read_string(sql, at + 1, syntax.standard_conforming_strings ? Form::standard : Form::escape, syntax);
      default: return std::nullopt;
    }
  }
  if ((ch == 'u' || ch == 'U') && at + 2 < n && sql[at + 1] == '&' && sql[at + 2] == '\'') {
    // PostgreSQL refuses U&'' strings while standard_conforming_strings is off.
    if (!syntax.standard_conforming_strings) return std::nullopt;
    return read_string(sql, at + 2, Form::unicode, syntax);
  }
  if (ch == '$') {
    std::size_t j = at + 1;
    if (j < n && sql[j] != '$') {
      if (!sql_ident_start(sql[j])) return std::nullopt;
      while (j < n && sql_ident_char(sql[j]) && sql[j] != '$') ++j;
    }
    if (j >= n || sql[j] != '$') return std::nullopt;
    const std::string_view tag = sql.substr(at, j - at + 1);
    const std::size_t close = sql.find(tag, j + 1);
    if (close == std::string_view::npos) return std::nullopt;
    return Constant{std::string(sql.substr(j + 1, close - j - 1)), close + tag.size()};
  }
  return std::nullopt;
}

std::optional<std::string> constant_value(std::string_view text, StringSyntax syntax) {
  const std::size_t at = skip_blanks(text, 0);
  auto constant = read_constant(text, at, syntax);
  if (!constant || skip_blanks(text, constant->end) != text.size()) return std::nullopt;
  return std::move(constant->value);
}

}  // namespace occ
