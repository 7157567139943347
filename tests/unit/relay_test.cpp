// The session's protocol core without sockets: client and server frames in, the exact bytes each
// side receives out, and what the core asks of its shell (an end, the state a cancel checks).
#include <catch2/catch.hpp>

#include <algorithm>
#include <memory>
#include <tuple>
#include <string>
#include <vector>

#include "config/rules.h"
#include "session/relay.h"
#include "stats/counters.h"
#include "wire/frame_reader.h"
#include "wire/messages.h"

using namespace occ;

namespace {

// One protocol message from its type and body (the length word in between).
std::string message(char type, std::string_view body = {}) {
  std::string out;
  pg::MessageWriter w(out);
  w.begin(type);
  w.bytes(body);
  w.finish();
  return out;
}

std::string query(std::string_view sql) {
  std::string out;
  pg::encode_query(out, sql);
  return out;
}
std::string parse(std::string_view name, std::string_view sql) {
  std::string out;
  pg::encode_parse(out, {name, sql, {}});
  return out;
}
std::string bind(std::string_view statement) {
  std::string out;
  pg::encode_bind(out, {"", statement, {}, {}, {}});
  return out;
}
std::string describe_portal() {
  std::string out;
  pg::encode_describe(out, pg::fe::kDescribe, {'P', ""});
  return out;
}
std::string execute() {
  std::string out;
  pg::encode_execute(out, {"", 0});
  return out;
}
const std::string kSync = message(pg::fe::kSync);
const std::string kTerminate = message(pg::fe::kTerminate);

std::string ready(char status = 'I') {
  std::string out;
  pg::encode_ready_for_query(out, status);
  return out;
}
std::string complete(std::string_view tag) {
  std::string out;
  pg::encode_command_complete(out, tag);
  return out;
}
std::string columns(const std::vector<std::string_view>& names) {
  pg::RowDescription d;
  for (auto name : names) d.fields.push_back({name, 0, 0, 25, -1, -1, 0});
  std::string out;
  pg::encode_row_description(out, d);
  return out;
}
std::string row(const std::vector<std::optional<std::string_view>>& values) {
  std::string out;
  pg::encode_data_row(out, {values});
  return out;
}
std::string error(std::string_view sqlstate, std::string_view text) {
  std::string out;
  pg::encode_error(out, "ERROR", sqlstate, text);
  return out;
}
const std::string kParseComplete = message(pg::be::kParseComplete);
const std::string kBindComplete = message(pg::be::kBindComplete);
const std::string kCloseComplete = message(pg::be::kCloseComplete);
const std::string kNoData = message(pg::be::kNoData);

constexpr const char* kRules = R"(tables:
  - table: public.subscriptions
    key: [id]
    version_column: version
)";

// Calls `deliver` with each whole message of `bytes`.
template <typename Deliver>
void each_frame(const std::string& bytes, Deliver deliver) {
  for (std::size_t at = 0; at < bytes.size();) {
    REQUIRE(bytes.size() - at >= 5);
    uint32_t length = 0;
    for (int i = 1; i <= 4; ++i) length = (length << 8) | static_cast<unsigned char>(bytes[at + i]);
    const std::string_view raw(bytes.data() + at, 1 + length);
    deliver(Frame{raw[0], raw.substr(5), raw});
    at += raw.size();
  }
}

// A relay past the login, with the rules given (none: nothing protected).
struct Harness {
  PolicyStore store;
  Relay relay{store, 1000, "test"};

  explicit Harness(const char* rules_yaml = nullptr) {
    if (rules_yaml) {
      auto policy = std::make_shared<Policy>();
      policy->rules = std::make_shared<const Rules>(parse_rules(rules_yaml, "rules.yaml"));
      store.set(std::move(policy));
    }
    relay.begin("app", "app", "", std::nullopt);
    relay.set_phase(Phase::authenticating);
    REQUIRE(from_server(message(pg::be::kAuthentication, std::string("\0\0\0\0", 4)) + ready()).size() > 0);
  }

  // Feeds the client's messages (whole, back to back) and returns the bytes the server gets.
  std::string from_client(const std::string& bytes) { return feed(bytes, true); }
  // Feeds the server's messages and returns the bytes the client gets.
  std::string from_server(const std::string& bytes) { return feed(bytes, false); }

