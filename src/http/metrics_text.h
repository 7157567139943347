// A counters snapshot in the Prometheus text exposition format 0.0.4 (GET /metrics).
#pragma once

#include <string>
#include <vector>

#include "audit/invariants.h"
#include "stats/counters.h"

namespace occ::stats {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4";

std::string metrics_text(const Snapshot& snap);
// The invariants' families (SPEC 7), labelled by name; nothing when there are none.
std::string invariant_metrics_text(const std::vector<invariants::Status>& statuses);

}  // namespace occ::stats
