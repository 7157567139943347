// The main log's destination and format (log.file, log.format), and reopening the log files on
// SIGHUP after logrotate moved them away.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>

namespace occ {

struct Config;

// Appends to a file that reopen() opens again by name, so lines after a rotation land in the new
// file and none are lost: every line is written whole, and flushed, before the next.
class ReopenableFileSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // Opens (creating) the file; throws std::runtime_error "cannot open <what> <path>: <reason>".
  ReopenableFileSink(std::string path, std::string_view what);
  ~ReopenableFileSink() override;
  // Closes the file and opens it again by name; on failure keeps writing to the old one and
  // returns the reason (empty on success).
  std::string reopen();
  const std::string& path() const { return path_; }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;
  void flush_() override;

 private:
  std::string path_;
  std::string what_;
  std::FILE* file_ = nullptr;
};

// One JSON object per line: {"ts", "level", "msg"}, for log shippers (log.format: json).
class JsonLineFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;
};

// Makes the default logger write to log.file (else standard output, as before) in log.format at log.level.
// Throws std::runtime_error when log.file cannot be opened.
void configure_main_log(const Config& config);
// The console logger of the one-shot commands (check, migrate) at log.level.
void configure_console_log(const std::string& level);
// Reopens log.file, if any; returns the reason it could not (empty on success).
std::string reopen_main_log();

}  // namespace occ
