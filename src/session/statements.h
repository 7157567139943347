// What a session knows of its prepared statements and portals: the analysis behind each, and
// the values bound to a portal that writes a protected table.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "session/policy_store.h"
#include "session/result_tracker.h"
#include "sql/rewrite.h"

namespace occ {

// What the proxy knows about a statement it analysed (a Query's text or a prepared statement).
struct StatementInfo {
  PolicyPtr policy;  // the rules it was analysed under: its TablePolicy pointers point into them
  std::vector<WriteInfo> writes;
  std::optional<Rejection> rejection;
  std::vector<StatementEffect> effects;
  std::vector<ExpectedParam> expected_params;
  int client_param_count = 0;
  std::vector<int32_t> param_types;  // as the server described them (ParameterDescription)
  ResultLayout layout;  // extended protocol: from this statement's last RowDescription
  std::vector<TextShift> shifts;  // the rewriting's edits: error positions count in the client's text
  // A read Query sent bound (BoundForm::pinned_read): its text, sent again as a Query when the
  // cached statement's result type went stale.
  std::string bound_read;
  bool tracks_results() const {
    for (const auto& e : effects)
      if (e.tracking.tracked()) return true;
    return false;
  }
};
using StatementInfoPtr = std::shared_ptr<StatementInfo>;

// Values bound to a portal whose statement writes a protected table (for the audit's "mine").
struct PortalInfo {
  StatementInfoPtr statement;
  std::vector<std::optional<std::string>> params;  // text form; binary values as \x hex
  // Bind's result format codes as the client sent them: none (all text), one for all, or one each.
  // A statement's RowDescription from Describe says text for every column whatever Bind picks later.
  std::vector<int16_t> result_formats;
  // StatementEffect::row_write: the row this Bind's check compares with, and the version read.
  std::vector<std::string> written_key;
  std::string written_version;
};
using PortalInfoPtr = std::shared_ptr<const PortalInfo>;

}  // namespace occ
