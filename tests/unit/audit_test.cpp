// Audit log: JSON lines through spdlog, recent() order, the bounded queue, occ.conflict_log rows.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "audit/audit_log.h"
#include "config/config.h"
#include "admin/migrate.h"
#include "admin/pg_connection.h"
#include "config/rules.h"
#include "stats/counters.h"

using nlohmann::json;

namespace {

std::filesystem::path temp_file(const std::string& name) {
  auto path = std::filesystem::temp_directory_path() /
              ("occproxy_audit_" + std::to_string(getpid()) + "_" + name);
  std::filesystem::remove(path);
  return path;
}

std::vector<std::string> read_lines(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Writes whatever earlier tests left queued somewhere harmless, so counts below are exact.
void drain_queue() {
  occ::Config config;
  config.audit_file = temp_file("drain.jsonl").string();
  occ::audit::start(config);
  occ::audit::stop();
  std::filesystem::remove(config.audit_file);
}

uint64_t counter(occ::stats::Counter c) {
  return occ::stats::snapshot().counters[static_cast<unsigned>(c)];
}

}  // namespace

TEST_CASE("format_timestamp is ISO-8601 UTC with milliseconds", "[audit]") {
  using namespace std::chrono;
  CHECK(occ::audit::format_timestamp(system_clock::time_point{}) == "1970-01-01T00:00:00.000Z");
  const auto t = system_clock::time_point{seconds(1714566896) + milliseconds(789) + microseconds(999)};
  CHECK(occ::audit::format_timestamp(t) == "2024-05-01T12:34:56.789Z");
}

TEST_CASE("records become one JSON line each in the audit file", "[audit]") {
  drain_queue();
  const auto path = temp_file("lines.jsonl");
  occ::Config config;
  config.audit_file = path.string();
  occ::audit::start(config);
  occ::audit::record({{"kind", "conflict"}, {"table", "public.t"}, {"ts", "2024-01-01T00:00:00.000Z"}});
  occ::audit::record({{"kind", "forced_write"}, {"note", "{} {0} \"quoted\"\nnewline"}});
  occ::audit::record({{"kind", "conflict"}, {"bad_utf8", std::string("a\xff" "b")}});
  occ::audit::stop();

  const auto lines = read_lines(path);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0] == R"({"kind":"conflict","table":"public.t","ts":"2024-01-01T00:00:00.000Z"})");
  const json second = json::parse(lines[1]);
  CHECK(second["note"] == "{} {0} \"quoted\"\nnewline");
  CHECK(second["kind"] == "forced_write");
  const std::string ts = second["ts"];
  REQUIRE(ts.size() == 24);
  CHECK(ts[4] == '-');
  CHECK(ts[10] == 'T');
  CHECK(ts[19] == '.');
  CHECK(ts[23] == 'Z');
  CHECK(json::parse(lines[2])["bad_utf8"] == "a\xef\xbf\xbd" "b");
  std::filesystem::remove(path);
}

TEST_CASE("without an audit file the lines go to the default logger at info", "[audit]") {
  drain_queue();
  std::ostringstream captured;
  auto previous = spdlog::default_logger();
  auto capture = std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
  capture->set_pattern("%l|%v");
  spdlog::set_default_logger(capture);

  occ::Config config;
  occ::audit::start(config);
  occ::audit::record({{"kind", "shadow_conflict"}, {"ts", "2024-01-01T00:00:00.000Z"}});
  occ::audit::stop();
  spdlog::set_default_logger(previous);

  CHECK(captured.str() == "info|{\"kind\":\"shadow_conflict\",\"ts\":\"2024-01-01T00:00:00.000Z\"}\n");
}

TEST_CASE("recent() returns the newest records first, at most its capacity", "[audit]") {
  for (int i = 0; i < 205; ++i) occ::audit::record({{"kind", "conflict"}, {"n", i}});

  const auto three = occ::audit::recent(3);
  REQUIRE(three.size() == 3);
  CHECK(three[0]["n"] == 204);
  CHECK(three[1]["n"] == 203);
  CHECK(three[2]["n"] == 202);
  CHECK(three[0].contains("ts"));

  const auto all = occ::audit::recent(1000);
  REQUIRE(all.size() == occ::audit::kRecentCapacity);
  CHECK(all.back()["n"] == 5);
  drain_queue();
}

TEST_CASE("a full queue drops records and counts them, never blocking", "[audit]") {
  drain_queue();
  const uint64_t dropped_before = counter(occ::stats::Counter::audit_dropped);
  for (std::size_t i = 0; i < occ::audit::kQueueCapacity + 3; ++i)
    occ::audit::record({{"kind", "conflict"}, {"n", i}});
  CHECK(counter(occ::stats::Counter::audit_dropped) - dropped_before == 3);

  const auto path = temp_file("full.jsonl");
  occ::Config config;
  config.audit_file = path.string();
  occ::audit::start(config);
  occ::audit::stop();
  const auto lines = read_lines(path);
  REQUIRE(lines.size() == occ::audit::kQueueCapacity);
  CHECK(json::parse(lines.front())["n"] == 0);
  CHECK(json::parse(lines.back())["n"] == occ::audit::kQueueCapacity - 1);
  std::filesystem::remove(path);
}

TEST_CASE("bad use of the audit log is refused clearly", "[audit]") {
  CHECK_THROWS_WITH(occ::audit::record(json::array({1, 2})),
                    "audit::record: the event must be a JSON object");

  occ::Config unwritable;
  unwritable.audit_file = "/proc/occproxy-no-such-dir/audit.jsonl";
  CHECK_THROWS_WITH(occ::audit::start(unwritable),
                    Catch::StartsWith("cannot open audit file /proc/occproxy-no-such-dir/audit.jsonl: "));

  occ::Config config;
  config.audit_file = temp_file("twice.jsonl").string();
  occ::audit::start(config);
  CHECK_THROWS_WITH(occ::audit::start(config), "audit::start called twice without stop()");
  occ::audit::stop();
  occ::audit::stop();
  std::filesystem::remove(config.audit_file);
}

