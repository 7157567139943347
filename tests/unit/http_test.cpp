// Stats endpoint: every route through handle_request, then a real server on a loopback port.
#include <utility>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <sys/time.h>

#include "audit/audit_log.h"
#include "config/rules.h"
#include "stats/counters.h"
#include "http/http_server.h"

// GCC 12 wrongly pairs Asio's coroutine frame operator new with the sized operator delete.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

using nlohmann::json;
using occ::stats::handle_request;
using occ::stats::HttpServer;
using occ::stats::HttpServerOptions;
using occ::stats::Request;
using occ::stats::Response;
namespace net = boost::asio;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;

namespace {

Response get(const std::string& target, const HttpServerOptions& options = {},
             const std::string& authorization = "") {
  return handle_request(Request{"GET", target, authorization}, options);
}

std::string header(const Response& r, const std::string& field) {
  for (const auto& [name, value] : r.headers)
    if (name == field) return value;
  return "";
}

}  // namespace

TEST_CASE("/health reports the upstream", "[http]") {
  HttpServerOptions options;
  options.upstream_up = [] { return true; };
  Response up = get("/health", options);
  CHECK(up.status == 200);
  CHECK(up.content_type == "application/json");
  CHECK(json::parse(up.body) == json{{"status", "ok"}, {"upstream", "up"}});

  options.upstream_up = [] { return false; };
  Response down = get("/health", options);
  CHECK(down.status == 503);
  CHECK(json::parse(down.body) == json{{"status", "unavailable"}, {"upstream", "down"}});

  Response unknown = get("/health");
  CHECK(unknown.status == 200);
  CHECK(json::parse(unknown.body) == json{{"status", "ok"}, {"upstream", "unknown"}});
}

TEST_CASE("/stats is the counters snapshot as JSON", "[http]") {
  occ::stats::table_add("http_test.stats", occ::stats::TableCounter::forced_writes, 3);
  const auto before = occ::stats::snapshot();
  Response r = get("/stats?ignored=1");
  CHECK(r.status == 200);
  CHECK(r.content_type == "application/json");
  const json body = json::parse(r.body);
  CHECK(body["tables"]["http_test.stats"] ==
        json{{"rewritten", 0}, {"conflicts", 0}, {"shadow_conflicts", 0}, {"forced_writes", 3}, {"merges", 0},
             {"shadow_merges", 0}, {"unchecked_writes", 0}});
  CHECK(body["counters"].size() == static_cast<unsigned>(occ::stats::Counter::count_));
  CHECK(body["counters"]["rules_reload_failed"] ==
        before.counters[static_cast<unsigned>(occ::stats::Counter::rules_reload_failed)]);
  CHECK(body["gauges"].contains("connections_current"));
  const json& latency = body["added_latency_seconds"];
  REQUIRE(latency["buckets"].size() == 11);
  CHECK(latency["buckets"][0]["le"] == 5e-6);
  CHECK(latency["buckets"][10]["le"] == "+Inf");
  CHECK(latency["buckets"][10]["count"] == latency["count"]);
  CHECK(latency["sum"].is_number());
}

TEST_CASE("/metrics is Prometheus text", "[http]") {
  Response r = get("/metrics");
  CHECK(r.status == 200);
  CHECK(r.content_type == "text/plain; version=0.0.4");
  CHECK(r.body.rfind("# HELP occproxy_connections_total Client connections accepted.\n", 0) == 0);
}

