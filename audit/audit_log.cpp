// Audit records: queued by sessions, written by one thread as JSON lines and occ.conflict_log rows.
#include "audit/audit_log.h"

#include <array>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include <libpq-fe.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include "proxy/config.h"
#include "stats/counters.h"

namespace occ::audit {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr std::chrono::seconds kFirstRetry{1};
constexpr std::chrono::seconds kMaxRetry{30};

constexpr const char* kInsertSql =
    "INSERT INTO occ.conflict_log (kind, table_name, key, expected, \"current\", username, "
    "application_name, client_addr, fingerprint, diff, record) "
    "VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb)";

// Records can carry bytes from the database that are not valid UTF-8; never throw on them.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// libpq's messages end in a newline that would split a log line.
std::string pq_error(const PGconn* conn) {
  if (!conn) return "out of memory";
  std::string message = PQerrorMessage(conn);
  while (!message.empty() && std::isspace(static_cast<unsigned char>(message.back())))
    message.pop_back();
  return message;
}

// The record fields behind the first parameters of kInsertSql, in order; the last parameter is
// the whole record.
struct Column {
  const char* field;
  bool jsonb;
};
constexpr std::array<Column, 10> kColumns{{{"kind", false},
                                           {"table", false},
                                           {"key", true},
                                           {"expected", false},
                                           {"current", false},
                                           {"user", false},
                                           {"application_name", false},
                                           {"client_addr", false},
                                           {"fingerprint", false},
                                           {"diff", true}}};

// Absent or null: SQL NULL. A jsonb column takes the JSON itself; a text column a string's own
// text and any other value's JSON text (a version may be a number or a uuid string).
std::optional<std::string> column_value(const json& record, const Column& column) {
  auto it = record.find(column.field);
  if (it == record.end() || it->is_null()) return std::nullopt;
  if (it->is_string() && !column.jsonb) return it->get<std::string>();
  return dump(*it);
}

// The proxy's own connection to occ.conflict_log: reconnects with backoff, never throws.
class ConflictTable {
 public:
  explicit ConflictTable(std::string dsn) : dsn_(std::move(dsn)) {}
  ~ConflictTable() { disconnect(); }
  ConflictTable(const ConflictTable&) = delete;
  ConflictTable& operator=(const ConflictTable&) = delete;

  void insert(const json& record) {
    if (!connected() && !connect()) {
      stats::add(stats::Counter::audit_table_errors);
      return;
    }
    if (try_insert(record)) return;
    // A dropped connection (server restart) is worth one immediate reconnect and retry.
    if (PQstatus(conn_) == CONNECTION_BAD) {
      spdlog::warn("audit: lost the connection for occ.conflict_log, reconnecting: {}",
                   pq_error(conn_));
      if (!connect()) {
        stats::add(stats::Counter::audit_table_errors);
        return;
      }
      if (try_insert(record)) return;
    }
    spdlog::error("audit: insert into occ.conflict_log failed: {}", pq_error(conn_));
    stats::add(stats::Counter::audit_table_errors);
  }

 private:
  bool connected() const { return conn_ && PQstatus(conn_) == CONNECTION_OK; }

  bool connect() {
    if (Clock::now() < next_attempt_) return false;
    disconnect();
    // Our keywords come first so that the DSN's own settings win (expand_dbname).
    const char* keywords[] = {"application_name", "connect_timeout", "client_encoding", "dbname",
                              nullptr};
    const char* values[] = {"occproxy-audit", "5", "UTF8", dsn_.c_str(), nullptr};
    conn_ = PQconnectdbParams(keywords, values, 1);
    if (connected()) {
      retry_delay_ = kFirstRetry;
      return true;
    }
    spdlog::error("audit: cannot connect to admin_dsn for occ.conflict_log (retry in {}s): {}",
                  retry_delay_.count(), pq_error(conn_));
    next_attempt_ = Clock::now() + retry_delay_;
    retry_delay_ = std::min(retry_delay_ * 2, kMaxRetry);
    disconnect();
    return false;
  }

  void disconnect() {
    if (conn_) PQfinish(conn_);
    conn_ = nullptr;
  }

  bool try_insert(const json& record) {
    std::array<std::optional<std::string>, kColumns.size() + 1> texts;
    for (std::size_t i = 0; i < kColumns.size(); ++i) texts[i] = column_value(record, kColumns[i]);
    texts.back() = dump(record);

    std::array<const char*, texts.size()> values{};
    for (std::size_t i = 0; i < texts.size(); ++i) values[i] = texts[i] ? texts[i]->c_str() : nullptr;
    PGresult* res = PQexecParams(conn_, kInsertSql, static_cast<int>(values.size()), nullptr,
                                 values.data(), nullptr, nullptr, 0);
    const bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    return ok;
  }

