// Runs each invariant on its interval on the proxy's own connection; logs each new violating row
// once; a failing or timed-out query is reported and runs again only at its next interval.
#include "audit/invariants.h"

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "admin/pg_connection.h"

namespace occ::invariants {
namespace {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

// New violating rows logged per run; the rest are summed up in one line.
constexpr std::size_t kLoggedRows = 20;
// Rows remembered per invariant to tell new violations from known ones.
constexpr std::size_t kRememberedRows = 10000;

struct Entry {
  Status status;
  SteadyClock::time_point next_run{};
  std::set<std::string> known;  // the rows of the last successful run, as JSON text
};

struct Outcome {
  std::chrono::system_clock::time_point started;
  std::chrono::milliseconds duration{0};
  std::optional<std::string> error;
  std::size_t count = 0;
  std::vector<json> rows;  // every row, for telling new ones apart
};

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

struct State {
  ~State() { stop_runner(); }

  void stop_runner() {
    std::thread joining;
    {
      std::lock_guard lock(mutex);
      stopping = true;
      joining = std::move(runner);
      if (cancel) {
        char reason[256];
        PQcancel(cancel.get(), reason, sizeof reason);
      }
    }
    wake.notify_one();
    if (joining.joinable()) joining.join();
  }

  std::mutex mutex;
  std::condition_variable wake;
  std::vector<Entry> entries;
  bool changed = false;
  bool stopping = false;
  std::shared_ptr<PGcancel> cancel;  // of the runner's connection, while it has one
  std::thread runner;
};

State& state() {
  static State s;
  return s;
}

// One run of one invariant; touches no shared state but the cancel handle.
class Runner {
 public:
  // `cancellable`: stop() may cancel its queries (the runner thread's, not `occproxy check`'s).
  Runner(std::string dsn, bool cancellable) : dsn_(std::move(dsn)), cancellable_(cancellable) {}

  Outcome run(const Invariant& inv) {
    Outcome out;
    out.started = std::chrono::system_clock::now();
    const auto began = SteadyClock::now();
    try {
      connect();
      conn_->query("SELECT set_config('statement_timeout', $1, false)", {std::to_string(inv.timeout.count())});
      PgResult result = conn_->query(inv.query, {});
      out.count = static_cast<std::size_t>(result.rows());
      for (int r = 0; r < result.rows() && out.rows.size() < kRememberedRows; ++r) {
        json row = json::object();
        for (int c = 0; c < result.columns(); ++c) {
          auto value = result.nullable(r, c);
          row[result.column_name(c)] = value ? json(*value) : json(nullptr);
        }
        out.rows.push_back(std::move(row));
      }
    } catch (const PgError& e) {
      const std::string_view message = e.what();
      out.error = std::string(message.substr(0, message.find('\n')));
      if (conn_ && !conn_->usable()) disconnect();
    }
    out.duration = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - began);
    return out;
  }

 private:
  void connect() {
    if (conn_) return;
    try {
      conn_ = std::make_unique<PgConnection>(dsn_);
      // An invariant only reads: a query that would write fails instead.
      conn_->exec("SET default_transaction_read_only = on; SET application_name = 'occproxy invariants'");
    } catch (const PgError&) {
      conn_.reset();
      throw;
    }
    if (!cancellable_) return;
    std::lock_guard lock(state().mutex);
    state().cancel = conn_->cancel_handle();
  }

  void disconnect() {
    if (cancellable_) {
      std::lock_guard lock(state().mutex);
      state().cancel.reset();
    }
    conn_.reset();
  }