TEST_CASE("/rules shows the rules in force with defaults applied", "[http]") {
  const occ::RulesPtr previous = occ::current_rules();
  auto rules = std::make_shared<occ::Rules>(occ::parse_rules(
      "defaults:\n"
      "  read_ttl: 90s\n"
      "  force:\n"
      "    allowed_roles: [dba]\n"
      "tables:\n"
      "  - table: public.subscriptions\n"
      "    key: [id]\n"
      "    mode: shadow\n"
      "    redact: [card]\n",
      "rules.yaml"));
  rules->loaded_at = std::chrono::system_clock::time_point{std::chrono::seconds(1714566896)};
  occ::set_current_rules(rules);
  Response r = get("/rules");
  occ::set_current_rules(previous);

  CHECK(r.status == 200);
  CHECK(json::parse(r.body) ==
        json{{"path", "rules.yaml"},
             {"loaded_at", "2024-05-01T12:34:56.000Z"},
             {"tables",
              {{{"table", "public.subscriptions"},
                {"key", {"id"}},
                {"version_column", "version"},
                {"version_kind", "counter"},
                {"on_unknown_version", "allow"},
                {"app_managed_version", "passthrough"},
                {"check_deletes", true},
                {"mode", "shadow"},
                {"version_bump", "trigger"},
                {"on_unsupported", "passthrough"},
                {"conflict_sqlstate", "40001"},
                {"read_ttl", "90s"},
                {"force", {{"allowed_roles", {"dba"}}}},
                {"redact", {"card"}},
                {"on_conflict", "reject"},
                {"track_writer", false}}}}});
}

TEST_CASE("/rules before any rules are loaded", "[http]") {
  const occ::RulesPtr previous = occ::current_rules();
  occ::set_current_rules(std::make_shared<occ::Rules>());
  Response r = get("/rules");
  occ::set_current_rules(previous);
  CHECK(r.status == 200);
  CHECK(json::parse(r.body) ==
        json{{"path", ""}, {"loaded_at", nullptr}, {"tables", json::array()}});
}

TEST_CASE("/conflicts and / show the recent audit records", "[http]") {
  occ::audit::record({{"kind", "conflict"},
                      {"table", "public.http_test"},
                      {"key", {{"id", 7}}},
                      {"diff", {{"name", {{"base", "a"}, {"mine", "<b>"}, {"theirs", "c"}}}}}});
  Response list = get("/conflicts");
  CHECK(list.status == 200);
  CHECK(list.content_type == "application/json");
  const json records = json::parse(list.body);
  REQUIRE(records.is_array());
  CHECK(records[0]["table"] == "public.http_test");
  CHECK(records[0]["key"] == json{{"id", 7}});

  Response page = get("/");
  CHECK(page.status == 200);
  CHECK(page.content_type == "text/html; charset=utf-8");
  CHECK(page.body.find("on public.http_test (id)=(7)</h3>") != std::string::npos);
  CHECK(page.body.find("<td>&lt;b&gt;</td>") != std::string::npos);
}

TEST_CASE("unknown paths get 404 and other methods 405", "[http]") {
  Response missing = get("/nope");
  CHECK(missing.status == 404);
  CHECK(json::parse(missing.body) == json{{"error", "unknown path /nope"}});

  Response post = handle_request(Request{"POST", "/stats", ""}, {});
  CHECK(post.status == 405);
  CHECK(header(post, "Allow") == "GET");
  CHECK(json::parse(post.body) == json{{"error", "method POST not allowed, use GET"}});

  CHECK(handle_request(Request{"DELETE", "/nope", ""}, {}).status == 404);
  CHECK(handle_request(Request{"HEAD", "/health", ""}, {}).status == 405);
}

TEST_CASE("a token requires Authorization: Bearer", "[http]") {
  HttpServerOptions options;
  options.token = "s3cret";
  struct Case {
    const char* authorization;
    unsigned status;
  };
  const Case cases[] = {
      {"", 401},
      {"Bearer s3cret", 200},
      {"bearer s3cret", 200},
      {"BEARER s3cret", 200},
      {"Bearer s3cre", 401},
      {"Bearer s3cret2", 401},
      {"Bearer  s3cret", 401},
      {"Basic s3cret", 401},
      {"s3cret", 401},
      {"Bearer", 401},
  };
  for (const Case& c : cases) {
    INFO("Authorization: " << c.authorization);
    CHECK(get("/metrics", options, c.authorization).status == c.status);
  }
  Response denied = get("/nope", options);
  CHECK(denied.status == 401);
  CHECK(header(denied, "WWW-Authenticate") == "Bearer realm=\"occproxy\"");
  CHECK(json::parse(denied.body) == json{{"error", "missing or wrong bearer token"}});
}

