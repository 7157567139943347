// Reconciliation (SPEC 7): the rules file's invariants, each a query returning the rows that
// violate it, run on admin_dsn by one thread of their own, never on the client path.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/rules.h"

namespace occ::invariants {

// Rows of one run kept for /invariants and the page; the count covers them all.
inline constexpr std::size_t kShownRows = 20;

// What the last run of one invariant found, for /metrics, /invariants and the page.
struct Status {
  Invariant invariant;
  bool ran = false;                                  // at least one run has finished
  std::chrono::system_clock::time_point last_run{};  // when the last run started
  std::chrono::milliseconds last_duration{0};
  std::string last_error;   // the last run's failure; empty when it succeeded
  uint64_t errors = 0;      // failed runs since the proxy started
  std::size_t violations = 0;  // rows returned by the last successful run
  std::vector<nlohmann::json> rows;  // the first kShownRows of them, as {column: text or null}
};

// Starts the runner thread on `admin_dsn`. Once, before set().
void start(std::string admin_dsn);
// Replaces the invariants in force (start-up and SIGHUP). An invariant whose name and definition
// are unchanged keeps its state, so its violations are not logged again; new or changed ones run
// at once. Runs on nothing until start().
void set(std::vector<Invariant> invariants);
// Cancels a query in flight and joins the thread; idempotent.
void stop();

// Runs one invariant once on the calling thread, logging nothing (`occproxy check`).
Status run_now(const std::string& admin_dsn, const Invariant& invariant);

// The invariants in force, in the rules file's order.
std::vector<Status> report();

}  // namespace occ::invariants
