// Prometheus text format: one "# HELP" and "# TYPE" per family, then its samples.
#include "http/metrics_text.h"

#include <charconv>
#include <chrono>
#include <cstdio>
#include <string_view>

namespace occ::stats {
namespace {

constexpr std::string_view kPrefix = "occproxy_";

// Shortest text that reads back as the same double, in %g style as the Go client prints "le"
// bounds ("0.0001", not "1e-04"), so selectors written for other exporters' buckets match.
std::string format_double(double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general);
  return std::string(buf, end);
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

// Counter names that already say "total" (connections_total) are not suffixed twice.
std::string counter_family(std::string_view name) {
  std::string family(kPrefix);
  family += name;
  if (!name.ends_with("_total")) family += "_total";
  return family;
}

void family_header(std::string& out, const std::string& family, const char* help,
                   const char* type) {
  out += "# HELP " + family + " " + help + "\n";
  out += "# TYPE " + family + " " + type + "\n";
}

template <typename Number>
void sample(std::string& out, const std::string& name, Number value) {
  out += name;
  out += ' ';
  out += std::to_string(value);
  out += '\n';
}

}  // namespace

std::string metrics_text(const Snapshot& snap) {
  std::string out;

  for (unsigned i = 0; i < snap.counters.size(); ++i) {
    const auto c = static_cast<Counter>(i);
    const std::string family = counter_family(name(c));
    family_header(out, family, help(c), "counter");
    sample(out, family, snap.counters[i]);
  }

  for (unsigned i = 0; i < snap.gauges.size(); ++i) {
    const auto g = static_cast<Gauge>(i);
    const std::string family = std::string(kPrefix) + name(g);
    family_header(out, family, help(g), "gauge");
    sample(out, family, snap.gauges[i]);
  }

  for (unsigned i = 0; i < static_cast<unsigned>(TableCounter::count_); ++i) {
    const auto c = static_cast<TableCounter>(i);
    const std::string family = counter_family(std::string("table_") + name(c));
    family_header(out, family, help(c), "counter");
    for (const Snapshot::Table& t : snap.tables)
      sample(out, family + "{table=\"" + escape_label_value(t.name) + "\"}", t.counters[i]);
  }

  // Not a table_ family: its name is what the alerting rules in contrib/ select on.
  const std::string unchecked = std::string(kPrefix) + "unchecked_writes_total";
  family_header(out, unchecked, "Writes on this protected table from inside functions, procedures, DO blocks or triggers, which the proxy cannot check.",
                "counter");
  for (const Snapshot::Table& t : snap.tables)
    sample(out, unchecked + "{table=\"" + escape_label_value(t.name) + "\"}", t.unchecked_writes);

  const std::string latency = std::string(kPrefix) + "added_latency_seconds";
  family_header(out, latency, "Time the proxy itself added to each statement.", "histogram");
  for (std::size_t i = 0; i < snap.latency_bucket_counts.size(); ++i) {
    const std::string le = i < snap.latency_bucket_bounds_seconds.size()
                               ? format_double(snap.latency_bucket_bounds_seconds[i])
                               : "+Inf";
    sample(out, latency + "_bucket{le=\"" + le + "\"}", snap.latency_bucket_counts[i]);
  }
  out += latency + "_sum " + format_double(snap.latency_sum_seconds) + "\n";
  sample(out, latency + "_count", snap.latency_count);
  return out;
}

std::string invariant_metrics_text(const std::vector<invariants::Status>& statuses) {
  if (statuses.empty()) return {};
  std::string out;
  const auto family = [&](const char* suffix, const char* help, const char* type, auto value_of) {
    const std::string name = std::string(kPrefix) + suffix;
    family_header(out, name, help, type);
    for (const invariants::Status& st : statuses)
      out += name + "{name=\"" + escape_label_value(st.invariant.name) + "\"} " + value_of(st) + "\n";
  };
  family("invariant_violations", "Rows the invariant's query returned in its last successful run.", "gauge",
         [](const invariants::Status& st) { return std::to_string(st.violations); });
  family("invariant_last_run_timestamp_seconds", "When the invariant's last run started (Unix time; 0: not yet).",
         "gauge", [](const invariants::Status& st) {
           if (!st.ran) return std::string("0");
           // Fixed, to the millisecond: %g style would print 1.7145669e+09.
           const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(st.last_run.time_since_epoch()).count();
           char buf[32];
           std::snprintf(buf, sizeof buf, "%lld.%03lld", static_cast<long long>(ms / 1000), static_cast<long long>(ms % 1000));
           return std::string(buf);
         });
  family("invariant_last_run_duration_seconds", "How long the invariant's last run took.", "gauge",
         [](const invariants::Status& st) {
           return format_double(std::chrono::duration<double>(st.last_duration).count());
         });
  family("invariant_last_run_failed", "1 when the invariant's last run failed (error or timeout), else 0.", "gauge",
         [](const invariants::Status& st) { return std::string(st.last_error.empty() ? "0" : "1"); });
  family("invariant_errors_total", "Runs of the invariant that failed (error or timeout).", "counter",
         [](const invariants::Status& st) { return std::to_string(st.errors); });
  return out;
}

}  // namespace occ::stats
