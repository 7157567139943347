// The wire codec and the frame reader: round trips, split and merged reads, bad input.
#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "wire/frame_reader.h"
#include "wire/messages.h"
#include "wire/outbox.h"

using namespace occ;
using namespace occ::pg;
using namespace std::string_literals;

namespace {

// Feeds `bytes` to a reader in pieces of `piece` bytes and collects every complete frame.
std::vector<std::pair<char, std::string>> frames_of(const std::string& bytes, std::size_t piece,
                                                    bool untyped = false, std::size_t max = 1 << 20) {
  FrameReader reader(max, 8);
  reader.set_untyped(untyped);
  std::vector<std::pair<char, std::string>> out;
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    auto area = reader.write_area(1);
    std::size_t n = std::min({piece, area.size(), bytes.size() - pos});
    std::memcpy(area.data(), bytes.data() + pos, n);
    reader.commit(n);
    pos += n;
    Frame f;
    FrameReader::Status st;
    while ((st = reader.next(f)) == FrameReader::Status::frame) out.emplace_back(f.type, std::string(f.body));
    REQUIRE(st == FrameReader::Status::need_more);
  }
  REQUIRE(reader.buffered() == 0);
  return out;
}

std::string_view body_of(const std::string& message) { return std::string_view(message).substr(5); }

}  // namespace

TEST_CASE("every typed message round-trips through its encoder and decoder", "[codec]") {
  std::string out;

  encode_query(out, "SELECT 1; SELECT 2");
  CHECK(out == "Q\0\0\0\x17SELECT 1; SELECT 2\0"s);
  CHECK(decode_query(body_of(out)).sql == "SELECT 1; SELECT 2");

  out.clear();
  encode_parse(out, Parse{"s1", "UPDATE t SET a = $1 WHERE id = $2", {23, 20}});
  auto parse = decode_parse(body_of(out));
  CHECK(parse.statement == "s1");
  CHECK(parse.sql == "UPDATE t SET a = $1 WHERE id = $2");
  CHECK(parse.param_types == std::vector<int32_t>{23, 20});

  out.clear();
  const std::string binary_value("\0\x01", 2);
  Bind bind{"p", "s1", {0, 1}, {std::string_view("42"), std::nullopt, std::string_view(binary_value)}, {1}};
  encode_bind(out, bind);
  auto b = decode_bind(body_of(out));
  CHECK(b.portal == "p");
  CHECK(b.statement == "s1");
  CHECK(b.param_formats == std::vector<int16_t>{0, 1});
  REQUIRE(b.params.size() == 3);
  CHECK(*b.params[0] == "42");
  CHECK(!b.params[1]);
  CHECK(*b.params[2] == "\0\x01"s);
  CHECK(b.result_formats == std::vector<int16_t>{1});

  out.clear();
  encode_describe(out, fe::kDescribe, Describe{'P', "portal"});
  CHECK(out[0] == 'D');
  auto d = decode_describe(body_of(out));
  CHECK(d.kind == 'P');
  CHECK(d.name == "portal");

  out.clear();
  encode_execute(out, Execute{"p", 100});
  auto e = decode_execute(body_of(out));
  CHECK(e.portal == "p");
  CHECK(e.max_rows == 100);

  out.clear();
  encode_ready_for_query(out, 'T');
  CHECK(out == "Z\0\0\0\x05T"s);
  CHECK(decode_ready_for_query(body_of(out)).status == 'T');

  out.clear();
  encode_parameter_status(out, ParameterStatus{"application_name", "billing"});
  auto ps = decode_parameter_status(body_of(out));
  CHECK(ps.name == "application_name");
  CHECK(ps.value == "billing");

  out.clear();
  encode_backend_key_data(out, BackendKeyData{4242, -7});
  auto k = decode_backend_key_data(body_of(out));
  CHECK(k.process_id == 4242);
  CHECK(k.secret_key == -7);

  out.clear();
  encode_command_complete(out, "UPDATE 3");
  CHECK(decode_command_complete(body_of(out)).tag == "UPDATE 3");

  out.clear();
  encode_row_description(out, RowDescription{{{"id", 16384, 1, 20, 8, -1, 0}, {"notes", 16384, 4, 25, -1, -1, 1}}});
  auto rd = decode_row_description(body_of(out));
  REQUIRE(rd.fields.size() == 2);
  CHECK(rd.fields[1].name == "notes");
  CHECK(rd.fields[1].table_oid == 16384);
  CHECK(rd.fields[1].column == 4);
  CHECK(rd.fields[1].type_oid == 25);
  CHECK(rd.fields[1].type_size == -1);
  CHECK(rd.fields[1].format == 1);

  out.clear();
  encode_data_row(out, DataRow{{std::string_view("42"), std::nullopt, std::string_view("")}});
  auto dr = decode_data_row(body_of(out));
  REQUIRE(dr.values.size() == 3);
  CHECK(*dr.values[0] == "42");
  CHECK(!dr.values[1]);
  CHECK(dr.values[2]->empty());

  out.clear();
  encode_parameter_description(out, ParameterDescription{{25, 20}});
  CHECK(decode_parameter_description(body_of(out)).types == std::vector<int32_t>{25, 20});

  out.clear();
  encode_error(out, "ERROR", "40001", "occ: version conflict", "Current version is 4.", "Retry.");
  auto err = decode_error_fields(body_of(out));
  CHECK(err.get('S') == "ERROR");
  CHECK(err.get('C') == "40001");
  CHECK(err.get('M') == "occ: version conflict");
  CHECK(err.get('D') == "Current version is 4.");
  CHECK(err.get('H') == "Retry.");
  std::string again;
  encode_error(again, be::kErrorResponse, err);
  CHECK(again == out);
}

