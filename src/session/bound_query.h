// A simple Query of one statement sent as a bound prepared statement (Parse once, Bind, Describe,
// Execute, Sync): which Queries may go so, and the server's errors as the Query would have got them.
#pragma once

#include <string_view>
#include <vector>

#include "sql/lifted_constants.h"
#include "sql/rewrite.h"
#include "wire/messages.h"

namespace occ {

// How a Query whose statements have `effects`, rewritten as `sql`, may go bound, naming no cursor
// or prepared statement either way:
// - checked_write: one checked write of one row the session read, returning no rows, so its
//   prepared statement's result type cannot go stale (0A000, which a Query never gets);
// - pinned_read: one tracked SELECT of one row by its whole key. Its result type can go stale
//   (an ALTER TABLE in between), so it goes bound only outside a transaction block, where the
//   failed Bind ran nothing and the Query can be sent again as it is.
enum class BoundForm { none, checked_write, pinned_read };
BoundForm may_go_bound(const std::vector<StatementEffect>& effects, std::string_view sql);

// An error the server sent for the bound form, as the Query gets it: a position counted in the
// client's text (through `lifted`, then the rewriting's `shifts`), and an error reading parameter $n
// (CONTEXT "unnamed portal parameter $n ...", no position) pointing at that constant instead, where
// the server would have read it. False when the error needs no change.
bool error_as_query(pg::ErrorFields& error, const LiftedConstants& lifted, const std::vector<TextShift>& shifts);

}  // namespace occ