 private:
  std::string feed(const std::string& bytes, bool client) {
    each_frame(bytes, [&](const Frame& frame) {
      client ? relay.on_client_frame(frame) : relay.on_server_frame(frame);
    });
    Outbox& out = client ? relay.to_server() : relay.to_client();
    std::string sent(out.pending());
    out.clear();
    return sent;
  }
};

uint64_t counted(stats::Counter c) { return stats::snapshot().counters[static_cast<unsigned>(c)]; }

}  // namespace

TEST_CASE("with nothing protected every message passes byte for byte and the queue empties", "[relay]") {
  struct Exchange {
    const char* name;
    std::string client;
    std::string server;
  };
  const Exchange exchanges[] = {
      {"simple query", query("SELECT 1"), columns({"?column?"}) + row({"1"}) + complete("SELECT 1") + ready()},
      {"several statements in one Query", query("SELECT 1; SELECT 2"),
       columns({"a"}) + row({"1"}) + complete("SELECT 1") + columns({"b"}) + row({"2"}) + complete("SELECT 1") +
           ready()},
      {"extended", parse("", "SELECT 1") + bind("") + describe_portal() + execute() + kSync,
       kParseComplete + kBindComplete + columns({"x"}) + row({"1"}) + complete("SELECT 1") + ready()},
      {"error in a pipeline: the server skips to Sync", parse("", "SELEC") + bind("") + execute() + kSync,
       error("42601", "syntax error") + ready()},
      {"error in a simple Query", query("SELEC"), error("42601", "syntax error") + ready()},
      {"two pipelines, the first failing", parse("a", "SELEC") + kSync + parse("b", "SELECT 1") + kSync,
       error("42601", "syntax error") + ready() + kParseComplete + ready()},
      {"empty query", query(""), message(pg::be::kEmptyQueryResponse) + ready()},
      {"COPY TO STDOUT", query("COPY subscriptions TO STDOUT"),
       message(pg::be::kCopyOutResponse, std::string("\0\0\1\0\0", 5)) + message(pg::be::kCopyData, "42\tactive\n") +
           message(pg::be::kCopyDone) + complete("COPY 1") + ready()},
      {"transaction status", query("BEGIN"), complete("BEGIN") + ready('T')},
  };
  for (const Exchange& e : exchanges) {
    SECTION(e.name) {
      Harness h;
      CHECK(h.from_client(e.client) == e.client);
      CHECK(h.relay.awaiting_reply());
      CHECK(h.from_server(e.server) == e.server);
      CHECK_FALSE(h.relay.awaiting_reply());
      CHECK_FALSE(h.relay.end_request());
      CHECK(h.relay.phase() == Phase::relaying);
      CHECK(h.relay.idle() == (e.server.back() == 'I'));
    }
  }
}

TEST_CASE("COPY FROM STDIN: the client's data passes through, then the server's answer", "[relay]") {
  Harness h(kRules);
  const std::string copy = query("COPY subscriptions (id, status) FROM STDIN");
  CHECK(h.from_client(copy) == copy);
  const std::string copy_in = message(pg::be::kCopyInResponse, std::string("\0\0\2\0\0\0\0", 7));
  CHECK(h.from_server(copy_in) == copy_in);
  const std::string data = message(pg::fe::kCopyData, "7\tnew\n") + message(pg::fe::kCopyData, "8\tnew\n") +
                           message(pg::fe::kCopyDone);
  CHECK(h.from_client(data) == data);
  CHECK(h.from_server(complete("COPY 2") + ready()) == complete("COPY 2") + ready());
  CHECK_FALSE(h.relay.awaiting_reply());
  CHECK_FALSE(h.relay.end_request());
}

// Feeds `bytes` to the relay `piece` bytes at a time through a FrameReader, as the shell reads a
// socket, and returns what the relay sent the other way.
std::string feed_in_pieces(Relay& relay, const std::string& bytes, std::size_t piece, bool client) {
  FrameReader reader(1 << 20);
  Outbox& out = client ? relay.to_server() : relay.to_client();
  std::string sent;
  for (std::size_t at = 0; at < bytes.size(); at += piece) {
    const std::size_t n = std::min(piece, bytes.size() - at);
    auto area = reader.write_area(n);
    std::copy_n(bytes.data() + at, n, area.data());
    reader.commit(n);
    Frame frame;
    while (reader.next(frame) == FrameReader::Status::frame)
      client ? relay.on_client_frame(frame) : relay.on_server_frame(frame);
    sent += out.pending();
    out.clear();
  }
  return sent;
}