TEST_CASE("startup-phase packets round-trip", "[codec]") {
  std::string out;
  StartupMessage m;
  m.parameters = {{"user", "alice"}, {"database", "app"}, {"options", "-c statement_timeout=5s"}};
  encode_startup(out, m);
  auto decoded = decode_startup(std::string_view(out).substr(4));
  CHECK(decoded.protocol == kProtocolV3);
  CHECK(decoded.parameters == m.parameters);
  CHECK(decoded.get("options") == "-c statement_timeout=5s");

  out.clear();
  encode_cancel(out, CancelRequest{1234, 5678});
  CHECK(out.size() == 16);
  auto c = decode_cancel(std::string_view(out).substr(4));
  CHECK(c.process_id == 1234);
  CHECK(c.secret_key == 5678);

  out.clear();
  encode_ssl_request(out);
  CHECK(out == "\0\0\0\x08\x04\xd2\x16\x2f"s);
  out.clear();
  encode_gssenc_request(out);
  CHECK(out == "\0\0\0\x08\x04\xd2\x16\x30"s);
}

TEST_CASE("message names cover both directions", "[codec]") {
  CHECK(std::string(message_name(Direction::frontend, 'P')) == "Parse");
  CHECK(std::string(message_name(Direction::backend, 'D')) == "DataRow");
  CHECK(message_name(Direction::frontend, '?') == nullptr);
}

TEST_CASE("frames survive any split of the stream", "[codec][framing]") {
  std::string stream;
  encode_query(stream, "SELECT 1");
  encode_parse(stream, Parse{"", "SELECT $1", {}});
  encode_execute(stream, Execute{"", 0});
  stream += "S\0\0\0\x04"s;
  auto piece = GENERATE(1, 2, 3, 5, 7, 64, 4096);
  auto frames = frames_of(stream, static_cast<std::size_t>(piece));
  REQUIRE(frames.size() == 4);
  CHECK(frames[0].first == 'Q');
  CHECK(frames[0].second == "SELECT 1\0"s);
  CHECK(frames[1].first == 'P');
  CHECK(frames[2].first == 'E');
  CHECK(frames[3].first == 'S');
  CHECK(frames[3].second.empty());
}

