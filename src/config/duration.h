// Durations as the config files write them: "2s", "500ms", "5m", "1h".
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace occ {

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

}  // namespace occ