TEST_CASE("frames split anywhere and merged in one read give the same bytes as whole frames", "[relay]") {
  const std::string select = query("SELECT notes FROM subscriptions WHERE id > 41");
  const std::string rewritten = query("SELECT notes, (subscriptions.id)::text AS \"occ:key\", "
                                      "(subscriptions.version)::text AS \"occ:version\" FROM subscriptions WHERE id > 41");
  const std::string server_rows = columns({"notes", "occ:key", "occ:version"}) + row({"old", "42", "7"}) +
                                  row({"new", "43", "2"}) + complete("SELECT 2") + ready();
  const std::string client_rows = columns({"notes"}) + row({"old"}) + row({"new"}) + complete("SELECT 2") + ready();
  for (const std::size_t piece : {std::size_t{1}, std::size_t{2}, std::size_t{5}, std::size_t{17}, std::size_t{4096}}) {
    INFO("pieces of " << piece << " bytes");
    Harness h(kRules);
    // Two Queries in one read (pipelined), or each split across many.
    CHECK(feed_in_pieces(h.relay, select + select, piece, true) == rewritten + rewritten);
    CHECK(feed_in_pieces(h.relay, server_rows + server_rows, piece, false) == client_rows + client_rows);
    CHECK_FALSE(h.relay.awaiting_reply());
  }
}

TEST_CASE("an error's position counts in the client's text, before and after the proxy's edits", "[relay]") {
  Harness h(kRules);
  const std::string sql = "SELECT notes FROM subscriptions WHERE nosuch > 1";
  const std::string sent = h.from_client(query(sql));
  std::string rewritten;
  each_frame(sent, [&](const Frame& frame) { rewritten = std::string(pg::decode_query(frame.body).sql); });
  REQUIRE(rewritten.size() > sql.size());
  for (const std::string_view word : {"notes", "nosuch"}) {
    INFO(word);
    pg::ErrorFields server;
    server.set('S', "ERROR");
    server.set('C', "42703");
    server.set('M', "column does not exist");
    server.set('P', std::to_string(rewritten.find(word) + 1));
    std::string error_message;
    pg::encode_error(error_message, pg::be::kErrorResponse, server);
    if (word == "nosuch") h.from_client(query(sql));
    const std::string told = h.from_server(error_message + ready());
    std::string position;
    each_frame(told, [&](const Frame& frame) {
      if (frame.type == pg::be::kErrorResponse) position = pg::decode_error_fields(frame.body).get('P');
    });
    CHECK(position == std::to_string(sql.find(word) + 1));
  }
}

TEST_CASE("a malformed client message is refused, not relayed", "[relay]") {
  Harness h(kRules);
  // A Parse whose statement name has no terminating NUL.
  CHECK_THROWS_AS(h.from_client(message(pg::fe::kParse, "abc")), pg::MalformedMessage);
}

TEST_CASE("the login's messages set the phase and the backend a cancel must name", "[relay]") {
  PolicyStore store;
  Relay relay{store, 1000, "test"};
  relay.begin("app", "app", "", std::nullopt);
  relay.set_phase(Phase::authenticating);
  std::string key;
  pg::encode_backend_key_data(key, {4242, 99});
  const std::string login = message(pg::be::kAuthentication, std::string("\0\0\0\0", 4)) + key + ready();
  each_frame(login, [&](const Frame& frame) { relay.on_server_frame(frame); });
  CHECK(relay.phase() == Phase::relaying);
  CHECK(relay.backend_pid() == 4242);
  CHECK(relay.backend_key() == 99);
  CHECK(relay.to_client().pending() == login);
  CHECK_FALSE(relay.awaiting_reply());
}

