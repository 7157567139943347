// The stats endpoint (SPEC 4): /health, /stats, /metrics, /rules, /conflicts, /invariants and an HTML page at /.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"

namespace occ::stats {

struct HttpServerOptions {
  Endpoint listen{"127.0.0.1", 9187};
  std::string token;                  // empty: no Authorization header needed
  std::function<bool()> upstream_up;  // for /health; unset: the upstream is reported "unknown"
  // Longest a connection may take to send one request (idle keep-alive included) or read a reply.
  std::chrono::milliseconds timeout{10'000};
  // Exported as occproxy_client_connections_limit, so an alert can compare the open ones with it; 0: not exported.
  std::size_t max_client_connections = 0;
};

// What handle_request looks at, so endpoints are testable without sockets or Beast.
struct Request {
  std::string method;  // "GET"
  std::string target;  // "/stats?x=1"
  std::string authorization;
};

struct Response {
  unsigned status = 200;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra ones (Allow, WWW-Authenticate)
};

// Pure apart from reading the counters, the audit records, the rules and options.upstream_up.
Response handle_request(const Request& request, const HttpServerOptions& options);

// A callback for HttpServerOptions::upstream_up: TCP-connects to `upstream` with a 1 s timeout and
// remembers the answer for 1 s, so a tight health-check loop does not hammer the server.
std::function<bool()> upstream_probe(Endpoint upstream);

// Serves on its own thread and io_context, so a slow scrape never delays the relay.
class HttpServer {
 public:
  explicit HttpServer(HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds (std::runtime_error naming the address when it cannot) and starts serving. Once only.
  void start();
  // Closes the listener and every connection; idempotent. A stopped server does not restart.
  void stop();
  // The bound port (useful with port 0).
  uint16_t port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
};

}  // namespace occ::stats