TEST_CASE("untyped startup packets frame by their length word", "[codec][framing]") {
  std::string stream;
  encode_ssl_request(stream);
  StartupMessage m;
  m.parameters = {{"user", "u"}};
  encode_startup(stream, m);
  auto frames = frames_of(stream, 3, true);
  REQUIRE(frames.size() == 2);
  CHECK(frames[0].second == "\x04\xd2\x16\x2f"s);
  CHECK(decode_startup(frames[1].second).get("user") == "u");
}

TEST_CASE("bad lengths and oversized frames are reported, not buffered", "[codec][framing]") {
  struct Case {
    std::string bytes;
    bool untyped;
    FrameReader::Status expected;
  };
  const std::vector<Case> cases = {
      {"Q\0\0\0\x03"s, false, FrameReader::Status::bad_length},
      {"Q\0\0\0\0"s, false, FrameReader::Status::bad_length},
      {"Q\x7f\xff\xff\xff"s, false, FrameReader::Status::too_long},
      {"Q\0\0\x04\x05"s, false, FrameReader::Status::too_long},  // body 1025 > limit of 1024
      {"Q\0\0\x04\x04"s, false, FrameReader::Status::need_more},  // body 1024: at the limit
      {"\0\0\0\x03"s, true, FrameReader::Status::bad_length},
      {"\0\0\0\x07xxx"s, true, FrameReader::Status::bad_length},
      {"\x01\0\0\0xxxx"s, true, FrameReader::Status::too_long},
      {"Q\0\0\0\x10truncated"s, false, FrameReader::Status::need_more},
  };
  for (const auto& c : cases) {
    FrameReader reader(1024);
    reader.set_untyped(c.untyped);
    auto area = reader.write_area(c.bytes.size());
    std::memcpy(area.data(), c.bytes.data(), c.bytes.size());
    reader.commit(c.bytes.size());
    Frame f;
    CHECK(reader.next(f) == c.expected);
  }
}

TEST_CASE("malformed bodies are rejected by the decoders", "[codec]") {
  CHECK_THROWS_AS(decode_query("no terminator"), MalformedMessage);
  CHECK_THROWS_AS(decode_query("a\0b\0"s), MalformedMessage);
  CHECK_THROWS_AS(decode_parse("s\0q\0\xff\xff"s), MalformedMessage);       // negative count
  CHECK_THROWS_AS(decode_parse("s\0q\0\0\x02\0\0\0\x17"s), MalformedMessage);  // one type short
  CHECK_THROWS_AS(decode_bind("\0\0\0\0\0\x01\xff\xff\xff\xfe"s), MalformedMessage);
  CHECK_THROWS_AS(decode_describe("X\0"s), MalformedMessage);
  CHECK_THROWS_AS(decode_ready_for_query("Q"), MalformedMessage);
  CHECK_THROWS_AS(decode_data_row("\0\x01\0\0\0\x09" "abc"s), MalformedMessage);
  CHECK_THROWS_AS(decode_startup("\0\x03\0\0user\0u\0"s), MalformedMessage);  // no final NUL
  CHECK_THROWS_WITH(validate(Direction::frontend, 'S', "x"), "Sync: unexpected body");
  CHECK_NOTHROW(validate(Direction::frontend, 'Q', "SELECT 1\0"s));
}