TEST_CASE("an unreachable audit table is counted and never stops the file log", "[audit]") {
  drain_queue();
  const auto path = temp_file("nodb.jsonl");
  occ::Config config;
  config.audit_file = path.string();
  config.audit_table = true;
  config.admin_dsn = "host=127.0.0.1 port=1 connect_timeout=1";
  const uint64_t errors_before = counter(occ::stats::Counter::audit_table_errors);
  occ::audit::start(config);
  occ::audit::record({{"kind", "conflict"}, {"n", 1}});
  occ::audit::record({{"kind", "conflict"}, {"n", 2}});
  occ::audit::stop();
  CHECK(read_lines(path).size() == 2);
  CHECK(counter(occ::stats::Counter::audit_table_errors) - errors_before == 2);
  std::filesystem::remove(path);
}

// The [pg] cases need a PostgreSQL they may write to: OCCPROXY_TEST_ADMIN_DSN="host=... dbname=...".
class ConflictLogDb {
 public:
  // The table as `occproxy migrate` creates it, emptied.
  ConflictLogDb() : dsn_(required_dsn()), conn_(dsn_) {
    occ::Config config;
    config.admin_dsn = dsn_;
    const occ::MigrateResult migrated =
        occ::run_migrations(config, occ::Rules{}, OCCPROXY_MIGRATIONS_DIR);
    INFO(migrated.error);
    REQUIRE(migrated.ok);
    conn_.exec("TRUNCATE occ.conflict_log");
  }

  const std::string& dsn() const { return dsn_; }

  // The first `columns` columns of a query's rows, every value as text.
  std::vector<std::vector<std::string>> rows(const char* sql, int columns) {
    const occ::PgResult r = conn_.exec(sql);
    std::vector<std::vector<std::string>> out(r.rows());
    for (int row = 0; row < r.rows(); ++row)
      for (int col = 0; col < columns; ++col) out[row].push_back(r.text(row, col));
    return out;
  }
  std::string scalar(const char* sql) { return conn_.exec(sql).text(0, 0); }

 private:
  static std::string required_dsn() {
    const char* dsn = std::getenv("OCCPROXY_TEST_ADMIN_DSN");
    REQUIRE(dsn != nullptr);
    return dsn;
  }

  std::string dsn_;
  occ::PgConnection conn_;
};

occ::Config table_config(const ConflictLogDb& db, const std::string& file) {
  occ::Config config;
  config.audit_file = temp_file(file).string();
  config.audit_table = true;
  config.admin_dsn = db.dsn();
  return config;
}

TEST_CASE("records are inserted into occ.conflict_log", "[.][audit][pg]") {
  ConflictLogDb db;
  drain_queue();
  const occ::Config config = table_config(db, "pg.jsonl");
  occ::audit::start(config);
  occ::audit::record({{"kind", "conflict"},
                      {"table", "public.subscriptions"},
                      {"key", {{"id", 42}}},
                      {"expected", 3},
                      {"current", "4"},
                      {"user", "app"},
                      {"application_name", "billing"},
                      {"client_addr", "10.0.0.7"},
                      {"fingerprint", "abc123"},
                      {"diff", {{"plan", {{"base", "basic"}, {"mine", "pro"}, {"theirs", "team"}}}}},
                      {"ts", "2024-01-01T00:00:00.000Z"}});
  occ::audit::record({{"kind", "forced_write"}, {"table", "billing.plans"}});
  occ::audit::stop();
  std::filesystem::remove(config.audit_file);

  const auto rows = db.rows(
      "SELECT kind, table_name, key::text, expected, current, username, application_name, "
      "client_addr, fingerprint, diff::text, record->>'ts', (key IS NULL)::text, "
      "(expected IS NULL)::text FROM occ.conflict_log ORDER BY id",
      13);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0] == std::vector<std::string>{
                       "conflict", "public.subscriptions", "{\"id\": 42}", "3", "4", "app",
                       "billing", "10.0.0.7", "abc123",
                       "{\"plan\": {\"base\": \"basic\", \"mine\": \"pro\", \"theirs\": \"team\"}}",
                       "2024-01-01T00:00:00.000Z", "false", "false"});
  CHECK(rows[1][0] == "forced_write");
  CHECK(rows[1][11] == "true");
  CHECK(rows[1][12] == "true");
}

TEST_CASE("the audit connection reconnects after the server dropped it", "[.][audit][pg]") {
  ConflictLogDb db;
  drain_queue();
  const occ::Config config = table_config(db, "reconnect.jsonl");
  occ::audit::start(config);
  occ::audit::record({{"kind", "conflict"}, {"n", 1}});
  for (int i = 0; i < 100 && db.scalar("SELECT count(*) FROM occ.conflict_log") != "1"; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  // The audit connection is the one whose last statement was the insert.
  REQUIRE(db.scalar("SELECT count(*) FROM pg_stat_activity "
                    "WHERE query LIKE 'INSERT INTO occ.conflict_log%'") == "1");
  REQUIRE(db.scalar("SELECT bool_and(pg_terminate_backend(pid))::text FROM pg_stat_activity "
                    "WHERE query LIKE 'INSERT INTO occ.conflict_log%'") == "true");
  occ::audit::record({{"kind", "conflict"}, {"n", 2}});
  occ::audit::stop();
  std::filesystem::remove(config.audit_file);

  CHECK(db.scalar("SELECT string_agg(record->>'n', ',' ORDER BY id) FROM occ.conflict_log") ==
        "1,2");
}
