// The session read set: bound, expiry, transactions and savepoints, the expected-version map.
#include <catch2/catch.hpp>

#include "session/read_set.h"

using namespace occ;
using namespace std::chrono_literals;

namespace {

TablePolicy table(std::string name = "subscriptions") {
  TablePolicy t;
  t.schema = "public";
  t.name = std::move(name);
  t.key = {"id"};
  t.read_ttl = 60s;
  return t;
}

ReadSet::Row row(std::string version, ReadSet::Clock::time_point seen = ReadSet::Clock::now()) {
  return ReadSet::Row{std::move(version), "{}", seen};
}

std::string version_of(const ReadSet& reads, const TablePolicy& t, std::string key) {
  const auto* r = reads.find(t, {key}, ReadSet::Clock::now());
  return r ? r->version : "<none>";
}

}  // namespace

TEST_CASE("the read set keeps the latest version per row and forgets on delete", "[read_set]") {
  auto subs = table();
  ReadSet reads(10);
  reads.note(subs, {"42"}, row("1"));
  reads.note(subs, {"42"}, row("2"));
  reads.commit();
  CHECK(version_of(reads, subs, "42") == "2");
  reads.forget(subs, {"42"});
  reads.commit();
  CHECK(version_of(reads, subs, "42") == "<none>");
}

TEST_CASE("the read set is bounded, evicting the least recently used row", "[read_set]") {
  auto subs = table();
  ReadSet reads(3);
  for (int i = 1; i <= 5; ++i) reads.note(subs, {std::to_string(i)}, row("1"));
  reads.commit();
  CHECK(reads.size() == 3);
  CHECK(version_of(reads, subs, "1") == "<none>");
  CHECK(version_of(reads, subs, "2") == "<none>");
  CHECK(version_of(reads, subs, "5") == "1");
}

TEST_CASE("rows expire after the table's read_ttl", "[read_set]") {
  auto subs = table();
  subs.read_ttl = 100ms;
  ReadSet reads(10);
  reads.note(subs, {"42"}, row("3", ReadSet::Clock::now() - 200ms));
  reads.note(subs, {"43"}, row("4"));
  reads.commit();
  CHECK(version_of(reads, subs, "42") == "<none>");
  CHECK(version_of(reads, subs, "43") == "4");
  CHECK(reads.expected_map(subs, {}) == R"({"43":{"b":{},"v":"4"}})");
}

TEST_CASE("rollback undoes what the transaction noted; commit keeps it", "[read_set]") {
  auto subs = table();
  ReadSet reads(10);
  reads.note(subs, {"42"}, row("1"));
  reads.commit();

  reads.note(subs, {"42"}, row("2"));  // the session's own uncommitted write
  reads.note(subs, {"43"}, row("7"));
  reads.forget(subs, {"42"});
  reads.rollback();
  CHECK(version_of(reads, subs, "42") == "1");
  CHECK(version_of(reads, subs, "43") == "<none>");

  reads.note(subs, {"42"}, row("2"));
  reads.commit();
  reads.rollback();
  CHECK(version_of(reads, subs, "42") == "2");
}

TEST_CASE("savepoints: rollback to, release, nesting", "[read_set]") {
  auto subs = table();
  ReadSet reads(10);
  reads.note(subs, {"1"}, row("1"));
  reads.savepoint("a");
  reads.note(subs, {"1"}, row("2"));
  reads.savepoint("b");
  reads.note(subs, {"1"}, row("3"));
  reads.rollback_to("b");
  CHECK(version_of(reads, subs, "1") == "2");
  reads.note(subs, {"1"}, row("4"));
  reads.rollback_to("a");
  CHECK(version_of(reads, subs, "1") == "1");
  reads.note(subs, {"1"}, row("5"));
  reads.rollback_to("a");  // the savepoint survives its own rollback
  CHECK(version_of(reads, subs, "1") == "1");

  reads.savepoint("c");
  reads.note(subs, {"1"}, row("6"));
  reads.release("c");
  reads.rollback_to("c");  // released: no such savepoint, nothing happens
  CHECK(version_of(reads, subs, "1") == "6");
  reads.rollback();
  CHECK(version_of(reads, subs, "1") == "<none>");
}

TEST_CASE("a row read is found by its key with its version and the values read", "[read_set]") {
  auto subs = table("subscriptions");
  ReadSet reads(10);
  ReadSet::Row r = row("4");
  r.base = R"({"status":"active","notes":null})";
  reads.note(subs, {"42"}, r);
  const auto found = reads.read_row(subs, {"42"});
  REQUIRE(found);
  CHECK(found->version == "4");
  CHECK(found->base == R"({"status":"active","notes":null})");
  CHECK_FALSE(reads.read_row(subs, {"43"}));
  CHECK_FALSE(reads.read_row(table("other"), {"42"}));
}

