// Log sinks: a file that can be reopened after rotation, and JSON lines for log shippers.
#include "audit/log_file.h"

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "audit/audit_log.h"
#include "config/config.h"

namespace occ {
namespace {

constexpr const char* kTextPattern = "%Y-%m-%d %H:%M:%S.%e %^%l%$ %v";

std::FILE* open_for_append(const std::string& path, std::string_view what, std::string& error) {
  std::FILE* f = std::fopen(path.c_str(), "ae");
  if (!f) error = "cannot open " + std::string(what) + " " + path + ": " + std::strerror(errno);
  return f;
}

std::mutex main_log_mutex;
std::shared_ptr<ReopenableFileSink> main_log_file;  // when log.file is set

}  // namespace

ReopenableFileSink::ReopenableFileSink(std::string path, std::string_view what) : path_(std::move(path)), what_(what) {
  std::string error;
  file_ = open_for_append(path_, what_, error);
  if (!file_) throw std::runtime_error(error);
}

ReopenableFileSink::~ReopenableFileSink() {
  if (file_) std::fclose(file_);
}

std::string ReopenableFileSink::reopen() {
  std::lock_guard lock(mutex_);
  std::string error;
  std::FILE* fresh = open_for_append(path_, what_, error);
  if (!fresh) return error;
  std::fclose(file_);
  file_ = fresh;
  return {};
}

void ReopenableFileSink::sink_it_(const spdlog::details::log_msg& msg) {
  spdlog::memory_buf_t line;
  formatter_->format(msg, line);
  std::fwrite(line.data(), 1, line.size(), file_);
  // Flushed at once: a line buffered across a rotation would land in the old file.
  std::fflush(file_);
}

void ReopenableFileSink::flush_() { std::fflush(file_); }

void JsonLineFormatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  const auto level = spdlog::level::to_string_view(msg.level);
  const nlohmann::json line{{"ts", audit::format_timestamp(msg.time)},
                            {"level", std::string(level.data(), level.size())},
                            {"msg", std::string(msg.payload.data(), msg.payload.size())}};
  // A message may carry bytes from the database that are not UTF-8: replace, never throw.
  const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  dest.append(text.data(), text.data() + text.size());
  dest.push_back('\n');
}

std::unique_ptr<spdlog::formatter> JsonLineFormatter::clone() const { return std::make_unique<JsonLineFormatter>(); }

void configure_main_log(const Config& config) {
  spdlog::sink_ptr sink;
  std::shared_ptr<ReopenableFileSink> file;
  if (!config.log_file.empty()) {
    file = std::make_shared<ReopenableFileSink>(config.log_file, "log file");
    sink = file;
  } else {
    sink = std::make_shared<spdlog::sinks::stdout_color_sink_mt>();
  }
  auto logger = std::make_shared<spdlog::logger>("occproxy", sink);
  if (config.log_json)
    logger->set_formatter(std::make_unique<JsonLineFormatter>());
  else
    logger->set_pattern(kTextPattern);
  logger->set_level(spdlog::level::from_str(config.log_level));
  spdlog::set_default_logger(std::move(logger));
  std::lock_guard lock(main_log_mutex);
  main_log_file = std::move(file);
}

void configure_console_log(const std::string& level) {
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern(kTextPattern);
}

std::string reopen_main_log() {
  std::lock_guard lock(main_log_mutex);
  return main_log_file ? main_log_file->reopen() : std::string();
}

}  // namespace occ