TEST_CASE("random garbage never crashes the reader or the decoders", "[codec][fuzz]") {
  std::mt19937 rng(12345);
  int accepted = 0;
  int refused = 0;
  for (int round = 0; round < 2000; ++round) {
    // A valid length word now and then, so that some frames get as far as the decoders.
    std::string bytes(rng() % 64, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng());
    if (bytes.size() >= 5 && round % 2 == 0) {
      bytes[1] = bytes[2] = bytes[3] = 0;
      bytes[4] = static_cast<char>(4 + rng() % (bytes.size() - 4));
    }
    FrameReader reader(4096, 4);
    auto area = reader.write_area(bytes.size());
    std::memcpy(area.data(), bytes.data(), bytes.size());
    reader.commit(bytes.size());
    Frame f;
    std::size_t framed = 0;
    FrameReader::Status status;
    while ((status = reader.next(f)) == FrameReader::Status::frame) {
      framed += f.raw.size();
      CHECK(f.raw.size() == 5 + f.body.size());
      for (auto direction : {Direction::frontend, Direction::backend}) {
        try {
          validate(direction, f.type, f.body);
          ++accepted;
        } catch (const MalformedMessage&) {
          ++refused;  // anything else thrown fails the test
        }
      }
    }
    // Every byte is in a frame, or waits for more, or the length word was refused.
    CHECK(status != FrameReader::Status::chunk);
    if (status == FrameReader::Status::need_more) CHECK(framed + reader.buffered() == bytes.size());
  }
  CHECK(accepted > 0);
  CHECK(refused > 0);
}

TEST_CASE("a frame held whole gives its memory back, also when the next one is streamed", "[codec][framing]") {
  FrameReader reader(1 << 20, 16);
  // One read: a frame held whole, then the head of a large one that is streamed.
  const std::string whole = "D"s + "\0\0\x04\x04"s + std::string(1024, 'x');
  const std::string bytes = whole + "d"s + "\0\0\x10\x04"s + std::string(11, 'y');
  auto area = reader.write_area(bytes.size());
  REQUIRE(area.size() >= bytes.size());
  std::memcpy(area.data(), bytes.data(), bytes.size());
  reader.commit(bytes.size());
  Frame f;
  REQUIRE(reader.next(f) == FrameReader::Status::frame);
  CHECK(f.raw == whole);
  REQUIRE(reader.next(f) == FrameReader::Status::need_more);
  CHECK(reader.stream_head().size() == 16);
  // Empty now, with its offsets where the streamed head ended: the memory goes, the area is in it.
  area = reader.write_area(1);
  CHECK(reader.capacity() == 16);
  CHECK(area.size() == 16);
  std::memset(area.data(), 'y', std::min<std::size_t>(area.size(), 16));  // ASan: inside the buffer
}

TEST_CASE("a large frame can be streamed through in chunks", "[codec][framing]") {
  std::string stream = "d"s + "\0\0\x10\x04"s + std::string(4096, 'x');  // CopyData of 4096 bytes
  FrameReader reader(1 << 20, 16);
  std::string forwarded;
  std::size_t pos = 0;
  bool streaming = false;
  while (pos < stream.size()) {
    auto area = reader.write_area(1);
    std::size_t n = std::min<std::size_t>({100, area.size(), stream.size() - pos});
    std::memcpy(area.data(), stream.data() + pos, n);
    reader.commit(n);
    pos += n;
    Frame f;
    for (;;) {
      auto st = reader.next(f);
      if (st == FrameReader::Status::chunk) {
        forwarded += f.raw;
        continue;
      }
      REQUIRE(st == FrameReader::Status::need_more);
      char type;
      std::size_t length;
      if (!streaming && reader.head_incomplete(type, length)) {
        CHECK(type == 'd');
        CHECK(length == 4096);
        forwarded += reader.stream_head();
        streaming = true;
      }
      break;
    }
    CHECK(reader.capacity() < 1024);  // never buffered whole
  }
  CHECK(forwarded == stream);
}

TEST_CASE("the outbox forwards views until something changes", "[codec]") {
  std::string input = "abcdef";
  Outbox box;
  box.forward(std::string_view(input).substr(0, 2));
  box.forward(std::string_view(input).substr(2, 2));
  CHECK(box.pending().data() == input.data());
  CHECK(box.pending() == "abcd");
  box.drop();
  box.edit() += "XY";
  box.forward(std::string_view(input).substr(5, 1));
  CHECK(box.pending() == "abcdXYf");
  box.clear();
  CHECK(box.empty());
}
