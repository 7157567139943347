// A counters snapshot in the Prometheus text exposition format 0.0.4 (GET /metrics).
#pragma once

#include <string>

#include "stats/counters.h"

namespace occ::stats {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4";

std::string metrics_text(const Snapshot& snap);

}  // namespace occ::stats
