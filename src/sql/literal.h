// The one reader of SQL constants: a literal's value as the server reads it and prints it back,
// under the session's string syntax, or nothing where that cannot be proven.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace occ {

// What the server's reading of a string constant depends on, as the session learnt it from the
// server's ParameterStatus messages.
struct StringSyntax {
  bool standard_conforming_strings = true;  // off: backslash escapes in plain '...' strings too
  bool utf8 = true;  // client and server encodings are both UTF8: escaped non-ASCII decodes to UTF-8

  bool operator==(const StringSyntax&) const = default;
};

struct Constant {
  std::string value;    // as the server prints it (a bit string as its bits)
  std::size_t end = 0;  // just past the constant, string continuations and UESCAPE included
};

// The constant that starts at `at` of `sql`: a string with any of PostgreSQL's syntaxes ('...',
// E'...', U&'...' [UESCAPE 'c'], N'...', $tag$...$tag$, B'...', X'...', continued on the next
// line), or a number with an optional minus sign (as a numeric or integer prints: `007` is 7, `1e3`
// is 1000, `.50` is 0.50). Nullopt for anything else, for a text the server would refuse (an
// invalid escape, invalid UTF-8, an unterminated string, `0x1F` or `1_000` in PostgreSQL 15) and
// for escapes whose value depends on an encoding other than UTF-8.
std::optional<Constant> read_constant(std::string_view sql, std::size_t at, StringSyntax syntax = {});

// The value of `text` when it is exactly one constant (spaces and comments around it allowed).
std::optional<std::string> constant_value(std::string_view text, StringSyntax syntax = {});

}  // namespace occ