TEST_CASE("a reply that matches no request: fail closed, except a lone ReadyForQuery", "[relay]") {
  struct Case {
    const char* name;
    std::string client;  // what is in flight
    std::string reply;
    char unexpected;  // the reply named in the FATAL; 0: the session goes on
  };
  const Case cases[] = {
      {"ParseComplete with nothing in flight", "", kParseComplete, '1'},
      {"BindComplete where a Parse is awaited", parse("", "SELECT 1"), kBindComplete, '2'},
      {"NoData where an Execute is awaited", bind("") + execute(), kBindComplete + kNoData, 'n'},
      {"CloseComplete with nothing in flight", "", kCloseComplete, '3'},
      {"PortalSuspended with nothing in flight", "", message(pg::be::kPortalSuspended), 's'},
      {"CommandComplete with nothing in flight", "", complete("SELECT 1"), 'C'},
      {"ReadyForQuery nothing asked for", "", ready(), 0},
  };
  for (const Case& c : cases) {
    SECTION(c.name) {
      Harness h;
      h.from_client(c.client);
      const uint64_t before = counted(stats::Counter::replies_out_of_sync);
      CHECK(h.from_server(c.reply) == c.reply);  // the client gets the reply as it came
      CHECK(counted(stats::Counter::replies_out_of_sync) == before + 1);
      if (c.unexpected) {
        REQUIRE(h.relay.end_request());
        CHECK(h.relay.end_request()->reason == EndReason::replies_out_of_sync);
        CHECK(h.relay.phase() == Phase::out_of_sync);
        CHECK(client_fatal(EndReason::replies_out_of_sync, h.relay.end_request()->detail)->message ==
              std::string("occproxy: lost track of the database server's replies, so the session ends: an unexpected "
                          "reply '") + c.unexpected + "'");
      } else {
        CHECK_FALSE(h.relay.end_request());
        CHECK(h.relay.phase() == Phase::relaying);
      }
    }
  }
}

TEST_CASE("Terminate goes to the server, and the core asks its shell to end", "[relay]") {
  Harness h;
  CHECK(h.from_client(kTerminate) == kTerminate);
  REQUIRE(h.relay.end_request());
  CHECK(h.relay.end_request()->reason == EndReason::client_terminated);
}

TEST_CASE("a read of a protected row is cut to the client's columns and the write after it checked", "[relay]") {
  Harness h(kRules);
  const std::string select = "SELECT notes FROM subscriptions WHERE id IN (42, 43)";
  CHECK(h.from_client(query(select)) ==
        query("SELECT notes, (subscriptions.id)::text AS \"occ:key\", (subscriptions.version)::text AS "
              "\"occ:version\" FROM subscriptions WHERE id IN (42, 43)"));
  const std::string server_rows = columns({"notes", "occ:key", "occ:version"}) + row({"old", "42", "7"}) +
                                  row({std::nullopt, "43", "1"}) + complete("SELECT 2") + ready();
  CHECK(h.from_server(server_rows) ==
        columns({"notes"}) + row({"old"}) + row({std::nullopt}) + complete("SELECT 2") + ready());

  // What the server gets: its messages' types, the statement, the values bound.
  const auto check_plan = [](const std::string& sent) {
    std::string types;
    std::string statement;
    std::vector<std::optional<std::string>> values;
    each_frame(sent, [&](const Frame& frame) {
      types += frame.type;
      if (frame.type == pg::fe::kParse) statement = std::string(pg::decode_parse(frame.body).sql);
      if (frame.type == pg::fe::kBind)
        for (const auto& v : pg::decode_bind(frame.body).params) values.emplace_back(v);
    });
    return std::tuple{types, statement, values};
  };
  SECTION("extended: the UPDATE is checked against the version read, prepared once, then bound") {
    const std::string update = parse("", "UPDATE subscriptions SET notes = 'x' WHERE id = 42") + bind("") +
                               execute() + kSync;
    // First time: the client's unnamed Parse, and the same text prepared under the cache's name.
    const auto [types, statement, values] = check_plan(h.from_client(update));
    CHECK(types == "PPBES");
    CHECK(statement.starts_with("UPDATE subscriptions SET version = CASE WHEN subscriptions.version = $1::bigint"));
    CHECK(statement.find("occ.conflict(") != std::string::npos);
    CHECK(statement.ends_with("notes = 'x' WHERE id = 42"));
    REQUIRE(values.size() == 2);
    CHECK(values[0] == "7");
    CHECK(h.from_server(kParseComplete + kParseComplete + kBindComplete + complete("UPDATE 1") + ready()) ==
          kParseComplete + kBindComplete + complete("UPDATE 1") + ready());
    // Again: no Parse reaches the server; the unnamed statement is closed and the Bind names the cached one.
    const auto [again, no_statement, again_values] = check_plan(h.from_client(update));
    CHECK(again == "CBES");
    CHECK(no_statement.empty());
    CHECK(h.from_server(kCloseComplete + kBindComplete + complete("UPDATE 1") + ready()) ==
          kParseComplete + kBindComplete + complete("UPDATE 1") + ready());
    CHECK_FALSE(h.relay.awaiting_reply());
  }
  SECTION("simple Query: sent as a cached statement, answered as the Query would be") {
    const auto [types, statement, values] =
        check_plan(h.from_client(query("UPDATE subscriptions SET notes = 'x' WHERE id = 42")));
    CHECK(types == "CPBDECS");
    CHECK(statement.starts_with("UPDATE subscriptions SET version = CASE WHEN subscriptions.version = $1::bigint"));
    CHECK(std::find(values.begin(), values.end(), std::optional<std::string>("7")) != values.end());
    const std::string replies = kCloseComplete + kParseComplete + kBindComplete + kNoData + complete("UPDATE 1") +
                                kCloseComplete + ready();
    CHECK(h.from_server(replies) == complete("UPDATE 1") + ready());
    CHECK_FALSE(h.relay.awaiting_reply());
    CHECK_FALSE(h.relay.end_request());
  }
  SECTION("a row the session did not read goes with RETURNING, its version learnt") {
    const std::string sent = h.from_client(query("UPDATE subscriptions SET notes = 'x' WHERE id = 99"));
    CHECK(sent == query("UPDATE subscriptions SET notes = 'x' WHERE id = 99 RETURNING (subscriptions.id)::text, "
                        "(subscriptions.version)::text"));
    CHECK(h.from_server(row({"99", "3"}) + complete("UPDATE 1") + ready()) == complete("UPDATE 1") + ready());
  }
}

