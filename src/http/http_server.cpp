// Boost.Beast server for the stats endpoint: a table of GET handlers, one coroutine per client.
#include <utility>

#include "http/http_server.h"

#include <array>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "audit/audit_log.h"
#include "audit/invariants.h"
#include "config/rules.h"
#include "http/conflicts_page.h"
#include "stats/counters.h"
#include "http/metrics_text.h"

// GCC 12 wrongly pairs Asio's coroutine frame operator new with the sized operator delete.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace occ::stats {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using json = nlohmann::json;

// Every endpoint is a GET without a body; anything bigger is a mistake or an attack.
constexpr std::size_t kHeaderLimit = 8 * 1024;
constexpr std::size_t kBodyLimit = 8 * 1024;
constexpr std::chrono::seconds kProbeTimeout{1};
constexpr std::chrono::seconds kProbeCacheFor{1};
// After refusing a request, how long and how much of the rest of it to read and discard.
constexpr std::chrono::seconds kLingerFor{2};
constexpr std::size_t kLingerLimit = 16 * 1024 * 1024;

constexpr const char* kJson = "application/json";
constexpr const char* kHtml = "text/html; charset=utf-8";

Response json_response(unsigned status, const json& body) {
  return {status, kJson, body.dump(2, ' ', false, json::error_handler_t::replace) + "\n", {}};
}

Response error_response(unsigned status, const std::string& message) {
  return json_response(status, json{{"error", message}});
}

Response health(const HttpServerOptions& options) {
  if (!options.upstream_up) return json_response(200, {{"status", "ok"}, {"upstream", "unknown"}});
  if (options.upstream_up()) return json_response(200, {{"status", "ok"}, {"upstream", "up"}});
  return json_response(503, {{"status", "unavailable"}, {"upstream", "down"}});
}

Response stats_json(const HttpServerOptions&) {
  const Snapshot snap = snapshot();
  json counters = json::object();
  for (unsigned i = 0; i < snap.counters.size(); ++i)
    counters[name(static_cast<Counter>(i))] = snap.counters[i];
  json gauges = json::object();
  for (unsigned i = 0; i < snap.gauges.size(); ++i)
    gauges[name(static_cast<Gauge>(i))] = snap.gauges[i];
  json tables = json::object();
  for (const Snapshot::Table& t : snap.tables) {
    json& row = tables[t.name];
    for (unsigned i = 0; i < t.counters.size(); ++i)
      row[name(static_cast<TableCounter>(i))] = t.counters[i];
    row["unchecked_writes"] = t.unchecked_writes;
  }
  json buckets = json::array();
  for (std::size_t i = 0; i < snap.latency_bucket_counts.size(); ++i) {
    const json le = i < snap.latency_bucket_bounds_seconds.size()
                        ? json(snap.latency_bucket_bounds_seconds[i])
                        : json("+Inf");
    buckets.push_back({{"le", le}, {"count", snap.latency_bucket_counts[i]}});
  }
  return json_response(200, {{"counters", std::move(counters)},
                             {"gauges", std::move(gauges)},
                             {"tables", std::move(tables)},
                             {"added_latency_seconds",
                              {{"buckets", std::move(buckets)},
                               {"count", snap.latency_count},
                               {"sum", snap.latency_sum_seconds}}}});
}

// The counters, what only this endpoint knows (the upstream probe, the connection limit), and the invariants.
Response metrics(const HttpServerOptions& options) {
  std::string text = metrics_text(snapshot());
  if (options.upstream_up) {
    text += "# HELP occproxy_upstream_up 1 when the upstream server accepts TCP connections, else 0.\n"
            "# TYPE occproxy_upstream_up gauge\n";
    text += options.upstream_up() ? "occproxy_upstream_up 1\n" : "occproxy_upstream_up 0\n";
  }
  if (options.max_client_connections > 0) {
    text += "# HELP occproxy_client_connections_limit max_client_connections: more clients are refused.\n"
            "# TYPE occproxy_client_connections_limit gauge\n"
            "occproxy_client_connections_limit " + std::to_string(options.max_client_connections) + "\n";
  }
  text += invariant_metrics_text(invariants::report());
  return {200, kMetricsContentType, std::move(text), {}};
}

