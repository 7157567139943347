// The HTML page at GET /: recent conflicts and forced writes with their per-column diffs, and
// the invariants with what their last runs found.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "audit/invariants.h"
#include "stats/counters.h"

namespace occ::stats {

std::string html_escape(std::string_view text);

// `records` newest first, as audit::recent() returns them; the invariants' section only when
// there are any.
std::string conflicts_page(const std::vector<nlohmann::json>& records, const Snapshot& snap,
                           const std::vector<invariants::Status>& checks = {});

}  // namespace occ::stats
