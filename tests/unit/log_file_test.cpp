// Log files: a rotated file is reopened by name with no line lost, and JSON lines for log shippers.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "audit/log_file.h"

namespace {

namespace fs = std::filesystem;

std::string read_all(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct TempDir {
  TempDir() : path(fs::temp_directory_path() / ("occ-log-test-" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path path;
};

}  // namespace

TEST_CASE("a reopened log file takes the lines after a rotation", "[log]") {
  TempDir dir;
  const fs::path live = dir.path / "occproxy.log";
  auto sink = std::make_shared<occ::ReopenableFileSink>(live.string(), "log file");
  spdlog::logger logger("rotate-test", sink);
  logger.set_pattern("%v");
  logger.info("one");
  logger.info("two");
  // logrotate's default: rename, then tell the process; until then lines go to the renamed file.
  fs::rename(live, dir.path / "occproxy.log.1");
  logger.info("three");
  CHECK(sink->reopen().empty());
  logger.info("four");
  CHECK(read_all(dir.path / "occproxy.log.1") == "one\ntwo\nthree\n");
  CHECK(read_all(live) == "four\n");
}

TEST_CASE("a log file that cannot be reopened keeps the old one", "[log]") {
  TempDir dir;
  const fs::path live = dir.path / "sub" / "audit.jsonl";
  fs::create_directories(live.parent_path());
  auto sink = std::make_shared<occ::ReopenableFileSink>(live.string(), "audit file");
  spdlog::logger logger("reopen-fail-test", sink);
  logger.set_pattern("%v");
  fs::rename(dir.path / "sub", dir.path / "moved");
  CHECK(sink->reopen() == "cannot open audit file " + live.string() + ": No such file or directory");
  logger.info("kept");
  CHECK(read_all(dir.path / "moved" / "audit.jsonl") == "kept\n");
}

TEST_CASE("a file that cannot be opened names what and where", "[log]") {
  CHECK_THROWS_WITH(occ::ReopenableFileSink("/proc/occproxy-no-such-dir/x.log", "log file"),
                    "cannot open log file /proc/occproxy-no-such-dir/x.log: No such file or directory");
}

TEST_CASE("log.format json writes one object per line", "[log]") {
  TempDir dir;
  const fs::path live = dir.path / "json.log";
  auto sink = std::make_shared<occ::ReopenableFileSink>(live.string(), "log file");
  spdlog::logger logger("json-test", sink);
  logger.set_formatter(std::make_unique<occ::JsonLineFormatter>());
  logger.warn("upstream \"db\" down\nretrying");
  logger.info(std::string("bad \xff byte"));
  std::istringstream lines(read_all(live));
  std::string first, second, rest;
  REQUIRE(std::getline(lines, first));
  REQUIRE(std::getline(lines, second));
  CHECK_FALSE(std::getline(lines, rest));
  auto a = nlohmann::json::parse(first);
  const std::string ts = a["ts"];
  CHECK(ts.size() == 24);
  CHECK(ts.back() == 'Z');
  a.erase("ts");
  CHECK(a == nlohmann::json{{"level", "warning"}, {"msg", "upstream \"db\" down\nretrying"}});
  auto b = nlohmann::json::parse(second);
  b.erase("ts");
  CHECK(b == nlohmann::json{{"level", "info"}, {"msg", "bad \xef\xbf\xbd byte"}});
}
