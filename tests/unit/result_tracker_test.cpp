// The result tracker: cutting added columns off rows, how a large row may pass, scanning a row fed
// in pieces, and noting what a row says into the read set.
#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include <cstring>

#include "session/result_tracker.h"

using namespace occ;
using namespace std::chrono_literals;

namespace {

// A DataRow body: the column count, then each value's length word and bytes (nullopt: NULL).
std::string row_body(const std::vector<std::optional<std::string>>& values) {
  std::string out;
  uint16_t n = htons(static_cast<uint16_t>(values.size()));
  out.append(reinterpret_cast<const char*>(&n), 2);
  for (const auto& v : values) {
    uint32_t len = htonl(v ? static_cast<uint32_t>(v->size()) : 0xffffffffu);
    out.append(reinterpret_cast<const char*>(&len), 4);
    if (v) out += *v;
  }
  return out;
}

std::string data_row(const std::vector<std::optional<std::string>>& values) {
  std::string body = row_body(values);
  std::string out = "D";
  uint32_t len = htonl(static_cast<uint32_t>(body.size() + 4));
  out.append(reinterpret_cast<const char*>(&len), 4);
  return out + body;
}

TablePolicy subscriptions() {
  TablePolicy t;
  t.schema = "public";
  t.name = "subscriptions";
  t.key = {"id"};
  t.version_column = "version";
  t.read_ttl = 60s;
  return t;
}

}  // namespace

TEST_CASE("the client's row is the server's without the appended key and version", "[result_tracker]") {
  auto table = subscriptions();
  ResultTracking tracking;
  tracking.tables = {&table};
  tracking.added_columns = 2;
  struct Case {
    std::vector<std::optional<std::string>> server, client;
  };
  const Case cases[] = {
      {{"old", "42", "7"}, {"old"}},
      {{std::nullopt, "42", "7"}, {std::nullopt}},
      {{"", "x", "42", "7"}, {"", "x"}},
      {{"42", "7"}, {}},
  };
  for (const auto& c : cases) {
    const std::string body = row_body(c.server);
    std::string out;
    client_data_row(out, pg::decode_data_row(body), body, tracking.added_columns);
    CHECK(out == data_row(c.client));
  }
  const std::string short_row = row_body({"42"});
  std::string out;
  CHECK_THROWS_AS(client_data_row(out, pg::decode_data_row(short_row), short_row, 2), pg::MalformedMessage);
}

TEST_CASE("a large row streams unless its length word must change", "[result_tracker]") {
  auto table = subscriptions();
  ResultTracking appended;
  appended.tables = {&table};
  appended.added_columns = 2;
  ResultTracking in_place = appended;
  in_place.added_columns = 0;
  in_place.in_place = true;
  ResultTracking dropped = appended;
  dropped.drop_result = true;
  const ResultLayout undescribed;
  ResultLayout foreign;
  foreign.described = foreign.foreign = true;
  const ResultTracking untracked;
  CHECK(large_row_passage(nullptr, undescribed) == RowPassage::stream);
  CHECK(large_row_passage(&untracked, undescribed) == RowPassage::stream);
  CHECK(large_row_passage(&appended, undescribed) == RowPassage::whole);
  CHECK(large_row_passage(&appended, foreign) == RowPassage::stream);
  CHECK(large_row_passage(&in_place, undescribed) == RowPassage::scan);
  CHECK(large_row_passage(&dropped, undescribed) == RowPassage::drop);
}

TEST_CASE("a cursor's or prepared statement's added columns are known by their names", "[result_tracker]") {
  auto table = subscriptions();
  RelationIndex relations;
  auto description = [](std::vector<std::string_view> names) {
    pg::RowDescription d;
    for (auto name : names) d.fields.push_back({name, 0, 0, 25, -1, -1, 0});
    return d;
  };
  ResultTracking known;
  known.tables = {&table};
  known.added_columns = 2;
  known.by_name = true;
  ResultTracking unknown;
  unknown.by_name = true;
  struct Case {
    const ResultTracking* tracking;
    std::vector<std::string_view> fields;
    unsigned added;
    bool foreign;
  };
  const Case cases[] = {
      {&known, {"notes", "occ:key", "occ:version"}, 2, false},
      {&known, {"notes", "status"}, 0, true},           // another cursor of that name
      {&known, {"notes", "occ:version"}, 0, true},      // not the columns the name was declared with
      {&unknown, {"notes", "occ:key", "occ:version"}, 2, false},
      {&unknown, {"notes"}, 0, false},
  };
  for (const auto& c : cases) {
    const auto layout = describe_layout(description(c.fields), *c.tracking, relations);
    CHECK(layout.added == c.added);
    CHECK(layout.foreign == c.foreign);
    CHECK(layout.client_columns == c.fields.size() - c.added);
  }
}