// The largest unit that divides the value, as a rules file would spell it.
std::string format_duration(std::chrono::milliseconds d) {
  const long long ms = d.count();
  if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

// Same keys as the rules file, every default applied, so a DBA sees exactly what is in force.
json table_json(const TablePolicy& t) {
  return {{"table", t.qualified_name()},
          {"key", t.key},
          {"version_column", t.version_column},
          {"version_kind", to_string(t.version_kind)},
          {"on_unknown_version", t.reject_unknown_version ? "reject" : "allow"},
          {"app_managed_version", t.enforce_app_managed ? "enforce" : "passthrough"},
          {"check_deletes", t.check_deletes},
          {"mode", to_string(t.mode)},
          {"version_bump", to_string(t.version_bump)},
          {"on_unsupported", t.reject_unsupported ? "reject" : "passthrough"},
          {"conflict_sqlstate", t.conflict_sqlstate},
          {"read_ttl", format_duration(t.read_ttl)},
          {"force", {{"allowed_roles", t.force_roles}}},
          {"redact", t.redact},
          {"on_conflict", to_string(t.on_conflict)},
          {"track_writer", t.track_writer}};
}

Response rules_json(const HttpServerOptions&) {
  const RulesPtr rules = current_rules();
  json tables = json::array();
  for (const TablePolicy& t : rules->tables) tables.push_back(table_json(t));
  // Until a rules file is loaded the rules in force are empty and were never "loaded".
  const bool loaded = rules->loaded_at != std::chrono::system_clock::time_point{};
  return json_response(200, {{"path", rules->path},
                             {"loaded_at", loaded ? json(audit::format_timestamp(rules->loaded_at))
                                                  : json(nullptr)},
                             {"tables", std::move(tables)}});
}

// Each invariant in force with what its last run found; a failed run keeps the last rows found.
Response invariants_json(const HttpServerOptions&) {
  json out = json::array();
  for (const invariants::Status& st : invariants::report()) {
    out.push_back({{"name", st.invariant.name},
                   {"query", st.invariant.query},
                   {"interval", format_duration(st.invariant.interval)},
                   {"timeout", format_duration(st.invariant.timeout)},
                   {"last_run", st.ran ? json(audit::format_timestamp(st.last_run)) : json(nullptr)},
                   {"last_duration_ms", st.last_duration.count()},
                   {"last_error", st.last_error.empty() ? json(nullptr) : json(st.last_error)},
                   {"errors", st.errors},
                   {"violations", st.violations},
                   {"rows", st.rows}});
  }
  return json_response(200, out);
}

Response conflicts_json(const HttpServerOptions&) {
  return json_response(200, json(audit::recent(audit::kRecentCapacity)));
}

Response index_page(const HttpServerOptions&) {
  return {200, kHtml, conflicts_page(audit::recent(audit::kRecentCapacity), snapshot(), invariants::report()), {}};
}

struct Route {
  std::string_view path;
  Response (*handler)(const HttpServerOptions&);
};

constexpr std::string_view kConflictPrefix = "/conflicts/";

constexpr std::array<Route, 7> kRoutes{{
    {"/", index_page},
    {"/health", health},
    {"/stats", stats_json},
    {"/metrics", metrics},
    {"/rules", rules_json},
    {"/conflicts", conflicts_json},
    {"/invariants", invariants_json},
}};

// Compares every byte whatever the first mismatch, so response time does not leak the token.
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

bool authorized(const Request& request, const std::string& token) {
  if (token.empty()) return true;
  constexpr std::string_view kScheme = "bearer ";
  std::string_view header = request.authorization;
  if (header.size() < kScheme.size() ||
      !beast::iequals(beast::string_view(header.data(), kScheme.size()),
                      beast::string_view(kScheme.data(), kScheme.size())))
    return false;
  return same_secret(header.substr(kScheme.size()), token);
}

}  // namespace

