// The main YAML config (SPEC 2): where to listen, where the server is, limits.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace occ {

struct Endpoint {
  std::string host;
  uint16_t port = 0;
};

// "host:port" or "[v6]:port"; throws std::invalid_argument with a readable reason.
Endpoint parse_endpoint(const std::string& text);

struct StatsConfig {
  Endpoint listen{"127.0.0.1", 9187};
  std::string token;  // bearer token; empty means none required
};

// `tls.client_mode`: whether clients may (allow) or must (require) encrypt their connection.
enum class ClientTlsMode { disable, allow, require };
// `tls.upstream_mode`, read as libpq's sslmode: prefer falls back to plaintext when the server
// declines; require insists on TLS; verify-ca also checks the chain against upstream_ca_file;
// verify-full also checks that the certificate names the upstream host.
enum class UpstreamTlsMode { disable, prefer, require, verify_ca, verify_full };

// Whether the proxy sends SSLRequest to the server, and whether an 'N' answer ends the session.
inline bool upstream_tls_wanted(UpstreamTlsMode mode) { return mode != UpstreamTlsMode::disable; }
inline bool upstream_tls_required(UpstreamTlsMode mode) {
  return mode != UpstreamTlsMode::disable && mode != UpstreamTlsMode::prefer;
}

const char* to_string(ClientTlsMode mode);
const char* to_string(UpstreamTlsMode mode);

struct TlsConfig {
  std::string cert_file;  // PEM chain shown to clients, leaf first
  std::string key_file;   // its PEM private key
  // Defaults to allow when cert_file and key_file are set, else disable.
  ClientTlsMode client_mode = ClientTlsMode::disable;
  // Defaults to disable, so that a config without `tls` relays to the server exactly as before.
  UpstreamTlsMode upstream_mode = UpstreamTlsMode::disable;
  std::string upstream_ca_file;  // PEM CA bundle; required by, and only allowed with, verify-ca/verify-full
};

// `auth.mode`: passthrough relays the server's own authentication; terminate makes the proxy the
// SCRAM (or md5) server for the client and the client for the server (SPEC 6).
enum class AuthMode { passthrough, terminate };

// The function that migrations/003_auth_query.sql installs.
inline constexpr const char* kDefaultAuthQuery = "SELECT rolname, rolpassword FROM occ.auth_lookup($1)";

struct AuthConfig {
  AuthMode mode = AuthMode::passthrough;
  std::string query = kDefaultAuthQuery;  // run on admin_dsn with the role name as $1: (rolname, rolpassword)
  std::chrono::milliseconds cache_ttl{60'000};  // how long a looked-up verifier is reused; 0: every login
};

struct Config {
  std::string path;  // the file it was read from, for messages
  Endpoint listen{"127.0.0.1", 6432};
  Endpoint upstream{"127.0.0.1", 5432};
  std::string admin_dsn;
  StatsConfig stats;
  std::string log_level = "info";
  std::string log_file;      // the main log; empty: stderr
  bool log_json = false;     // `log.format: json`: one JSON object per line
  std::string audit_file;    // JSON lines; empty: audit lines go to the main log
  bool audit_table = false;  // `audit.table`: also insert into occ.conflict_log
  std::string rules_path;    // relative paths are resolved against the config file's folder
  unsigned threads = 0;      // io_context threads; 0 = one per core
  std::size_t max_client_connections = 1000;
  std::size_t max_message_length = 64u << 20;
  std::size_t read_set_max_rows = 100000;  // per client session
  std::chrono::milliseconds startup_timeout{10'000};
  std::chrono::milliseconds shutdown_timeout{30'000};
  TlsConfig tls;
  AuthConfig auth;
};

// A config mistake, already formatted as "file:line: key: what is wrong".
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Reads and validates the file; every problem is a ConfigError (a missing file names the path).
Config load_config(const std::string& path);
// The same from text already in memory; `path` names the file in messages and anchors relative paths.
Config parse_config(const std::string& yaml_text, const std::string& path);

}  // namespace occ