  std::string dsn_;
  PGconn* conn_ = nullptr;
  Clock::time_point next_attempt_{};
  std::chrono::seconds retry_delay_ = kFirstRetry;
};

struct State {
  // A process that exits without stop() still joins the writer instead of terminating.
  ~State() { stop_writer(); }

  // Lets the writer drain the queue, then joins it.
  void stop_writer() {
    std::thread joining;
    {
      std::lock_guard lock(mutex);
      stopping = true;
      joining = std::move(writer);
    }
    wake.notify_one();
    if (joining.joinable()) joining.join();
  }

  std::mutex mutex;
  std::condition_variable wake;
  std::deque<json> queue;
  std::deque<json> recent;  // newest first
  bool stopping = false;
  std::thread writer;
};

State& state() {
  static State s;
  return s;
}

void write_line(const std::shared_ptr<spdlog::logger>& file_logger, const std::string& line) {
  if (file_logger)
    file_logger->info(line);
  else
    spdlog::info(line);
}

void writer_loop(std::shared_ptr<spdlog::logger> file_logger,
                 std::unique_ptr<ConflictTable> table) {
  State& s = state();
  std::deque<json> batch;
  for (;;) {
    {
      std::unique_lock lock(s.mutex);
      s.wake.wait(lock, [&] { return !s.queue.empty() || s.stopping; });
      if (s.queue.empty()) return;
      batch.swap(s.queue);
    }
    for (const json& record : batch) {
      try {
        write_line(file_logger, dump(record));
      } catch (const std::exception& e) {
        spdlog::error("audit: cannot write audit line: {}", e.what());
      }
      if (table) table->insert(record);
    }
    batch.clear();
    if (file_logger) file_logger->flush();
  }
}

}  // namespace

void start(const Config& config) {
  std::shared_ptr<spdlog::logger> file_logger;
  if (!config.audit_file.empty()) {
    try {
      auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(config.audit_file);
      file_logger = std::make_shared<spdlog::logger>("audit", std::move(sink));
    } catch (const spdlog::spdlog_ex& e) {
      throw std::runtime_error("cannot open audit file " + config.audit_file + ": " + e.what());
    }
    file_logger->set_pattern("%v");
    file_logger->set_level(spdlog::level::info);
  }
  auto table = config.audit_table ? std::make_unique<ConflictTable>(config.admin_dsn) : nullptr;

  State& s = state();
  std::lock_guard lock(s.mutex);
  if (s.writer.joinable()) throw std::logic_error("audit::start called twice without stop()");
  s.stopping = false;
  s.writer = std::thread(writer_loop, std::move(file_logger), std::move(table));
}

void stop() { state().stop_writer(); }

void record(json event) {
  if (!event.is_object()) throw std::invalid_argument("audit::record: the event must be a JSON object");
  if (!event.contains("ts")) event["ts"] = format_timestamp(std::chrono::system_clock::now());

  json for_recent = event;
  State& s = state();
  {
    std::lock_guard lock(s.mutex);
    s.recent.push_front(std::move(for_recent));
    if (s.recent.size() > kRecentCapacity) s.recent.pop_back();
    if (s.queue.size() >= kQueueCapacity) {
      stats::add(stats::Counter::audit_dropped);
      return;
    }
    s.queue.push_back(std::move(event));
  }
  s.wake.notify_one();
}

std::vector<json> recent(std::size_t limit) {
  State& s = state();
  std::lock_guard lock(s.mutex);
  const std::size_t n = std::min(limit, s.recent.size());
  return {s.recent.begin(), s.recent.begin() + static_cast<std::ptrdiff_t>(n)};
}

std::string format_timestamp(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto since_epoch = floor<milliseconds>(t.time_since_epoch());
  const auto whole = floor<seconds>(since_epoch);
  const std::time_t whole_seconds = whole.count();
  std::tm tm{};
  gmtime_r(&whole_seconds, &tm);
  char date[24];
  const std::size_t n = std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
  char millis[8];
  std::snprintf(millis, sizeof millis, ".%03dZ", static_cast<int>((since_epoch - whole).count()));
  return std::string(date, n) + millis;
}

}  // namespace occ::audit
