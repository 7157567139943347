// Session-facing entry of the SQL layer: one SQL text in (a Query message's string or a Parse's
// statement), what to send to the server out. Pure: no sockets, no catalog I/O.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rules/catalog.h"
#include "rules/rules.h"

namespace occ {

class PlanCache;

// What the rewriter needs to know about the client session.
struct SessionView {
  std::string_view user;                        // session user (for force.allowed_roles)
  const std::vector<std::string>& search_path;  // "$user" already substituted
  const Rules& rules;
  const RelationIndex& relations;
};

// An error the proxy wants the server session to raise in the statement's place.
struct Rejection {
  std::string sqlstate;  // e.g. "42501"
  std::string message;
  std::string detail;
  std::string hint;
  std::string schema;
  std::string table;
};

// What the session needs to audit one checked write (SPEC 3.7 "mine").
struct WriteInfo {
  const TablePolicy* table = nullptr;
  std::string fingerprint;  // pg_query fingerprint of the original statement
  bool forced = false;
  std::vector<std::pair<std::string, std::string>> assigned;  // column -> value's SQL text ("$2" for a parameter)
};

struct Rewrite {
  enum class Action { forward, rewrite, reject };
  Action action = Action::forward;
  // Action::rewrite: the text to send instead. In the simple protocol a refused statement is
  // replaced by SQL that makes the server raise `rejection` at that point of the message.
  std::string sql;
  // Action::reject (extended protocol only): the error to give the client for this Parse.
  std::optional<Rejection> rejection;
  std::vector<WriteInfo> writes;
  // A SET / RESET search_path in this text: the new path as written ("$user" not substituted);
  // an empty optional inside means RESET / DEFAULT.
  std::optional<std::optional<std::vector<std::string>>> search_path_change;
  bool parse_failed = false;     // forwarded unchanged: the server reports its own error
  unsigned unsupported_passed = 0;
};

// Cheap pre-filter: false when `sql` cannot touch a protected table nor change search_path,
// so the caller forwards it without parsing.
bool may_need_rewrite(std::string_view sql, const Rules& rules);

Rewrite rewrite_sql(std::string_view sql, bool extended_protocol, const SessionView& session,
                    PlanCache& cache);

}  // namespace occ
