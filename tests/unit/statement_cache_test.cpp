// The statement cache: names, the LRU bound, what is closed on the server and what is forgotten.
#include <catch2/catch.hpp>

#include "session/statement_cache.h"

using namespace occ;

namespace {

// One step on a cache of capacity 2: an operation on a key (or a name), then what find() answers
// for every key and what take_retired() hands over.
struct Step {
  char op;  // 'i' insert key, 'f' find key, 'F' forget name, 'r' retire name, 'l' close later, 'c' clear
  std::string arg;
  std::vector<std::pair<std::string, std::string>> names;  // key -> name, "" for none
  std::vector<std::string> retired;
};

struct Case {
  std::string title;
  std::vector<Step> steps;
};

}  // namespace

TEST_CASE("statement cache: names, bound and invalidation", "[statement_cache]") {
  const std::vector<Case> cases = {
      {"names are fresh per insert",
       {{'i', "a", {{"a", "occ_1"}, {"b", ""}}, {}}, {'i', "b", {{"a", "occ_1"}, {"b", "occ_2"}}, {}}}},
      {"the least recently inserted is evicted and closed",
       {{'i', "a", {}, {}}, {'i', "b", {}, {}}, {'i', "c", {{"a", ""}, {"b", "occ_2"}, {"c", "occ_3"}}, {"occ_1"}}}},
      {"a find makes an entry the most recently used",
       {{'i', "a", {}, {}},
        {'i', "b", {}, {}},
        {'f', "a", {}, {}},
        {'i', "c", {{"a", "occ_1"}, {"b", ""}, {"c", "occ_3"}}, {"occ_2"}}}},
      {"a failed Parse is forgotten, not closed, and its key gets a new name",
       {{'i', "a", {}, {}}, {'F', "occ_1", {{"a", ""}}, {}}, {'i', "a", {{"a", "occ_2"}}, {}}}},
      {"a stale plan is closed and its key gets a new name",
       {{'i', "a", {}, {}}, {'r', "occ_1", {{"a", ""}}, {"occ_1"}}, {'i', "a", {{"a", "occ_2"}}, {}}}},
      {"retiring an unknown name does nothing",
       {{'i', "a", {}, {}}, {'r', "occ_9", {{"a", "occ_1"}}, {}}}},
      {"DISCARD ALL: nothing left to close, names still not reused",
       {{'i', "a", {}, {}},
        {'i', "b", {}, {}},
        {'c', "", {{"a", ""}, {"b", ""}}, {}},
        {'i', "a", {{"a", "occ_3"}}, {}}}},
      {"a skipped Close is handed over again", {{'i', "a", {}, {}}, {'l', "occ_1", {{"a", "occ_1"}}, {"occ_1"}}}},
  };
  for (const auto& c : cases) {
    SECTION(c.title) {
      StatementCache cache(2);
      for (const auto& step : c.steps) {
        switch (step.op) {
          case 'i': cache.insert(step.arg); break;
          case 'f': cache.find(step.arg); break;
          case 'F': cache.forget(step.arg); break;
          case 'r': cache.retire(step.arg); break;
          case 'l': cache.close_later(step.arg); break;
          case 'c': cache.clear(); break;
        }
        for (const auto& [key, name] : step.names) {
          const std::string* found = cache.find(key);
          CHECK((found ? *found : "") == name);
        }
        CHECK(cache.take_retired() == step.retired);
        CHECK(cache.size() <= 2);
      }
    }
  }
}

TEST_CASE("statement cache key: text, parameter types and search_path", "[statement_cache]") {
  const std::string base = statement_cache_key("SELECT $1", {23}, {"public"});
  CHECK(base == statement_cache_key("SELECT $1", {23}, {"public"}));
  CHECK(base != statement_cache_key("SELECT $1 ", {23}, {"public"}));
  CHECK(base != statement_cache_key("SELECT $1", {20}, {"public"}));
  CHECK(base != statement_cache_key("SELECT $1", {}, {"public"}));
  CHECK(base != statement_cache_key("SELECT $1", {23}, {"app", "public"}));
  CHECK(statement_cache_key("a", {1, 23}, {}) != statement_cache_key("a", {12, 3}, {}));
}
