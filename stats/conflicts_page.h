// The HTML page at GET /: recent conflicts and forced writes with their per-column diffs.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "stats/counters.h"

namespace occ::stats {

std::string html_escape(std::string_view text);

// `records` newest first, as audit::recent() returns them.
std::string conflicts_page(const std::vector<nlohmann::json>& records, const Snapshot& snap);

}  // namespace occ::stats
