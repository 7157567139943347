// Main config: durations, endpoints, every key and every error message with its line.
#include <catch2/catch.hpp>

#include <optional>
#include <string>

#include "config/config.h"
#include "config/duration.h"

using namespace std::chrono_literals;

namespace {

const std::string cfg = "/etc/occ/occproxy.yaml";

std::string config_error(const std::string& yaml) {
  try {
    occ::parse_config(yaml, cfg);
  } catch (const occ::ConfigError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("durations", "[config]") {
  struct Row {
    const char* text;
    std::optional<std::chrono::milliseconds> expected;
  };
  const Row rows[] = {
      {"2s", 2000ms},
      {"500ms", 500ms},
      {"5m", 300'000ms},
      {"1h", 3'600'000ms},
      {"0s", 0ms},
      {"0ms", 0ms},
      {"90s", 90'000ms},
      {"", std::nullopt},
      {"s", std::nullopt},
      {"ms", std::nullopt},
      {"10", std::nullopt},
      {"-1s", std::nullopt},
      {"+1s", std::nullopt},
      {"1.5s", std::nullopt},
      {" 1s", std::nullopt},
      {"1s ", std::nullopt},
      {"1 s", std::nullopt},
      {"1d", std::nullopt},
      {"1S", std::nullopt},
      {"1sec", std::nullopt},
      {"1hs", std::nullopt},
      {"99999999999999999999ms", std::nullopt},
      {"9223372036854775807h", std::nullopt},
  };
  for (const auto& row : rows) {
    INFO(row.text);
    CHECK(occ::parse_duration(row.text) == row.expected);
  }
}

TEST_CASE("endpoints", "[config]") {
  struct Good {
    const char* text;
    const char* host;
    uint16_t port;
  };
  const Good good[] = {
      {"127.0.0.1:6432", "127.0.0.1", 6432},
      {"localhost:1", "localhost", 1},
      {"db.example.com:65535", "db.example.com", 65535},
      {"[::1]:5432", "::1", 5432},
      {"[fe80::1%eth0]:5432", "fe80::1%eth0", 5432},
  };
  for (const auto& row : good) {
    INFO(row.text);
    auto e = occ::parse_endpoint(row.text);
    CHECK(e.host == row.host);
    CHECK(e.port == row.port);
  }

  struct Bad {
    const char* text;
    const char* message;
  };
  const Bad bad[] = {
      {"127.0.0.1", "expected host:port, got \"127.0.0.1\" (e.g. 127.0.0.1:6432 or [::1]:6432)"},
      {"", "expected host:port, got \"\" (e.g. 127.0.0.1:6432 or [::1]:6432)"},
      {":6432", "no host in \":6432\" (e.g. 127.0.0.1:6432 or [::1]:6432)"},
      {"host:", "port must be a number from 1 to 65535, got \"\" in \"host:\""},
      {"host:0", "port must be a number from 1 to 65535, got \"0\" in \"host:0\""},
      {"host:65536", "port must be a number from 1 to 65535, got \"65536\" in \"host:65536\""},
      {"host:-1", "port must be a number from 1 to 65535, got \"-1\" in \"host:-1\""},
      {"host:+1", "port must be a number from 1 to 65535, got \"+1\" in \"host:+1\""},
      {"host:54x", "port must be a number from 1 to 65535, got \"54x\" in \"host:54x\""},
      {"::1:5432", "an IPv6 address needs brackets: \"[::1]:5432\""},
      {"[::1:5432", "missing ']' after the IPv6 address in \"[::1:5432\""},
      {"[::1]5432", "expected [address]:port, got \"[::1]5432\" (e.g. 127.0.0.1:6432 or [::1]:6432)"},
      {"[]:5432", "no host in \"[]:5432\" (e.g. 127.0.0.1:6432 or [::1]:6432)"},
      {"my host:5432", "bad host \"my host\" in \"my host:5432\""},
  };
  for (const auto& row : bad) {
    INFO(row.text);
    try {
      occ::parse_endpoint(row.text);
      FAIL("accepted");
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()) == row.message);
    }
  }
}

TEST_CASE("a full config sets every field", "[config]") {
  const auto c = occ::parse_config(R"(
listen: 0.0.0.0:7432
upstream: "[::1]:5433"
admin_dsn: "host=127.0.0.1 dbname=app"
rules: rules.yaml
stats:
  listen: 127.0.0.1:9999
  token: s3cret
log:
  level: debug
  file: ../log/occproxy.log
  format: json
  audit_file: ../audit/audit.jsonl
audit:
  table: true
threads: 4
max_client_connections: 50
max_message_length: 1048576
startup_timeout: 500ms
shutdown_timeout: 5m
read_set:
  max_rows: 10
auth:
  mode: passthrough
)",
                                     cfg);
  CHECK(c.path == cfg);
  CHECK(c.listen.host == "0.0.0.0");
  CHECK(c.listen.port == 7432);
  CHECK(c.upstream.host == "::1");
  CHECK(c.upstream.port == 5433);
  CHECK(c.admin_dsn == "host=127.0.0.1 dbname=app");
  CHECK(c.rules_path == "/etc/occ/rules.yaml");
  CHECK(c.stats.listen.host == "127.0.0.1");
  CHECK(c.stats.listen.port == 9999);
  CHECK(c.stats.token == "s3cret");
  CHECK(c.log_level == "debug");
  CHECK(c.log_file == "/etc/log/occproxy.log");
  CHECK(c.log_json);
  CHECK(c.audit_file == "/etc/audit/audit.jsonl");
  CHECK(c.audit_table);
  CHECK(c.threads == 4);
  CHECK(c.max_client_connections == 50);
  CHECK(c.max_message_length == 1048576);
  CHECK(c.startup_timeout == 500ms);
  CHECK(c.shutdown_timeout == 300'000ms);
  CHECK(c.read_set_max_rows == 10);
}

TEST_CASE("a minimal config keeps the defaults", "[config]") {
  const auto c = occ::parse_config("upstream: db:5432\n", cfg);
  CHECK(c.upstream.host == "db");
  CHECK(c.upstream.port == 5432);
  CHECK(c.listen.host == "127.0.0.1");
  CHECK(c.listen.port == 6432);
  CHECK(c.admin_dsn.empty());
  CHECK(c.rules_path.empty());
  CHECK(c.stats.listen.port == 9187);
  CHECK(c.stats.token.empty());
  CHECK(c.log_level == "info");
  CHECK(c.log_file.empty());
  CHECK_FALSE(c.log_json);
  CHECK(c.audit_file.empty());
  CHECK_FALSE(c.audit_table);
  CHECK(c.threads == 0);
  CHECK(c.max_client_connections == 1000);
  CHECK(c.max_message_length == 64u << 20);
  CHECK(c.read_set_max_rows == 100000);
  CHECK(c.startup_timeout == 10s);
  CHECK(c.shutdown_timeout == 30s);
}

TEST_CASE("absolute paths stay as written", "[config]") {
  const auto c = occ::parse_config("upstream: db:5432\nrules: /srv/r.yaml\nlog: {audit_file: /var/log/a.jsonl}\n", cfg);
  CHECK(c.rules_path == "/srv/r.yaml");
  CHECK(c.audit_file == "/var/log/a.jsonl");
}

TEST_CASE("config errors name file, line and key", "[config]") {
  struct Row {
    const char* yaml;
    const char* message;
  };
  const Row rows[] = {
      {"", "/etc/occ/occproxy.yaml:1: upstream: missing; set it to the PostgreSQL server's host:port"},
      {"# only a comment\nlisten: 127.0.0.1:1\n",
       "/etc/occ/occproxy.yaml:1: upstream: missing; set it to the PostgreSQL server's host:port"},
      {"- a\n- b\n", "/etc/occ/occproxy.yaml:1: expected a mapping of keys, got a list"},
      {"upstream: db:5432\nlisten: [a, b\n", "/etc/occ/occproxy.yaml:3: invalid YAML: end of sequence flow not found"},
      {"upstream: db:5432\nlisen: 127.0.0.1:1\n", "/etc/occ/occproxy.yaml:2: lisen: unknown key (did you mean listen?)"},
      {"upstream: db:5432\nbogus: 1\n",
       "/etc/occ/occproxy.yaml:2: bogus: unknown key; expected one of: listen, upstream, admin_dsn, rules, threads, "
       "max_client_connections, max_message_length, startup_timeout, shutdown_timeout, stats, log, audit, read_set, "
       "auth, tls"},
      {"upstream: db:5432\nupstream: db:5433\n", "/etc/occ/occproxy.yaml:2: upstream: given twice (first on line 1)"},
      {"upstream: db\n",
       "/etc/occ/occproxy.yaml:1: upstream: expected host:port, got \"db\" (e.g. 127.0.0.1:6432 or [::1]:6432)"},
      {"upstream: db:99999\n",
       "/etc/occ/occproxy.yaml:1: upstream: port must be a number from 1 to 65535, got \"99999\" in \"db:99999\""},
      {"upstream: [db, 5432]\n", "/etc/occ/occproxy.yaml:1: upstream: expected a string, got a list"},
      {"upstream:\n", "/etc/occ/occproxy.yaml:1: upstream: has no value"},
      {"upstream: db:5432\nlisten: localhost\n",
       "/etc/occ/occproxy.yaml:2: listen: expected host:port, got \"localhost\" (e.g. 127.0.0.1:6432 or [::1]:6432)"},
      {"upstream: db:5432\nadmin_dsn: {host: x}\n", "/etc/occ/occproxy.yaml:2: admin_dsn: expected a string, got a mapping"},
      {"upstream: db:5432\nrules: \"\"\n", "/etc/occ/occproxy.yaml:2: rules: is empty; give a file path or remove the key"},
      {"upstream: db:5432\nthreads: many\n",
       "/etc/occ/occproxy.yaml:2: threads: expected a whole number from 0 to 1024, got \"many\""},
      {"upstream: db:5432\nthreads: -1\n",
       "/etc/occ/occproxy.yaml:2: threads: expected a whole number from 0 to 1024, got \"-1\""},
      {"upstream: db:5432\nthreads: 2000\n",
       "/etc/occ/occproxy.yaml:2: threads: expected a whole number from 0 to 1024, got \"2000\""},
      {"upstream: db:5432\nmax_client_connections: 0\n",
       "/etc/occ/occproxy.yaml:2: max_client_connections: expected a whole number from 1 to 1000000, got \"0\""},
      {"upstream: db:5432\nmax_message_length: 64MB\n",
       "/etc/occ/occproxy.yaml:2: max_message_length: expected a whole number from 8192 to 1073741823, got \"64MB\""},
      {"upstream: db:5432\nmax_message_length: 1.5\n",
       "/etc/occ/occproxy.yaml:2: max_message_length: expected a whole number from 8192 to 1073741823, got \"1.5\""},
      {"upstream: db:5432\nstartup_timeout: 10\n",
       "/etc/occ/occproxy.yaml:2: startup_timeout: bad duration \"10\": expected a whole number and a unit: ms, s, m "
       "or h (e.g. 500ms, 2s, 5m, 1h)"},
      {"upstream: db:5432\nstartup_timeout: 0s\n", "/etc/occ/occproxy.yaml:2: startup_timeout: must be longer than zero"},
      {"upstream: db:5432\nshutdown_timeout: 2 s\n",
       "/etc/occ/occproxy.yaml:2: shutdown_timeout: bad duration \"2 s\": expected a whole number and a unit: ms, s, m "
       "or h (e.g. 500ms, 2s, 5m, 1h)"},
      {"upstream: db:5432\nstats: 127.0.0.1:9187\n", "/etc/occ/occproxy.yaml:2: stats: expected a mapping of keys, got a value"},
      {"upstream: db:5432\nstats:\n  listen: 127.0.0.1:9187\n  tokn: x\n",
       "/etc/occ/occproxy.yaml:4: stats.tokn: unknown key (did you mean token?)"},
      {"upstream: db:5432\nstats:\n  listen: nowhere\n",
       "/etc/occ/occproxy.yaml:3: stats.listen: expected host:port, got \"nowhere\" (e.g. 127.0.0.1:6432 or [::1]:6432)"},
      {"upstream: db:5432\nstats:\n  token:\n", "/etc/occ/occproxy.yaml:3: stats.token: has no value"},
      {"upstream: db:5432\nlog:\n  level: verbose\n",
       "/etc/occ/occproxy.yaml:3: log.level: expected trace, debug, info, warn, error or off, got \"verbose\""},
      {"upstream: db:5432\nlog:\n  level: info\n  files: x.log\n",
       "/etc/occ/occproxy.yaml:4: log.files: unknown key (did you mean file?)"},
      {"upstream: db:5432\nlog:\n  output: x.log\n",
       "/etc/occ/occproxy.yaml:3: log.output: unknown key; expected one of: level, file, format, audit_file"},
      {"upstream: db:5432\nlog:\n  file: \"\"\n",
       "/etc/occ/occproxy.yaml:3: log.file: is empty; give a file path or remove the key"},
      {"upstream: db:5432\nlog:\n  level: info\n  format: logfmt\n",
       "/etc/occ/occproxy.yaml:4: log.format: expected text or json, got \"logfmt\""},
      {"upstream: db:5432\naudit:\n  table: yes\n", "/etc/occ/occproxy.yaml:3: audit.table: expected true or false, got \"yes\""},
      {"upstream: db:5432\naudit:\n  table: [true]\n", "/etc/occ/occproxy.yaml:3: audit.table: expected true or false, got a list"},
      {"upstream: db:5432\nread_set:\n  max_rows: 0\n",
       "/etc/occ/occproxy.yaml:3: read_set.max_rows: expected a whole number from 1 to 100000000, got \"0\""},
      {"upstream: db:5432\nread_set:\n  rows: 5\n", "/etc/occ/occproxy.yaml:3: read_set.rows: unknown key; expected one of: max_rows"},
      {"upstream: db:5432\nauth:\n  mode: terminate\n",
       "/etc/occ/occproxy.yaml:3: auth.mode: terminate needs admin_dsn: the proxy looks up each role's password "
       "verifier through it"},
      {"upstream: db:5432\nauth:\n  mode: md5\n",
       "/etc/occ/occproxy.yaml:3: auth.mode: expected passthrough or terminate, got \"md5\""},
      {"upstream: db:5432\ntls:\n  cert: a.pem\n",
       "/etc/occ/occproxy.yaml:3: tls.cert: unknown key; expected one of: cert_file, key_file, client_mode, "
       "upstream_mode, upstream_ca_file"},
  };
  for (const auto& row : rows) {
    INFO(row.yaml);
    CHECK(config_error(row.yaml) == row.message);
  }
}

TEST_CASE("a missing config file names the path", "[config]") {
  try {
    occ::load_config("/nonexistent/occproxy.yaml");
    FAIL("accepted");
  } catch (const occ::ConfigError& e) {
    CHECK(std::string(e.what()) == "cannot read config file /nonexistent/occproxy.yaml: No such file or directory");
  }
}