TEST_CASE("upstream_probe connects, and remembers the answer for a second", "[http][probe]") {
  net::io_context ioc;
  tcp::acceptor listener(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  const uint16_t port = listener.local_endpoint().port();
  auto probe = occ::stats::upstream_probe({"127.0.0.1", port});
  CHECK(probe());
  listener.close();
  CHECK(probe());  // cached
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  CHECK_FALSE(probe());

  auto unresolvable = occ::stats::upstream_probe({"no-such-host.invalid", 5432});
  CHECK_FALSE(unresolvable());
}

namespace {

// A blocking client socket that gives up after 5 s instead of hanging the test run.
tcp::socket connect_to(net::io_context& ioc, uint16_t port) {
  tcp::socket socket(ioc);
  socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  timeval tv{5, 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return socket;
}

// Everything the server sends until it closes the connection.
std::string read_to_eof(tcp::socket& socket) {
  std::string out;
  boost::system::error_code ec;
  net::read(socket, net::dynamic_buffer(out), ec);
  REQUIRE(ec == net::error::eof);
  return out;
}

http::response<http::string_body> roundtrip(tcp::socket& socket, boost::beast::flat_buffer& buffer,
                                            const std::string& target, bool keep_alive = true) {
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "localhost");
  req.keep_alive(keep_alive);
  http::write(socket, req);
  http::response<http::string_body> res;
  http::read(socket, buffer, res);
  return res;
}

}  // namespace

TEST_CASE("the server answers over real sockets, keep-alive included", "[http][server]") {
  HttpServerOptions options;
  options.listen = {"127.0.0.1", 0};
  options.upstream_up = [] { return true; };
  HttpServer server(options);
  server.start();
  REQUIRE(server.port() != 0);

  net::io_context ioc;
  tcp::socket socket = connect_to(ioc, server.port());
  boost::beast::flat_buffer buffer;
  auto health = roundtrip(socket, buffer, "/health");
  CHECK(health.result_int() == 200);
  CHECK(health[http::field::content_type] == "application/json");
  CHECK(health[http::field::cache_control] == "no-store");
  CHECK(health.keep_alive());
  CHECK(json::parse(health.body()) == json{{"status", "ok"}, {"upstream", "up"}});

  auto metrics = roundtrip(socket, buffer, "/metrics");
  CHECK(metrics.result_int() == 200);
  CHECK(metrics[http::field::content_type] == "text/plain; version=0.0.4");

  auto last = roundtrip(socket, buffer, "/nope", false);
  CHECK(last.result_int() == 404);
  CHECK_FALSE(last.keep_alive());
  CHECK(read_to_eof(socket).empty());

  server.stop();
  tcp::socket refused(ioc);
  boost::system::error_code ec;
  refused.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), server.port()), ec);
  CHECK(ec == net::error::connection_refused);
}

