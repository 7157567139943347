// What the rewritten SQL and the occ helper functions of migrations/ agree on, in one place: the
// rewriter writes these names into statements, the session reads them back from the server's
// results, notices and errors.
#pragma once

#include <string_view>

namespace occ::helpers {

// The columns the rewriter appends to a tracked SELECT, after the client's.
constexpr std::string_view kKeyColumn = "occ:key";
constexpr std::string_view kVersionColumn = "occ:version";

// The SQL-level prepared statements the proxy adds beside a client's PREPARE of a SELECT, named
// this prefix and a number the session never reuses (the shadow: see rewrite.h).
constexpr std::string_view kShadowStatementPrefix = "occ:p";

// The helper functions a rewritten write calls (migrations/001, 002, 005, 006, 008).
constexpr std::string_view kConflict = "occ.conflict";
constexpr std::string_view kForced = "occ.forced";
constexpr std::string_view kMerge = "occ.merge";
constexpr std::string_view kUnknownVersion = "occ.unknown_version";
constexpr std::string_view kWrittenHere = "occ.written_here";
constexpr std::string_view kWrittenHereIn = "occ.written_here_in";

// SQLSTATE of the notices the helpers emit for the proxy (audit events, never shown to clients).
constexpr std::string_view kEventSqlstate = "OC000";
// The constraint name a version conflict error carries.
constexpr std::string_view kConflictConstraint = "occ_version";
// How the CONTEXT of an error raised inside a helper begins.
constexpr std::string_view kContextPrefix = "PL/pgSQL function occ.";
constexpr std::string_view kUnknownVersionContext = "PL/pgSQL function occ.unknown_version(";

// Added to the startup packet's options: the server session knows it is reached through the proxy,
// so the version trigger tells its checked writes from unchecked ones (migrations/007).
constexpr std::string_view kProxiedOption = "-c occ.proxied=on";

}  // namespace occ::helpers
