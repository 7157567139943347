// Parses the config files' durations: a whole number and one unit, nothing else.
#include "config/duration.h"

#include <array>
#include <charconv>
#include <cstdint>
#include <limits>
#include <utility>

namespace occ {

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  // "ms" is listed before "m" and "s" so that the longer unit wins.
  static constexpr std::array<std::pair<std::string_view, int64_t>, 4> units{{
      {"ms", 1},
      {"s", 1000},
      {"m", 60 * 1000},
      {"h", 60 * 60 * 1000},
  }};
  for (const auto& [unit, ms_per_unit] : units) {
    if (text.size() <= unit.size() || !text.ends_with(unit)) continue;
    std::string_view number = text.substr(0, text.size() - unit.size());
    // from_chars would accept a leading '-'; a duration is never negative.
    if (number.front() < '0' || number.front() > '9') return std::nullopt;
    int64_t n = 0;
    auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), n);
    if (ec != std::errc() || end != number.data() + number.size()) return std::nullopt;
    if (n > std::numeric_limits<int64_t>::max() / ms_per_unit) return std::nullopt;
    return std::chrono::milliseconds(n * ms_per_unit);
  }
  return std::nullopt;
}

}  // namespace occ
