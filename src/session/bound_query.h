// A simple Query of one statement sent as a bound prepared statement (Parse once, Bind, Describe,
// Execute, Sync): which Queries may go so, and the server's errors as the Query would have got them.
#pragma once

#include <string_view>
#include <vector>

#include "sql/lifted_constants.h"
#include "sql/rewrite.h"
#include "wire/messages.h"

namespace occ {

// Whether a Query whose statements have `effects`, rewritten as `sql`, may go bound: one checked
// write of one row the session read, returning no rows (a prepared statement's result type can go
// stale, 0A000, which a Query never gets), naming no cursor or prepared statement.
bool may_go_bound(const std::vector<StatementEffect>& effects, std::string_view sql);

// An error the server sent for the bound form, as the Query gets it: a position counted in the
// client's text (through `lifted`, then the rewriting's `shifts`), and an error reading parameter $n
// (CONTEXT "unnamed portal parameter $n ...", no position) pointing at that constant instead, where
// the server would have read it. False when the error needs no change.
bool error_as_query(pg::ErrorFields& error, const LiftedConstants& lifted, const std::vector<TextShift>& shifts);

}  // namespace occ
