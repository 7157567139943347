// The requests sent to the server whose replies have not all arrived, oldest first. The server
// answers in order, so each reply belongs to the front entry; a reply of a kind the front does
// not expect means the proxy has lost track of the conversation (Relay decides what then).
#pragma once

#include <boost/container/deque.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "session/bound_query.h"
#include "session/result_tracker.h"
#include "session/statements.h"

namespace occ {

// prepare: the proxy's own Parse of a cached statement (its reply is not the client's);
// unprepare: the proxy's Close of one it evicted; parse_cached: the client's Parse of a statement
// already prepared, answered by the server's CloseComplete of the unnamed statement.
enum class Pending : uint8_t {
  query, parse, bind, describe, execute, close, sync, function_call, prepare, unprepare, parse_cached
};

struct InFlight {
  InFlight(Pending k, StatementInfoPtr s = nullptr, PortalInfoPtr p = nullptr)
      : kind(k), statement(std::move(s)), portal(std::move(p)) {}
  Pending kind;
  StatementInfoPtr statement;  // query/parse/describe/execute of a statement the proxy analysed
  PortalInfoPtr portal;        // execute: bound values for the audit
  std::size_t statement_index = 0;  // query: the statement whose results are arriving
  ResultLayout layout;              // query: the current result's layout
  // StatementEffect::row_write: the version the row held when this session's own earlier write
  // in the transaction let the check pass (occ.written_here), instead of the version read.
  std::optional<std::string> written_over;
  std::string prepared_as;  // prepare/unprepare/bind/query: the cached statement it names
  // query: sent bound (query_cached), its constants lifted; its ParseComplete not yet arrived.
  std::shared_ptr<const LiftedConstants> lifted;
  bool parse_owed = false;
  // query: its bound form failed before it ran; at its ReadyForQuery the Query goes again as text.
  bool retry_as_query = false;
};

class PendingReplies {
 public:
  bool empty() const { return queue_.empty(); }
  std::size_t size() const { return queue_.size(); }
  InFlight& front() { return queue_.front(); }
  const InFlight& front() const { return queue_.front(); }
  // Null when nothing is pending.
  InFlight* current() { return queue_.empty() ? nullptr : &queue_.front(); }
  const InFlight* current() const { return queue_.empty() ? nullptr : &queue_.front(); }
  bool front_is(Pending kind) const { return !queue_.empty() && queue_.front().kind == kind; }
  void push(InFlight entry) { queue_.push_back(std::move(entry)); }
  void pop() { queue_.pop_front(); }
  // Boost's deque allocates nothing until the first request, and nothing once swapped empty: an
  // idle session holds no queue (SPEC 5, memory per idle client); std::deque always holds a node.
  void release_if_empty() {
    if (queue_.empty()) Queue().swap(queue_);
  }

 private:
  using Queue = boost::container::deque<InFlight>;
  Queue queue_;
};

}  // namespace occ