Response handle_request(const Request& request, const HttpServerOptions& options) {
  if (!authorized(request, options.token)) {
    Response r = error_response(401, "missing or wrong bearer token");
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"occproxy\"");
    return r;
  }
  const std::string_view target = request.target;
  const std::string_view path = target.substr(0, target.find('?'));
  // GET /conflicts/{id}: one record, for an application to show its user the three-way diff.
  if (path.starts_with(kConflictPrefix) && path.size() > kConflictPrefix.size()) {
    if (request.method != "GET") {
      Response r = error_response(405, "method " + request.method + " not allowed, use GET");
      r.headers.emplace_back("Allow", "GET");
      return r;
    }
    const std::string_view id = path.substr(kConflictPrefix.size());
    json record = audit::find(id);
    if (record.is_null())
      return error_response(404, "no recent conflict with id " + std::string(id) + " (unknown, or expired from the " +
                                     std::to_string(audit::kRecentCapacity) + " kept)");
    return json_response(200, record);
  }
  for (const Route& route : kRoutes) {
    if (route.path != path) continue;
    if (request.method != "GET") {
      Response r = error_response(405, "method " + request.method + " not allowed, use GET");
      r.headers.emplace_back("Allow", "GET");
      return r;
    }
    try {
      return route.handler(options);
    } catch (const std::exception& e) {
      spdlog::error("stats http: {} failed: {}", path, e.what());
      return error_response(500, "internal error");
    }
  }
  return error_response(404, "unknown path " + std::string(path));
}

std::function<bool()> upstream_probe(Endpoint upstream) {
  struct Probe {
    Endpoint upstream;
    std::mutex mutex;
    std::chrono::steady_clock::time_point checked_at{};
    bool checked = false;
    bool up = false;
  };
  auto probe = std::make_shared<Probe>();
  probe->upstream = std::move(upstream);
  return [probe] {
    std::lock_guard lock(probe->mutex);
    const auto now = std::chrono::steady_clock::now();
    if (probe->checked && now - probe->checked_at < kProbeCacheFor) return probe->up;

    net::io_context ioc;
    tcp::resolver resolver(ioc);
    tcp::socket socket(ioc);
    bool connected = false;
    resolver.async_resolve(
        probe->upstream.host, std::to_string(probe->upstream.port),
        [&](const boost::system::error_code& ec, const tcp::resolver::results_type& results) {
          if (ec) return;
          net::async_connect(socket, results,
                             [&](const boost::system::error_code& connect_ec,
                                 const tcp::endpoint&) { connected = !connect_ec; });
        });
    ioc.run_for(kProbeTimeout);

    probe->up = connected;
    probe->checked = true;
    probe->checked_at = std::chrono::steady_clock::now();
    return connected;
  };
}

// Destroying it closes the listener and, with the io_context, every connection still open.
struct HttpServer::Impl {
  HttpServerOptions options;
  net::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  std::thread thread;
};

namespace {

// Completion of a detached coroutine: its failure reaches the log, never std::terminate.
auto log_failure(const char* what) {
  return [what](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("stats http: {}: {}", what, ex.what());
    } catch (...) {
      spdlog::error("stats http: {}: unknown exception", what);
    }
  };
}

http::response<http::string_body> to_beast(const Response& r, unsigned version, bool keep_alive) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), version};
  res.set(http::field::server, "occproxy");
  res.set(http::field::content_type, r.content_type);
  res.set(http::field::cache_control, "no-store");
  for (const auto& [field, value] : r.headers) res.set(field, value);
  res.body() = r.body;
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

// The reply to a request Beast could not parse, or none when the client just went away.
std::optional<Response> read_failure_response(const beast::error_code& ec) {
  if (ec == http::error::header_limit) return error_response(431, "request header too large");
  if (ec == http::error::body_limit) return error_response(413, "request body too large");
  const bool parse_error =
      ec.category() == http::make_error_code(http::error::bad_method).category();
  if (parse_error && ec != http::error::end_of_stream && ec != http::error::partial_message)
    return error_response(400, "malformed HTTP request: " + ec.message());
  return std::nullopt;
}