TEST_CASE("a view's columns are traced to the table columns they show", "[result_tracker][views]") {
  auto table = subscriptions();
  RelationIndex relations;
  auto& identity = relations.tables["public.subscriptions"];
  identity.oid = 100;
  identity.column_by_attnum = {{1, "id"}, {2, "notes"}, {3, "version"}};
  identity.view_column_by_attnum[200] = {{1, "id"}, {3, "version"}};  // its column 2 renames notes
  pg::RowDescription d;
  d.fields = {{"id", 200, 1, 23, 4, -1, 0},      {"n", 200, 2, 25, -1, -1, 0}, {"version", 200, 3, 20, 8, -1, 0},
              {"notes", 100, 2, 25, -1, -1, 0},  {"id", 300, 1, 23, 4, -1, 0}, {"version", 200, 3, 20, 8, -1, 1}};
  ResultTracking tracking;
  tracking.tables = {&table};
  tracking.in_place = true;
  const auto layout = describe_layout(d, tracking, relations);
  CHECK(layout.key_at == std::vector<int>{0});
  CHECK(layout.version_at == 2);
  std::vector<std::pair<unsigned, std::string>> base;
  for (const auto& column : layout.base) base.emplace_back(column.index, column.name);
  CHECK(base == std::vector<std::pair<unsigned, std::string>>{{0, "id"}, {2, "version"}, {3, "notes"}});
}

TEST_CASE("named results remember the tracking they were declared with", "[result_tracker]") {
  auto table = subscriptions();
  ResultTracking tracking;
  tracking.tables = {&table};
  tracking.added_columns = 2;
  NamedResults cursors;
  cursors.declare("c", tracking, 1);
  CHECK(cursors.rows_of("c", 1).added_columns == 2);
  CHECK(cursors.rows_of("c", 1).by_name);
  CHECK(cursors.rows_of("c", 2).tables.empty());  // rules reloaded: cut by name, noted no more
  CHECK(cursors.rows_of("d", 1).tables.empty());
  CHECK(cursors.rows_of("d", 1).by_name);
  cursors.declare("c", ResultTracking{}, 1);  // redeclared over an untracked query
  CHECK(cursors.size() == 0);
  for (int i = 0; i < 300; ++i) cursors.declare("c" + std::to_string(i), tracking, 1);
  CHECK(cursors.size() == NamedResults::kMaxNames);
  cursors.forget("");
  CHECK(cursors.size() == 0);
}

TEST_CASE("a row fed in pieces of any size scans to the same values", "[result_tracker]") {
  const std::string big(5000, 'n');
  const std::string body = row_body({"42", big, std::nullopt, "", "7"});
  const std::size_t piece = GENERATE(1, 2, 3, 5, 7, 64, 4999, 100000);
  RowScanner scan({8, 16, 8, 8, 8});
  for (std::size_t at = 0; at < body.size(); at += piece) {
    CHECK_FALSE(scan.complete());
    scan.feed(std::string_view(body).substr(at, piece));
  }
  REQUIRE(scan.complete());
  const auto row = scan.row();
  REQUIRE(row.values.size() == 5);
  CHECK(row.values[0] == std::optional<std::string_view>("42"));
  CHECK(row.values[1] == std::optional<std::string_view>(big.substr(0, 16)));
  CHECK(scan.truncated(1));
  CHECK_FALSE(scan.truncated(0));
  CHECK(row.values[2] == std::nullopt);
  CHECK(row.values[3] == std::optional<std::string_view>(""));
  CHECK(row.values[4] == std::optional<std::string_view>("7"));
}

TEST_CASE("a scanned row that is not a DataRow body is refused", "[result_tracker]") {
  std::string body = row_body({"42"});
  body += "x";  // past its one column
  RowScanner scan({8});
  CHECK_THROWS_AS(scan.feed(body), pg::MalformedMessage);
  std::string negative = row_body({"42"});
  negative[2] = negative[3] = negative[4] = '\xff';
  negative[5] = '\xfe';
  RowScanner scan2({8});
  CHECK_THROWS_AS(scan2.feed(negative), pg::MalformedMessage);
}

TEST_CASE("a noted row records key, version and the base values that fit", "[result_tracker]") {
  auto table = subscriptions();
  ResultTracking tracking;
  tracking.tables = {&table};
  tracking.in_place = true;
  ResultLayout layout;
  layout.known = true;
  layout.client_columns = 4;
  layout.key_at = {0};
  layout.version_at = 3;
  layout.base = {{0, 0, "id"}, {1, 0, "status"}, {2, 0, "notes"}, {3, 0, "version"}};
  const std::string long_notes(kMaxBaseValue + 1, 'n');
  const std::string body = row_body({"42", "active", long_notes, "7"});
  ReadSet reads(10);
  note_row(reads, pg::decode_data_row(body), tracking, layout, nullptr);
  const auto* row = reads.find(table, {"42"}, ReadSet::Clock::now());
  REQUIRE(row != nullptr);
  CHECK(row->version == "7");
  CHECK(row->base == R"({"id":"42","status":"active","version":"7"})");

  // Binary-format columns of an Execute's rows stay out of the base.
  const std::vector<int16_t> formats{0, 1, 0, 0};
  ReadSet binary(10);
  note_row(binary, pg::decode_data_row(body), tracking, layout, &formats);
  CHECK(binary.find(table, {"42"}, ReadSet::Clock::now())->base == R"({"id":"42","version":"7"})");
}