TEST_CASE("malformed, oversized and idle requests close the connection", "[http][server]") {
  HttpServerOptions options;
  options.listen = {"127.0.0.1", 0};
  options.timeout = std::chrono::milliseconds(300);
  HttpServer server(options);
  server.start();
  net::io_context ioc;

  SECTION("garbage gets 400") {
    tcp::socket socket = connect_to(ioc, server.port());
    net::write(socket, net::buffer(std::string("NOT HTTP AT ALL\r\n\r\n")));
    const std::string reply = read_to_eof(socket);
    CHECK(reply.rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0);
    CHECK(reply.find("Connection: close\r\n") != std::string::npos);
    CHECK(reply.find("\"error\": \"malformed HTTP request: bad version\"") != std::string::npos);
  }
  SECTION("a bad header line gets 400") {
    tcp::socket socket = connect_to(ioc, server.port());
    net::write(socket, net::buffer(std::string("GET /health HTTP/1.1\r\nno colon here\r\n\r\n")));
    CHECK(read_to_eof(socket).rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0);
  }
  SECTION("a huge header gets 431") {
    tcp::socket socket = connect_to(ioc, server.port());
    const std::string request =
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n";
    boost::system::error_code ec;
    net::write(socket, net::buffer(request), ec);
    CHECK(read_to_eof(socket).rfind("HTTP/1.1 431 Request Header Fields Too Large\r\n", 0) == 0);
  }
  SECTION("a header too big for the socket buffers still gets its 431") {
    tcp::socket socket = connect_to(ioc, server.port());
    const std::string request =
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(8 << 20, 'a') + "\r\n\r\n";
    boost::system::error_code ec;
    net::write(socket, net::buffer(request), ec);
    REQUIRE_FALSE(ec);
    CHECK(read_to_eof(socket).rfind("HTTP/1.1 431 Request Header Fields Too Large\r\n", 0) == 0);
  }
  SECTION("a body gets 413") {
    tcp::socket socket = connect_to(ioc, server.port());
    const std::string request = "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" +
                                std::string(100000, 'b');
    boost::system::error_code ec;
    net::write(socket, net::buffer(request), ec);
    CHECK(read_to_eof(socket).rfind("HTTP/1.1 413 Payload Too Large\r\n", 0) == 0);
  }
  SECTION("a silent client is dropped after the timeout") {
    tcp::socket socket = connect_to(ioc, server.port());
    const auto started = std::chrono::steady_clock::now();
    CHECK(read_to_eof(socket).empty());
    const auto waited = std::chrono::steady_clock::now() - started;
    CHECK(waited >= std::chrono::milliseconds(250));
    CHECK(waited < std::chrono::seconds(3));
  }
  SECTION("a half-sent request is dropped after the timeout") {
    tcp::socket socket = connect_to(ioc, server.port());
    net::write(socket, net::buffer(std::string("GET /health HTTP/1.1\r\nHost: x\r\n")));
    CHECK(read_to_eof(socket).empty());
  }

  // Whatever the section did, the server still serves.
  tcp::socket socket = connect_to(ioc, server.port());
  boost::beast::flat_buffer buffer;
  CHECK(roundtrip(socket, buffer, "/health").result_int() == 200);
}

TEST_CASE("a taken port is a clear error", "[http][server]") {
  HttpServerOptions options;
  options.listen = {"127.0.0.1", 0};
  HttpServer first(options);
  first.start();
  options.listen.port = first.port();
  HttpServer second(options);
  CHECK_THROWS_WITH(second.start(), "stats.listen 127.0.0.1:" + std::to_string(first.port()) +
                                        ": cannot listen: Address already in use");
}

TEST_CASE("1000 concurrent requests all get their answer", "[http][server]") {
  HttpServerOptions options;
  options.listen = {"127.0.0.1", 0};
  HttpServer server(options);
  server.start();
  const uint16_t port = server.port();

  constexpr int kClients = 1000;
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  net::io_context ioc;
  for (int i = 0; i < kClients; ++i) {
    const std::string target = i % 2 ? "/stats" : "/metrics";
    net::co_spawn(
        ioc,
        [&, target]() -> net::awaitable<void> {
          tcp::socket socket(co_await net::this_coro::executor);
          co_await socket.async_connect(
              tcp::endpoint(net::ip::make_address("127.0.0.1"), port), net::use_awaitable);
          http::request<http::empty_body> req{http::verb::get, target, 11};
          req.set(http::field::host, "localhost");
          co_await http::async_write(socket, req, net::use_awaitable);
          boost::beast::flat_buffer buffer;
          http::response<http::string_body> res;
          co_await http::async_read(socket, buffer, res, net::use_awaitable);
          (res.result_int() == 200 && !res.body().empty() ? ok : failed)++;
        },
        [&](std::exception_ptr e) {
          if (e) failed++;
        });
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&] { ioc.run(); });
  for (auto& t : threads) t.join();

  CHECK(ok == kClients);
  CHECK(failed == 0);
}