// The types of the messages in `bytes`, and the statement of its Parse, if any.
std::pair<std::string, std::string> message_types(const std::string& bytes) {
  std::string types;
  std::string statement;
  each_frame(bytes, [&](const Frame& frame) {
    types += frame.type;
    if (frame.type == pg::fe::kParse) statement = std::string(pg::decode_parse(frame.body).sql);
  });
  return {types, statement};
}

TEST_CASE("a simple-Query read of one row by its key goes bound outside a transaction, answered as the Query",
          "[relay]") {
  Harness h(kRules);
  const std::string read = query("SELECT notes FROM subscriptions WHERE id = 42");
  const std::string bound_text = "SELECT notes, (subscriptions.id)::text AS \"occ:key\", (subscriptions.version)::text "
                                 "AS \"occ:version\" FROM subscriptions WHERE id = $1";
  const std::string server_rows = columns({"notes", "occ:key", "occ:version"}) + row({"old", "42", "7"}) +
                                  complete("SELECT 1");
  const std::string client_rows = columns({"notes"}) + row({"old"}) + complete("SELECT 1");
  CHECK(message_types(h.from_client(read)) == std::pair<std::string, std::string>{"CPBDECS", bound_text});
  CHECK(h.from_server(kCloseComplete + kParseComplete + kBindComplete + server_rows + kCloseComplete + ready()) ==
        client_rows + ready());
  // Prepared once: the next read binds it.
  CHECK(message_types(h.from_client(read)).first == "CBDECS");
  CHECK(h.from_server(kCloseComplete + kBindComplete + server_rows + kCloseComplete + ready()) ==
        client_rows + ready());

  SECTION("a stale cached plan: the Query goes again as text, the client sees one answer") {
    CHECK(message_types(h.from_client(read)).first == "CBDECS");
    // The server skips to Sync after the Bind's error; the proxy then closes the stale statement
    // with the next request and sends the Query as the client wrote it, with the columns appended.
    CHECK(h.from_server(kCloseComplete + error("0A000", "cached plan must not change result type") + ready()).empty());
    CHECK(h.relay.to_server().pending().empty());
    CHECK(std::string(h.relay.to_server_own().pending()) == query(bound_text.substr(0, bound_text.size() - 2) + "42"));
    h.relay.to_server_own().clear();
    CHECK(h.from_server(server_rows + ready()) == client_rows + ready());
    CHECK_FALSE(h.relay.awaiting_reply());
    // The next read closes the stale statement and prepares the text afresh under a new name.
    const auto [types, text] = message_types(h.from_client(read));
    CHECK(types == "CCPBDECS");
    CHECK(text == bound_text);
  }
  SECTION("inside a transaction block the read goes as text: a stale plan there would abort it") {
    CHECK(h.from_client(query("BEGIN")) == query("BEGIN"));
    CHECK(h.from_server(complete("BEGIN") + ready('T')) == complete("BEGIN") + ready('T'));
    CHECK(message_types(h.from_client(read)).first == "Q");
    h.from_server(server_rows + ready('T'));
  }
  SECTION("a read that is not pinned to one key goes as text") {
    CHECK(message_types(h.from_client(query("SELECT notes FROM subscriptions WHERE id > 42"))).first == "Q");
  }
  CHECK_FALSE(h.relay.end_request());
}