// Closing with unread input makes the kernel reset the connection, and a client still sending an
// oversized request then gets the reset instead of the error reply: read what it still sends,
// within bounds, before closing.
net::awaitable<void> linger(beast::tcp_stream& stream) {
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (ec) co_return;
  stream.expires_after(kLingerFor);
  std::array<char, 64 * 1024> discard;
  for (std::size_t drained = 0; drained < kLingerLimit;) {
    drained += co_await stream.async_read_some(net::buffer(discard),
                                               net::redirect_error(net::use_awaitable, ec));
    if (ec) co_return;
  }
}

net::awaitable<void> serve_connection(tcp::socket socket, const HttpServerOptions& options) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer(kHeaderLimit + kBodyLimit);
  beast::error_code ec;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(kBodyLimit);
    stream.expires_after(options.timeout);
    co_await http::async_read(stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      if (ec != http::error::end_of_stream)
        spdlog::debug("stats http: closing a connection: {}", ec.message());
      if (auto reply = read_failure_response(ec)) {
        auto res = to_beast(*reply, 11, false);
        co_await http::async_write(stream, res, net::redirect_error(net::use_awaitable, ec));
        if (!ec) co_await linger(stream);
      }
      break;
    }
    const auto& req = parser.get();
    Request request{std::string(req.method_string()), std::string(req.target()),
                    std::string(req[http::field::authorization])};
    auto res = to_beast(handle_request(request, options), req.version(), req.keep_alive());
    co_await http::async_write(stream, res, net::redirect_error(net::use_awaitable, ec));
    if (ec || !res.keep_alive()) break;
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

net::awaitable<void> accept_connections(tcp::acceptor& acceptor, const HttpServerOptions& options) {
  for (;;) {
    beast::error_code ec;
    tcp::socket socket =
        co_await acceptor.async_accept(net::redirect_error(net::use_awaitable, ec));
    if (ec == net::error::operation_aborted) co_return;
    if (ec) {
      // Out of descriptors, typically: back off instead of spinning on the error.
      spdlog::warn("stats http: accept failed: {}", ec.message());
      net::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(net::redirect_error(net::use_awaitable, ec));
      continue;
    }
    net::co_spawn(acceptor.get_executor(), serve_connection(std::move(socket), options),
                  log_failure("connection failed"));
  }
}

}  // namespace

HttpServer::HttpServer(HttpServerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
  if (!impl_ || impl_->thread.joinable())
    throw std::logic_error("HttpServer::start: already started or stopped");
  const Endpoint& listen = impl_->options.listen;
  const std::string where = "stats.listen " + listen.host + ":" + std::to_string(listen.port);
  try {
    tcp::resolver resolver(impl_->ioc);
    const tcp::endpoint endpoint =
        resolver.resolve(listen.host, std::to_string(listen.port), tcp::resolver::passive)
            .begin()
            ->endpoint();
    impl_->acceptor.open(endpoint.protocol());
    impl_->acceptor.set_option(net::socket_base::reuse_address(true));
    impl_->acceptor.bind(endpoint);
    impl_->acceptor.listen(net::socket_base::max_listen_connections);
    port_ = impl_->acceptor.local_endpoint().port();
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error(where + ": cannot listen: " + e.code().message());
  }
  net::co_spawn(impl_->ioc, accept_connections(impl_->acceptor, impl_->options),
                log_failure("listener stopped"));
  impl_->thread = std::thread([impl = impl_.get()] { impl->ioc.run(); });
  spdlog::info("stats endpoint listening on {}:{}", listen.host, port_);
}

void HttpServer::stop() {
  if (!impl_) return;
  impl_->ioc.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_.reset();
}

uint16_t HttpServer::port() const { return port_; }

}  // namespace occ::stats
