// Audit records: queued by sessions, written by one thread as JSON lines and occ.conflict_log rows.
#include "audit/audit_log.h"

#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

#include <spdlog/spdlog.h>

#include "config/config.h"
#include "audit/log_file.h"
#include "admin/pg_connection.h"
#include "stats/counters.h"

namespace occ::audit {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr std::chrono::seconds kFirstRetry{1};
constexpr std::chrono::seconds kMaxRetry{30};

// The whole record is the one parameter and the server takes the columns from it, so an absent
// field is NULL and a version, number or uuid string, reads as its text.
constexpr const char* kInsertSql =
    "INSERT INTO occ.conflict_log (kind, table_name, key, expected, \"current\", username, "
    "application_name, client_addr, fingerprint, diff, record) "
    "SELECT r->>'kind', r->>'table', NULLIF(r->'key', 'null'), r->>'expected', r->>'current', "
    "r->>'user', r->>'application_name', r->>'client_addr', r->>'fingerprint', "
    "NULLIF(r->'diff', 'null'), r FROM (SELECT $1::jsonb AS r) AS input";

// Records can carry bytes from the database that are not valid UTF-8; never throw on them.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// The proxy's own connection to occ.conflict_log: reconnects with backoff, never throws.
class ConflictTable {
 public:
  explicit ConflictTable(std::string dsn) : dsn_(std::move(dsn)) {}

  void insert(const json& record) {
    const std::string text = dump(record);
    // A failure may mean the server dropped the connection (restart): one retry on a fresh one.
    for (int attempt = 1; attempt <= 2; ++attempt) {
      if (!conn_ && !connect()) break;
      try {
        conn_->query(kInsertSql, {text});
        return;
      } catch (const PgError& e) {
        spdlog::log(attempt == 1 ? spdlog::level::warn : spdlog::level::err,
                    "audit: insert into occ.conflict_log failed{}: {}",
                    attempt == 1 ? ", retrying on a new connection" : "", e.what());
        conn_.reset();
      }
    }
    stats::add(stats::Counter::audit_table_errors);
  }

 private:
  bool connect() {
    if (Clock::now() < next_attempt_) return false;
    try {
      conn_ = std::make_unique<PgConnection>(dsn_);
      // The lines are UTF-8 whatever the database's default client encoding.
      conn_->exec("SET client_encoding TO 'UTF8'");
      retry_delay_ = kFirstRetry;
      return true;
    } catch (const PgError& e) {
      spdlog::error("audit: cannot connect to admin_dsn for occ.conflict_log (retry in {}s): {}",
                    retry_delay_.count(), e.what());
      conn_.reset();
      next_attempt_ = Clock::now() + retry_delay_;
      retry_delay_ = std::min(retry_delay_ * 2, kMaxRetry);
      return false;
    }
  }

  std::string dsn_;
  std::unique_ptr<PgConnection> conn_;
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
  std::shared_ptr<ReopenableFileSink> file;  // log.audit_file, when set
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
  std::shared_ptr<ReopenableFileSink> sink;
  if (!config.audit_file.empty()) {
    sink = std::make_shared<ReopenableFileSink>(config.audit_file, "audit file");
    file_logger = std::make_shared<spdlog::logger>("audit", sink);
    file_logger->set_pattern("%v");
    file_logger->set_level(spdlog::level::info);
  }
  auto table = config.audit_table ? std::make_unique<ConflictTable>(config.admin_dsn) : nullptr;

  State& s = state();
  std::lock_guard lock(s.mutex);
  if (s.writer.joinable()) throw std::logic_error("audit::start called twice without stop()");
  s.stopping = false;
  s.file = std::move(sink);
  s.writer = std::thread(writer_loop, std::move(file_logger), std::move(table));
}

void stop() { state().stop_writer(); }

std::string reopen_file() {
  State& s = state();
  std::shared_ptr<ReopenableFileSink> file;
  {
    std::lock_guard lock(s.mutex);
    file = s.file;
  }
  return file ? file->reopen() : std::string();
}

void record(json event) {
  if (!event.is_object())
    throw std::invalid_argument("audit::record: the event must be a JSON object");
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

json find(std::string_view id) {
  State& s = state();
  std::lock_guard lock(s.mutex);
  for (const json& record : s.recent) {
    auto it = record.find("id");
    if (it != record.end() && it->is_string() && it->get_ref<const std::string&>() == id) return record;
  }
  return nullptr;
}

std::string new_id() {
  thread_local std::mt19937_64 random{std::random_device{}()};
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(random()));
  return hex;
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