TEST_CASE("search_path follows what the server confirmed: a rolled back SET and a SET LOCAL end with their transaction",
          "[relay]") {
  Harness h(kRules);
  // Whether an unqualified UPDATE of subscriptions is taken as the protected public.subscriptions.
  const auto protects = [&h] {
    const std::string sent = h.from_client(query("UPDATE subscriptions SET notes = 'x' WHERE id = 7"));
    h.from_server(complete("UPDATE 1") + ready());
    return sent != query("UPDATE subscriptions SET notes = 'x' WHERE id = 7");
  };
  const auto exchange = [&h](std::string_view sql, const std::string& replies) {
    h.from_client(query(sql));
    h.from_server(replies);
  };
  REQUIRE(protects());
  SECTION("SET in a transaction block that rolls back") {
    exchange("BEGIN", complete("BEGIN") + ready('T'));
    exchange("SET search_path = elsewhere", complete("SET") + ready('T'));
    exchange("ROLLBACK", complete("ROLLBACK") + ready());
    CHECK(protects());
  }
  SECTION("SET in a transaction block that commits stays") {
    exchange("BEGIN", complete("BEGIN") + ready('T'));
    exchange("SET search_path = elsewhere", complete("SET") + ready('T'));
    exchange("COMMIT", complete("COMMIT") + ready());
    CHECK_FALSE(protects());
  }
  SECTION("SET LOCAL ends with its transaction") {
    exchange("BEGIN", complete("BEGIN") + ready('T'));
    exchange("SET LOCAL search_path = elsewhere", complete("SET") + ready('T'));
    exchange("COMMIT", complete("COMMIT") + ready());
    CHECK(protects());
  }
  SECTION("a Query whose implicit transaction failed after its SET") {
    exchange("SET search_path = elsewhere; SELECT 1/0", complete("SET") + error("22012", "division by zero") + ready());
    CHECK(protects());
  }
  SECTION("a SET in a Query that succeeds stays") {
    exchange("SET search_path = elsewhere", complete("SET") + ready());
    CHECK_FALSE(protects());
  }
}