TEST_CASE("the expected map nests composite keys and carries the values read", "[read_set]") {
  auto lines = table("lines");
  lines.key = {"invoice", "line"};
  ReadSet reads(10);
  ReadSet::Row r = row("9");
  r.base = R"({"amount":"10"})";
  reads.note(lines, {"7", "1"}, r);
  reads.note(lines, {"7", "2"}, row("3"));
  reads.commit();
  CHECK(reads.expected_map(lines, {{"7", "1"}}) == R"({"7":{"1":{"b":{"amount":"10"},"v":"9"}}})");
  CHECK(reads.expected_map(lines, {}) ==
        R"({"7":{"1":{"b":{"amount":"10"},"v":"9"},"2":{"b":{},"v":"3"}}})");
  CHECK(reads.expected_map(lines, {{"8", "1"}}) == "{}");
  reads.note(lines, {"8", "1"}, row("5"));
  reads.note(lines, {"6", "x\"y"}, row("4"));
  CHECK(reads.expected_map(lines, {{"8", "1"}, {"7", "2"}, {"9", "9"}, {"6", "x\"y"}, {"7", "2"}}) ==
        R"({"6":{"x\"y":{"b":{},"v":"4"}},"7":{"2":{"b":{},"v":"3"}},"8":{"1":{"b":{},"v":"5"}}})");
  auto other = table("other");
  CHECK(reads.expected_map(other, {}) == "{}");
}

TEST_CASE("keys with separators do not collide", "[read_set]") {
  auto t = table();
  t.key = {"a", "b"};
  ReadSet reads(10);
  reads.note(t, {"x,y", "z"}, row("1"));
  reads.note(t, {"x", "y,z"}, row("2"));
  reads.commit();
  CHECK(reads.size() == 2);
}

TEST_CASE("a transaction reading far more rows than the bound keeps its undo lists bounded", "[read_set]") {
  auto subs = table();
  ReadSet reads(10);
  reads.note(subs, {"0"}, row("1"));
  reads.commit();

  reads.note(subs, {"0"}, row("2"));
  for (int i = 1; i <= 1000; ++i) {
    reads.note(subs, {std::to_string(i)}, row("1"));
    CHECK(reads.journal_size() <= 20);
  }
  CHECK(reads.size() == 10);
  reads.rollback();
  // Every provisional row is gone; the row overwritten first is back as it was before.
  CHECK(reads.size() == 1);
  CHECK(version_of(reads, subs, "0") == "1");
  CHECK(version_of(reads, subs, "1000") == "<none>");
  CHECK(reads.journal_size() == 0);
}

TEST_CASE("notes of the same row in one transaction are journaled once", "[read_set]") {
  auto subs = table();
  ReadSet reads(10);
  reads.note(subs, {"1"}, row("1"));
  reads.commit();
  for (int i = 2; i <= 500; ++i) reads.note(subs, {"1"}, row(std::to_string(i)));
  reads.note(subs, {"2"}, row("1"));
  CHECK(reads.journal_size() == 3);  // row 1's previous version; rows 1 and 2 noted here
  reads.rollback();
  CHECK(version_of(reads, subs, "1") == "1");
  CHECK(version_of(reads, subs, "2") == "<none>");
}

TEST_CASE("past the bound, rollback to a savepoint still undoes exactly what followed it", "[read_set]") {
  auto subs = table();
  ReadSet reads(10);
  reads.note(subs, {"1"}, row("1"));
  reads.commit();
  reads.note(subs, {"1"}, row("2"));
  reads.note(subs, {"2"}, row("5"));
  reads.savepoint("a");
  reads.note(subs, {"1"}, row("3"));
  reads.forget(subs, {"2"});
  for (int i = 100; i < 120; ++i) reads.note(subs, {std::to_string(i)}, row("1"));
  reads.rollback_to("a");
  CHECK(reads.size() == 2);
  CHECK(version_of(reads, subs, "1") == "2");
  CHECK(version_of(reads, subs, "2") == "5");

  // Under the bound again after the rollback: the lists hold the transaction's part before "a" and row 3.
  reads.note(subs, {"3"}, row("1"));
  CHECK(reads.journal_size() == 4);
  reads.release("a");
  reads.commit();
  CHECK(version_of(reads, subs, "1") == "2");
  CHECK(version_of(reads, subs, "3") == "1");
}

TEST_CASE("a row written again at a deeper savepoint rolls back to its state at the outer one", "[read_set]") {
  auto subs = table();
  ReadSet reads(10);
  reads.note(subs, {"1"}, row("1"));
  reads.commit();
  reads.savepoint("a");
  reads.note(subs, {"2"}, row("1"));
  reads.savepoint("b");
  reads.note(subs, {"2"}, row("2"));  // journaled at b with a's provisional version
  reads.note(subs, {"1"}, row("2"));
  reads.rollback_to("a");
  CHECK(version_of(reads, subs, "1") == "1");
  CHECK(version_of(reads, subs, "2") == "<none>");
  reads.note(subs, {"2"}, row("3"));
  reads.commit();
  CHECK(version_of(reads, subs, "2") == "3");
}
