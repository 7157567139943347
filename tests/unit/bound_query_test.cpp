// A Query sent bound: which go so, and the server's errors as the Query would have got them
// (the extended protocol's fields as PostgreSQL 15 sends them).
#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

#include "session/bound_query.h"

using namespace occ;

namespace {

using Fields = std::vector<std::pair<char, std::string>>;

struct ErrorCase {
  const char* title;
  Fields from_server;
  bool changed;
  Fields to_client;
};

}  // namespace

TEST_CASE("may_go_bound: one checked write of one row returning nothing, or one read by the whole key",
          "[bound_query]") {
  StatementEffect write;
  write.row_write = CheckedRowWrite{};
  CHECK(may_go_bound({write}, "UPDATE t SET a = 1 WHERE id = 2") == BoundForm::checked_write);
  CHECK(may_go_bound({write}, "UPDATE t SET a = 1 WHERE id = 2 RETURNING a") == BoundForm::none);
  CHECK(may_go_bound({write, write}, "UPDATE t SET a = 1 WHERE id = 2") == BoundForm::none);
  CHECK(may_go_bound({}, "UPDATE t SET a = 1 WHERE id = 2") == BoundForm::none);
  StatementEffect read;
  read.tracking.in_place = true;
  CHECK(may_go_bound({read}, "SELECT * FROM t WHERE status = 'x'") == BoundForm::none);
  read.key_pinned_read = true;
  CHECK(may_go_bound({read}, "SELECT * FROM t WHERE id = 2") == BoundForm::pinned_read);
  CHECK(may_go_bound({read, write}, "SELECT * FROM t WHERE id = 2; UPDATE t SET a = 1 WHERE id = 2") ==
        BoundForm::none);
  StatementEffect returning = write;
  returning.tracking.added_columns = 2;
  CHECK(may_go_bound({returning}, "UPDATE t SET a = 1 WHERE id = 2") == BoundForm::none);
  StatementEffect named = write;
  named.named = NamedResult::execute;
  CHECK(may_go_bound({named}, "EXECUTE w(2)") == BoundForm::none);
  StatementEffect fetch = read;
  fetch.named = NamedResult::fetch;
  CHECK(may_go_bound({fetch}, "FETCH c") == BoundForm::none);
}

TEST_CASE("error_as_query: positions in the client's text, a parameter's error at its constant", "[bound_query]") {
  // Lifted from the rewritten text "UPDATE t SET a = 'abc' WHERE id = 43 AND x", whose first 7
  // characters replaced the client's 3 (`UPDATE t` was `UPD t`, say).
  const auto lifted = lift_constants("UPDATE t SET a = 'abc' WHERE id = 43 AND x", {});
  REQUIRE(lifted);
  REQUIRE(lifted->sql == "UPDATE t SET a = $1 WHERE id = $2 AND x");
  const std::vector<TextShift> shifts = {{0, 3, 7}};
  const std::vector<ErrorCase> cases = {
      {"a Parse error's position",
       {{'S', "ERROR"}, {'C', "42703"}, {'M', "column \"x\" does not exist"}, {'P', "39"}, {'F', "f.c"}},
       true,
       {{'S', "ERROR"}, {'C', "42703"}, {'M', "column \"x\" does not exist"}, {'P', "38"}, {'F', "f.c"}}},
      {"a Bind error: the context goes, the position of $1's constant comes",
       {{'S', "ERROR"}, {'V', "ERROR"}, {'C', "22P02"}, {'M', "invalid input syntax for type integer: \"abc\""},
        {'W', "unnamed portal parameter $1 = '...'"}, {'F', "numutils.c"}, {'L', "232"}, {'R', "pg_strtoint32"}},
       true,
       {{'S', "ERROR"}, {'V', "ERROR"}, {'C', "22P02"}, {'M', "invalid input syntax for type integer: \"abc\""},
        {'P', "14"}, {'F', "numutils.c"}, {'L', "232"}, {'R', "pg_strtoint32"}}},
      {"a Bind error with detail and hint, no value logged",
       {{'C', "22P02"}, {'M', "m"}, {'D', "d"}, {'H', "h"}, {'W', "unnamed portal parameter $2"}, {'F', "f"}},
       true,
       {{'C', "22P02"}, {'M', "m"}, {'D', "d"}, {'H', "h"}, {'P', "31"}, {'F', "f"}}},
      {"a parameter the statement does not have",
       {{'C', "22P02"}, {'M', "m"}, {'W', "unnamed portal parameter $3"}},
       false,
       {{'C', "22P02"}, {'M', "m"}, {'W', "unnamed portal parameter $3"}}},
      {"an execution error without position",
       {{'C', "40001"}, {'M', "conflict"}, {'D', "d"}},
       false,
       {{'C', "40001"}, {'M', "conflict"}, {'D', "d"}}},
      {"a context of another kind",
       {{'C', "P0001"}, {'M', "m"}, {'W', "PL/pgSQL function f() line 1 at RAISE"}},
       false,
       {{'C', "P0001"}, {'M', "m"}, {'W', "PL/pgSQL function f() line 1 at RAISE"}}},
  };
  for (const ErrorCase& c : cases) {
    INFO(c.title);
    pg::ErrorFields fields{c.from_server};
    CHECK(error_as_query(fields, *lifted, shifts) == c.changed);
    CHECK(fields.fields == c.to_client);
  }
}