TEST_CASE("an SQL-level prepared SELECT runs through its shadow: the client sees its own statement's replies",
          "[relay]") {
  Harness h(kRules);
  const std::string appended = "notes, (subscriptions.id)::text AS \"occ:key\", (subscriptions.version)::text AS "
                               "\"occ:version\" FROM subscriptions WHERE id = $1";
  CHECK(h.from_client(query("PREPARE r AS SELECT notes FROM subscriptions WHERE id = $1")) ==
        query("PREPARE r AS SELECT notes FROM subscriptions WHERE id = $1; PREPARE \"occ:p0\" AS SELECT " + appended));
  // The shadow's CommandComplete is the proxy's.
  CHECK(h.from_server(complete("PREPARE") + complete("PREPARE") + ready()) == complete("PREPARE") + ready());

  CHECK(h.from_client(query("EXECUTE r(42)")) == query("EXECUTE \"occ:p0\"(42)"));
  CHECK(h.from_server(columns({"notes", "occ:key", "occ:version"}) + row({"old", "42", "7"}) + complete("SELECT 1") +
                      ready()) == columns({"notes"}) + row({"old"}) + complete("SELECT 1") + ready());
  // The row is read: the write that follows is checked, not sent with RETURNING to learn the version.
  const std::string write = h.from_client(query("UPDATE subscriptions SET notes = 'x' WHERE id = 42"));
  CHECK(write.find("RETURNING") == std::string::npos);
  CHECK(write.find("occ.conflict(") != std::string::npos);
  h.from_server(kCloseComplete + kParseComplete + kBindComplete + kNoData + complete("UPDATE 1") + kCloseComplete +
                ready());

  // An error about the shadow names the client's statement, as the server would have.
  CHECK(h.from_client(query("EXECUTE r(1, 2)")) == query("EXECUTE \"occ:p0\"(1, 2)"));
  const std::string told = h.from_server(
      error("42601", "wrong number of parameters for prepared statement \"occ:p0\"") + ready());
  each_frame(told.substr(0, told.size() - ready().size()), [](const Frame& frame) {
    CHECK(frame.type == pg::be::kErrorResponse);
    CHECK(pg::decode_error_fields(frame.body).get('M') == "wrong number of parameters for prepared statement \"r\"");
  });
  CHECK(told.ends_with(ready()));

  // EXPLAIN and CREATE TABLE AS run the client's own statement.
  CHECK(h.from_client(query("EXPLAIN EXECUTE r(42)")) == query("EXPLAIN EXECUTE r(42)"));
  h.from_server(columns({"QUERY PLAN"}) + row({"Index Scan"}) + complete("EXPLAIN") + ready());

  // DEALLOCATE drops both; then EXECUTE is the client's own again.
  CHECK(h.from_client(query("DEALLOCATE r")) == query("DEALLOCATE r; DEALLOCATE \"occ:p0\""));
  CHECK(h.from_server(complete("DEALLOCATE") + complete("DEALLOCATE") + ready()) == complete("DEALLOCATE") + ready());
  CHECK(h.from_client(query("EXECUTE r(42)")) == query("EXECUTE r(42)"));
  h.from_server(error("26000", "prepared statement \"r\" does not exist") + ready());

  // A shadow whose PREPARE the server did not confirm is never executed; the next one has a new name.
  h.from_client(query("PREPARE r AS SELECT notes FROM subscriptions WHERE id = $1"));
  h.from_server(error("42P05", "prepared statement \"r\" already exists") + ready());
  CHECK(h.from_client(query("EXECUTE r(42)")) == query("EXECUTE r(42)"));
  h.from_server(complete("SELECT 0") + ready());
  CHECK(h.from_client(query("PREPARE s AS SELECT notes FROM subscriptions WHERE id = $1")).find("\"occ:p2\"") !=
        std::string::npos);
  CHECK_FALSE(h.relay.end_request());
}

TEST_CASE("a DEALLOCATE sent in a Parse closes the shadow beside it", "[relay]") {
  Harness h(kRules);
  h.from_client(query("PREPARE r AS SELECT notes FROM subscriptions WHERE id = $1"));
  h.from_server(complete("PREPARE") + complete("PREPARE") + ready());
  std::string close_shadow;
  pg::encode_describe(close_shadow, pg::fe::kClose, {'S', "occ:p0"});
  const std::string deallocate = parse("", "DEALLOCATE r") + bind("") + execute() + kSync;
  CHECK(h.from_client(deallocate) == parse("", "DEALLOCATE r") + close_shadow + bind("") + execute() + kSync);
  CHECK(h.from_server(kParseComplete + kCloseComplete + kBindComplete + complete("DEALLOCATE") + ready()) ==
        kParseComplete + kBindComplete + complete("DEALLOCATE") + ready());
  CHECK(h.from_client(query("EXECUTE r(42)")) == query("EXECUTE r(42)"));
  CHECK_FALSE(h.relay.end_request());
}

TEST_CASE("a large row streams unless its added columns must be cut", "[relay]") {
  Harness h(kRules);
  SECTION("an untracked result streams through in pieces") {
    h.from_client(query("SELECT repeat('x', 300000)"));
    h.from_server(columns({"repeat"}));
    CHECK(h.relay.may_stream_large_row());
    const std::string big = row({std::string(300000, 'x')});
    h.relay.on_large_row_head(std::string_view(big).substr(0, 1000));
    h.relay.on_large_row_piece(std::string_view(big).substr(1000), true);
    CHECK(h.relay.to_client().pending() == big);
  }
  SECTION("a tracked result whose rows lose columns is held whole") {
    h.from_client(query("SELECT notes FROM subscriptions WHERE id = 42"));
    h.from_server(columns({"notes", "occ:key", "occ:version"}));
    CHECK_FALSE(h.relay.may_stream_large_row());
  }
}
