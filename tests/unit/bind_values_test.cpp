#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "session/bind_values.h"

using occ::pg::Bind;

namespace {

Bind bind_of(std::vector<int16_t> formats, std::vector<std::optional<std::string_view>> params) {
  Bind bind;
  bind.param_formats = std::move(formats);
  bind.params = std::move(params);
  return bind;
}

}  // namespace

TEST_CASE("key_text gives a bound key in the text form the server prints", "[bind]") {
  const std::string int4("\x00\x00\x01\x2a", 4);
  const std::string int8("\xff\xff\xff\xff\xff\xff\xff\xfe", 8);
  const std::string int2("\x80\x00", 2);
  const std::string uuid("\x12\x34\x56\x78\x9a\xbc\xde\xf0\x01\x23\x45\x67\x89\xab\xcd\xef", 16);
  struct Row {
    std::vector<int16_t> formats;
    std::optional<std::string_view> value;
    std::vector<int32_t> types;
    std::optional<std::string> expected;
  };
  const std::vector<Row> rows = {
      {{}, "42", {}, "42"},                        // no format codes: all text
      {{0}, "it's", {}, "it's"},                   // one code for all
      {{1}, int4, {23}, "298"},                    // binary int4
      {{1}, int4, {}, "298"},                      // undescribed: by size
      {{1}, int8, {20}, "-2"},                     // binary int8, negative
      {{1}, int2, {21}, "-32768"},                 // binary int2
      {{1}, uuid, {2950}, "12345678-9abc-def0-0123-456789abcdef"},
      {{1}, "abc", {25}, "abc"},                   // binary text is its bytes
      {{1}, std::string_view("\x01\x02\x03", 3), {0}, std::nullopt},  // undecodable
      {{1}, int4, {1700}, std::nullopt},           // numeric: not decoded
      {{0}, std::nullopt, {}, std::nullopt},       // NULL
  };
  for (const Row& row : rows) {
    CAPTURE(row.types, row.formats);
    CHECK(occ::key_text(bind_of(row.formats, {row.value}), 0, row.types) == row.expected);
  }
  CHECK(occ::key_text(bind_of({}, {}), 0, {}) == std::nullopt);  // no such parameter
  // One code per value: the second value's own code applies.
  CHECK(occ::key_text(bind_of({0, 1}, {"7", int4}), 1, {}) == "298");
}

TEST_CASE("audit_param_text shows text as sent and binary as hex", "[bind]") {
  CHECK(occ::audit_param_text(bind_of({}, {"a\\b"}), 0) == "a\\b");
  CHECK(occ::audit_param_text(bind_of({1}, {std::string_view("\x00\xff", 2)}), 0) == "\\x00ff");
  CHECK(occ::audit_param_text(bind_of({0, 1}, {"x", "AB"}), 1) == "\\x4142");
  CHECK(occ::audit_param_text(bind_of({}, {std::nullopt}), 0) == std::nullopt);
}

TEST_CASE("mine_value takes a parameter's value, a constant's or the expression's text", "[bind]") {
  const std::vector<std::optional<std::string>> params = {"first", std::nullopt};
  CHECK(occ::mine_value("$1", &params, {}) == "first");
  CHECK(occ::mine_value("$2", &params, {}).is_null());
  CHECK(occ::mine_value("$3", &params, {}) == "$3");  // out of range: the text
  CHECK(occ::mine_value("$1", nullptr, {}) == "$1");  // simple protocol: no parameters
  CHECK(occ::mine_value("'it''s'", nullptr, {}) == "it's");
  CHECK(occ::mine_value("NULL", nullptr, {}).is_null());
  CHECK(occ::mine_value("now()", nullptr, {}) == "now()");
}
