// A simple-protocol statement's constants lifted out as parameters, so one prepared statement
// serves every execution that differs only in them: the parameters typed as the server types the
// literal (overload resolution and coercion unchanged), their values byte for byte what the server
// reads from the literal.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sql/literal.h"
#include "sql/rewrite.h"  // TextShift

namespace occ {

inline constexpr int32_t kOidUnknown = 0;
inline constexpr int32_t kOidInt4 = 23;
inline constexpr int32_t kOidInt8 = 20;
inline constexpr int32_t kOidNumeric = 1700;

struct LiftedConstants {
  std::string sql;                   // the text with each lifted constant replaced by $n
  std::vector<int32_t> param_types;  // per $n: kOidInt4 / kOidInt8 / kOidNumeric / kOidUnknown
  std::vector<std::string> values;   // per $n, text format
  // Where the constants were: a position (1-based, in characters) in lifted `sql` maps back into
  // the input text with original_position(shifts, ...); param_positions[n - 1] is $n's position
  // in the input text, where the server points an error about the literal.
  std::vector<TextShift> shifts;
  std::vector<int> param_positions;
};

// `sql` (one SELECT, INSERT, UPDATE, DELETE or WITH statement as a session with `syntax` sends it)
// with its liftable constants as parameters; nullopt when it is not such a statement, has no
// liftable constant, names a parameter ($n) or holds a second statement. Lifted, and only where a
// parameter cannot read differently from the literal:
// - an unsigned integer (digits only): int4 if it fits, else int8 if it fits, else numeric, as
//   the server types the literal (its text passed unchanged: `007` is read as 7 either way);
// - a plain '...' string or a $$ string: unknown, as the literal is;
// and each only as a whole operand: right after a comparison operator (=, <>, !=, <, >, <=, >=)
// or a binary + - * / whose left side is a name, number or `)`, with a clause boundary after it
// (`)`, `,`, the end, AND, OR, a following clause's keyword); or right before a `::` cast; and a
// $occ$ string (the rewriter's own) as a function argument. An int4 behind a prefix minus is
// lifted as `-$n` (the server folds `-5` into one int4 constant, as `-$n` computes). Left in the
// text: a prefix minus before a number that alone is not int4 (-2147483648 is int4), decimals and
// exponents, E'' U&'' N'' B'' X'' and typed literals (DATE '...'), strings continued on another
// line, a plain string with a backslash while standard_conforming_strings is off (the server
// warns about it, which a parameter would not), constants anywhere else (ORDER BY 1, typmods,
// function arguments), and every constant of a text with non-ASCII bytes outside UTF-8.
std::optional<LiftedConstants> lift_constants(std::string_view sql, StringSyntax syntax);

}  // namespace occ