  std::string dsn_;
  bool cancellable_;
  std::unique_ptr<PgConnection> conn_;
};

void apply(Entry& entry, Outcome out) {
  Status& st = entry.status;
  const std::string& name = st.invariant.name;
  st.ran = true;
  st.last_run = out.started;
  st.last_duration = out.duration;
  if (out.error) {
    ++st.errors;
    // The same failure at every interval is logged once, until the query succeeds again.
    if (*out.error != st.last_error)
      spdlog::error("invariant {}: query failed (next run in {} ms): {}", name, st.invariant.interval.count(), *out.error);
    st.last_error = std::move(*out.error);
    return;
  }
  if (!st.last_error.empty()) spdlog::info("invariant {}: query runs again", name);
  st.last_error.clear();

  std::set<std::string> now;
  std::size_t fresh = 0;
  for (const json& row : out.rows) {
    std::string text = dump(row);
    if (!entry.known.contains(text)) {
      if (fresh < kLoggedRows) spdlog::warn("invariant {}: violated by {}", name, text);
      ++fresh;
    }
    now.insert(std::move(text));
  }
  if (fresh > kLoggedRows) spdlog::warn("invariant {}: {} more new violating rows", name, fresh - kLoggedRows);
  if (out.count == 0 && st.violations > 0) spdlog::info("invariant {}: holds again", name);
  entry.known = std::move(now);
  st.violations = out.count;
  out.rows.resize(std::min(out.rows.size(), kShownRows));
  st.rows = std::move(out.rows);
}

void runner_loop(std::string dsn) {
  State& s = state();
  Runner runner(std::move(dsn), true);
  std::unique_lock lock(s.mutex);
  while (!s.stopping) {
    s.changed = false;
    auto due = std::min_element(s.entries.begin(), s.entries.end(),
                                [](const Entry& a, const Entry& b) { return a.next_run < b.next_run; });
    if (due == s.entries.end()) {
      s.wake.wait(lock, [&] { return s.stopping || s.changed; });
      continue;
    }
    if (due->next_run > SteadyClock::now()) {
      // A copy: a reload replaces the entries while this waits, and the wait reads its deadline again.
      const SteadyClock::time_point deadline = due->next_run;
      s.wake.wait_until(lock, deadline, [&] { return s.stopping || s.changed; });
      continue;
    }
    const Invariant inv = due->status.invariant;
    // The next run is due one interval after this one started, however long this one takes.
    due->next_run = SteadyClock::now() + inv.interval;
    lock.unlock();
    Outcome out = runner.run(inv);
    lock.lock();
    // A reload may have replaced or dropped the invariant meanwhile: then the result is stale.
    for (Entry& e : s.entries)
      if (e.status.invariant == inv) apply(e, std::move(out));
  }
}

}  // namespace

void start(std::string admin_dsn) {
  State& s = state();
  std::lock_guard lock(s.mutex);
  if (s.runner.joinable()) throw std::logic_error("invariants::start called twice without stop()");
  s.stopping = false;
  s.runner = std::thread(runner_loop, std::move(admin_dsn));
}

void set(std::vector<Invariant> invariants) {
  State& s = state();
  {
    std::lock_guard lock(s.mutex);
    std::vector<Entry> next;
    next.reserve(invariants.size());
    for (Invariant& inv : invariants) {
      auto same = std::find_if(s.entries.begin(), s.entries.end(),
                               [&](const Entry& e) { return e.status.invariant == inv; });
      if (same != s.entries.end()) {
        next.push_back(std::move(*same));
      } else {
        Entry& e = next.emplace_back();
        e.status.invariant = std::move(inv);
        e.next_run = SteadyClock::now();
      }
    }
    s.entries = std::move(next);
    s.changed = true;
  }
  s.wake.notify_one();
}

void stop() { state().stop_runner(); }

Status run_now(const std::string& admin_dsn, const Invariant& invariant) {
  Entry entry;
  entry.status.invariant = invariant;
  Outcome out = Runner(admin_dsn, false).run(invariant);
  Status& st = entry.status;
  st.ran = true;
  st.last_run = out.started;
  st.last_duration = out.duration;
  if (out.error) {
    st.errors = 1;
    st.last_error = *out.error;
  } else {
    st.violations = out.count;
    out.rows.resize(std::min(out.rows.size(), kShownRows));
    st.rows = std::move(out.rows);
  }
  return st;
}

std::vector<Status> report() {
  State& s = state();
  std::lock_guard lock(s.mutex);
  std::vector<Status> out;
  out.reserve(s.entries.size());
  for (const Entry& e : s.entries) out.push_back(e.status);
  return out;
}

}  // namespace occ::invariants
