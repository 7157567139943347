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

struct Config {
  std::string path;  // the file it was read from, for messages
  Endpoint listen{"127.0.0.1", 6432};
  Endpoint upstream{"127.0.0.1", 5432};
  std::string admin_dsn;
  StatsConfig stats;
  std::string log_level = "info";
  std::string audit_file;    // JSON lines; empty: audit lines go to the main log
  bool audit_table = false;  // `audit.table`: also insert into occ.conflict_log
  std::string rules_path;    // relative paths are resolved against the config file's folder
  unsigned threads = 0;      // io_context threads; 0 = one per core
  std::size_t max_client_connections = 1000;
  std::size_t max_message_length = 64u << 20;
  std::size_t read_set_max_rows = 100000;  // per client session
  std::chrono::milliseconds startup_timeout{10'000};
  std::chrono::milliseconds shutdown_timeout{30'000};
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
