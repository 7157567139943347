// lift_constants: which constants become parameters, with what type and value, and where errors point.
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

#include "sql/lifted_constants.h"
#include "sql/rewrite.h"

using namespace occ;

namespace {

struct Lift {
  const char* sql;
  bool standard_conforming_strings;
  std::optional<std::string> lifted;  // nullopt: not converted
  std::vector<int32_t> types;
  std::vector<std::string> values;
};

const Lift kLifts[] = {
    {"SELECT * FROM t WHERE id = 42", true, "SELECT * FROM t WHERE id = $1", {23}, {"42"}},
    {"UPDATE t SET a = 'x' WHERE id = 7", true, "UPDATE t SET a = $1 WHERE id = $2", {0, 23}, {"x", "7"}},
    {"DELETE FROM t WHERE id = 2147483647", true, "DELETE FROM t WHERE id = $1", {23}, {"2147483647"}},
    {"DELETE FROM t WHERE id = 2147483648", true, "DELETE FROM t WHERE id = $1", {20}, {"2147483648"}},
    {"DELETE FROM t WHERE id = 9223372036854775807", true, "DELETE FROM t WHERE id = $1", {20}, {"9223372036854775807"}},
    {"DELETE FROM t WHERE id = 9223372036854775808", true, "DELETE FROM t WHERE id = $1", {1700}, {"9223372036854775808"}},
    {"DELETE FROM t WHERE id = 0000000000000000000042", true, "DELETE FROM t WHERE id = $1", {23}, {"0000000000000000000042"}},
    {"SELECT * FROM t WHERE id <> 1 AND b >= 2 OR c != 3", true,
     "SELECT * FROM t WHERE id <> $1 AND b >= $2 OR c != $3", {23, 23, 23}, {"1", "2", "3"}},
    {"SELECT * FROM t WHERE s = 'it''s'", true, "SELECT * FROM t WHERE s = $1", {0}, {"it's"}},
    {"SELECT * FROM t WHERE s = 'a\\b'", true, "SELECT * FROM t WHERE s = $1", {0}, {"a\\b"}},
    {"SELECT * FROM t WHERE s = 'a\\b'", false, std::nullopt, {}, {}},  // the server warns
    {"SELECT * FROM t WHERE s = 'ab' AND id = 1", false, "SELECT * FROM t WHERE s = $1 AND id = $2", {0, 23}, {"ab", "1"}},
    {"SELECT * FROM t WHERE s = 'h\xc3\xa9' AND id = 1", true, "SELECT * FROM t WHERE s = $1 AND id = $2", {0, 23},
     {"h\xc3\xa9", "1"}},
    {"SELECT * FROM t WHERE s = $q$a'b$q$", true, "SELECT * FROM t WHERE s = $1", {0}, {"a'b"}},
    {"SELECT '3'::bigint, (x)::text FROM t", true, "SELECT $1::bigint, (x)::text FROM t", {0}, {"3"}},
    {"SELECT * FROM t WHERE b = f($occ${\"a\":1}$occ$::jsonb)", true, "SELECT * FROM t WHERE b = f($1::jsonb)", {0},
     {"{\"a\":1}"}},
    {"UPDATE t SET v = occ.conflict(v, 2, $occ${\"b\":1}$occ$) WHERE id = 1", true,
     "UPDATE t SET v = occ.conflict(v, 2, $1) WHERE id = $2", {0, 23}, {"{\"b\":1}", "1"}},
    {"SELECT f($q$x$q$) FROM t WHERE id = 1", true, "SELECT f($q$x$q$) FROM t WHERE id = $1", {23}, {"1"}},
    {"SELECT * FROM t WHERE id = 5 ORDER BY 1 LIMIT 3", true, "SELECT * FROM t WHERE id = $1 ORDER BY 1 LIMIT 3", {23}, {"5"}},
    {"SELECT * FROM t WHERE id = 5;", true, "SELECT * FROM t WHERE id = $1;", {23}, {"5"}},
    // The right operand of a binary + - * /, and an int4 behind a prefix minus (folded into the
    // literal by the server, so -2147483648 is int4 too: left alone).
    {"UPDATE t SET n = n + 5 WHERE id = 1", true, "UPDATE t SET n = n + $1 WHERE id = $2", {23, 23}, {"5", "1"}},
    {"UPDATE t SET n = n + -1234 WHERE id = 1", true, "UPDATE t SET n = n + -$1 WHERE id = $2", {23, 23},
     {"1234", "1"}},
    {"UPDATE t SET n = (n * 3000000000) WHERE id = 1", true, "UPDATE t SET n = (n * $1) WHERE id = $2", {20, 23},
     {"3000000000", "1"}},
    {"UPDATE t SET n = n - -2147483648 WHERE id = 1", true, "UPDATE t SET n = n - -2147483648 WHERE id = $1", {23}, {"1"}},
    {"SELECT * FROM t WHERE id = -5", true, "SELECT * FROM t WHERE id = -$1", {23}, {"5"}},
    {"SELECT * FROM t WHERE id = 5 + 1", true, "SELECT * FROM t WHERE id = 5 + $1", {23}, {"1"}},
    {"SELECT x / 2 FROM t", true, "SELECT x / $1 FROM t", {23}, {"2"}},
    // A prefix minus after a keyword, a comma or a parenthesis: ORDER BY -1 is a position.
    {"SELECT * FROM t WHERE id = 1 ORDER BY -1, -2", true, "SELECT * FROM t WHERE id = $1 ORDER BY -1, -2", {23}, {"1"}},
    {"SELECT * FROM t WHERE id = 1 ORDER BY x - 1", true, "SELECT * FROM t WHERE id = $1 ORDER BY x - $2", {23, 23},
     {"1", "1"}},
    {"SELECT * FROM t WHERE (id = 5) -- five\n", true, "SELECT * FROM t WHERE (id = $1) -- five\n", {23}, {"5"}},
    // Left alone: another statement, a parameter, not a statement that reads or writes rows.
    {"SELECT * FROM t WHERE id = 5; SELECT 1", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE id = $1", true, std::nullopt, {}, {}},
    {"SET x = 5", true, std::nullopt, {}, {}},
    // Left in the text: constants whose parameter could read or resolve differently.
    {"SELECT * FROM t WHERE id = 1.5", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE id = 1e3", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE id = 0x1F", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE id = 1_000", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE id = 5 + 1.5", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE id = 2 ^ 3", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE a[i + 1] = 'x' || y", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE id = -2147483648", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE id = 5+-1", true, std::nullopt, {}, {}},    {"SELECT * FROM t WHERE d = DATE '2020-01-01'", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE d = DATE '2020-01-01'::text", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE s = E'a\\n'", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE s = U&'d\\0061t'", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE s = N'x'", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE s = B'101'", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE s = 'a'\n'b'", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE s = 'a' COLLATE \"C\"", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE id =- 5", true, std::nullopt, {}, {}},
    {"SELECT 5, 'x' FROM t", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE c::varchar(10) = 'x' || y", true, std::nullopt, {}, {}},
    {"INSERT INTO t VALUES (1, 'x')", true, std::nullopt, {}, {}},
    {"SELECT * FROM t WHERE s = 'unterminated", true, std::nullopt, {}, {}},
};

}  // namespace

TEST_CASE("lift_constants: what is lifted, typed and read as the server reads the literal", "[lifted_constants]") {
  for (const Lift& c : kLifts) {
    INFO(c.sql << " standard_conforming_strings=" << c.standard_conforming_strings);
    StringSyntax syntax;
    syntax.standard_conforming_strings = c.standard_conforming_strings;
    auto lifted = lift_constants(c.sql, syntax);
    REQUIRE(lifted.has_value() == c.lifted.has_value());
    if (!lifted) continue;
    CHECK(lifted->sql == *c.lifted);
    CHECK(lifted->param_types == c.types);
    CHECK(lifted->values == c.values);
  }
}

TEST_CASE("lift_constants: outside UTF-8 a text with non-ASCII bytes is left alone", "[lifted_constants]") {
  StringSyntax latin1;
  latin1.utf8 = false;
  CHECK_FALSE(lift_constants("SELECT * FROM t WHERE s = 'h\xe9'", latin1));
  CHECK(lift_constants("SELECT * FROM t WHERE s = 'he'", latin1));
}

TEST_CASE("lift_constants: positions in the lifted text map back to the input's characters", "[lifted_constants]") {
  //                       1234567890123456789012345678901234567
  const std::string sql = "UPDATE t SET a = 'h\xc3\xa9llo' WHERE id = 12345 AND x y";
  auto lifted = lift_constants(sql, {});
  REQUIRE(lifted);
  REQUIRE(lifted->sql == "UPDATE t SET a = $1 WHERE id = $2 AND x y");
  CHECK(lifted->param_positions == std::vector<int>{18, 37});
  // `y` (a syntax error's position) at 41 in the lifted text, 49 in the input (é is one character).
  CHECK(original_position(lifted->shifts, 41) == 49);
  CHECK(original_position(lifted->shifts, 1) == 1);
  CHECK(original_position(lifted->shifts, 32) == 37);  // at $2: where the constant was
}
