// Counters summed across threads, the Prometheus text format and the HTML conflicts page.
#include <cctype>
#include <charconv>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "http/conflicts_page.h"
#include "stats/counters.h"
#include "http/metrics_text.h"

using namespace occ::stats;

namespace {

uint64_t counter(const Snapshot& s, Counter c) { return s.counters[static_cast<unsigned>(c)]; }

const Snapshot::Table* find_table(const Snapshot& s, const std::string& name) {
  for (const auto& t : s.tables)
    if (t.name == name) return &t;
  return nullptr;
}

// A strict reader of the text format 0.0.4: every family announced by HELP then TYPE before its
// samples, legal names, well-formed labels, numeric values. Returns "name{labels}" -> value text.
struct ParsedMetrics {
  std::map<std::string, std::string> samples;
  std::map<std::string, std::string> types;
};

bool legal_name(const std::string& n) {
  if (n.empty() || std::isdigit(static_cast<unsigned char>(n[0]))) return false;
  for (char c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != ':') return false;
  return true;
}

bool legal_value(const std::string& v) {
  if (v == "+Inf" || v == "-Inf" || v == "NaN") return true;
  double d = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
  return ec == std::errc() && end == v.data() + v.size();
}

// Labels "{a="x",b="y\"z"}": returns false on anything malformed.
bool legal_labels(const std::string& text) {
  std::size_t i = 1;
  while (i < text.size() - 1) {
    const std::size_t eq = text.find('=', i);
    if (eq == std::string::npos || !legal_name(text.substr(i, eq - i))) return false;
    if (eq + 1 >= text.size() || text[eq + 1] != '"') return false;
    std::size_t j = eq + 2;
    while (j < text.size() && text[j] != '"') {
      if (text[j] == '\\') {
        if (j + 1 >= text.size() || std::string("\\\"n").find(text[j + 1]) == std::string::npos)
          return false;
        ++j;
      }
      ++j;
    }
    if (j >= text.size()) return false;
    i = j + 1;
    if (text[i] == ',') ++i;
    else if (i != text.size() - 1) return false;
  }
  return text.back() == '}';
}

ParsedMetrics parse_metrics(const std::string& text) {
  ParsedMetrics out;
  REQUIRE(!text.empty());
  REQUIRE(text.back() == '\n');
  std::set<std::string> helped;
  std::set<std::string> with_samples;
  std::string current_family;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    INFO("line: " << line);
    REQUIRE(!line.empty());
    if (line.rfind("# HELP ", 0) == 0) {
      const std::string rest = line.substr(7);
      const std::size_t sp = rest.find(' ');
      REQUIRE(sp != std::string::npos);
      const std::string family = rest.substr(0, sp);
      REQUIRE(legal_name(family));
      REQUIRE(rest.size() > sp + 1);
      REQUIRE(helped.insert(family).second);
      current_family = family;
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream parts(line.substr(7));
      std::string family, type, extra;
      parts >> family >> type;
      REQUIRE(!(parts >> extra));
      REQUIRE(family == current_family);
      REQUIRE(out.types.count(family) == 0);
      REQUIRE((type == "counter" || type == "gauge" || type == "histogram"));
      if (type == "counter") REQUIRE(family.size() > 6);
      if (type == "counter") REQUIRE(family.substr(family.size() - 6) == "_total");
      out.types[family] = type;
      continue;
    }
    REQUIRE(line[0] != '#');
    const std::size_t sp = line.rfind(' ');
    REQUIRE(sp != std::string::npos);
    const std::string series = line.substr(0, sp);
    const std::string value = line.substr(sp + 1);
    REQUIRE(legal_value(value));
    const std::size_t brace = series.find('{');
    const std::string name = series.substr(0, brace);
    REQUIRE(legal_name(name));
    if (brace != std::string::npos) REQUIRE(legal_labels(series.substr(brace)));
    REQUIRE(out.types.count(current_family) == 1);
    if (out.types[current_family] == "histogram") {
      const bool member = name == current_family + "_bucket" || name == current_family + "_sum" ||
                          name == current_family + "_count";
      REQUIRE(member);
    } else {
      REQUIRE(name == current_family);
    }
    REQUIRE(name.rfind("occproxy_", 0) == 0);
    REQUIRE(out.samples.emplace(series, value).second);
  }
  return out;
}

}  // namespace

TEST_CASE("counters from many threads add up exactly", "[stats]") {
  const Snapshot before = snapshot();
  constexpr int kThreads = 8;
  constexpr int kPerThread = 50000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([] {
      for (int i = 0; i < kPerThread; ++i) {
        add(Counter::conflicts);
        add(Counter::bytes_client_to_server, 3);
        table_add("test_threads.accounts", TableCounter::conflicts);
        table_add(std::string("test_threads.") + (i % 2 ? "odd" : "even"), TableCounter::rewritten, 2);
      }
      gauge_add(Gauge::connections_current, 1);
    });
  for (auto& t : threads) t.join();
  gauge_add(Gauge::connections_current, -3);

  const Snapshot after = snapshot();
  CHECK(counter(after, Counter::conflicts) - counter(before, Counter::conflicts) == 400000u);
  CHECK(counter(after, Counter::bytes_client_to_server) -
            counter(before, Counter::bytes_client_to_server) ==
        1200000u);
  CHECK(after.gauges[0] - before.gauges[0] == 5);

  const auto* accounts = find_table(after, "test_threads.accounts");
  REQUIRE(accounts);
  CHECK(accounts->counters[static_cast<unsigned>(TableCounter::conflicts)] == 400000u);
  CHECK(accounts->counters[static_cast<unsigned>(TableCounter::rewritten)] == 0u);
  const auto* odd = find_table(after, "test_threads.odd");
  const auto* even = find_table(after, "test_threads.even");
  REQUIRE(odd);
  REQUIRE(even);
  CHECK(odd->counters[static_cast<unsigned>(TableCounter::rewritten)] == 400000u);
  CHECK(even->counters[static_cast<unsigned>(TableCounter::rewritten)] == 400000u);
}

TEST_CASE("snapshot lists tables sorted by name", "[stats]") {
  table_add("zz_sort.b", TableCounter::forced_writes);
  table_add("zz_sort.a", TableCounter::forced_writes);
  const Snapshot s = snapshot();
  for (std::size_t i = 1; i < s.tables.size(); ++i) CHECK(s.tables[i - 1].name < s.tables[i].name);
}

TEST_CASE("added latency lands in the right histogram bucket", "[stats]") {
  using namespace std::chrono;
  const Snapshot before = snapshot();
  REQUIRE(before.latency_bucket_bounds_seconds ==
          std::vector<double>{5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3});
  REQUIRE(before.latency_bucket_counts.size() == 11);

  observe_added_latency(microseconds(3));   // <= 5us
  observe_added_latency(microseconds(5));   // <= 5us: bounds are inclusive
  observe_added_latency(microseconds(6));   // <= 10us
  observe_added_latency(microseconds(700)); // <= 1ms
  observe_added_latency(milliseconds(30));  // +Inf
  const Snapshot after = snapshot();

  std::vector<uint64_t> delta;
  for (std::size_t i = 0; i < after.latency_bucket_counts.size(); ++i)
    delta.push_back(after.latency_bucket_counts[i] - before.latency_bucket_counts[i]);
  CHECK(delta == std::vector<uint64_t>{2, 3, 3, 3, 3, 3, 3, 4, 4, 4, 5});
  CHECK(after.latency_count - before.latency_count == 5);
  CHECK(after.latency_sum_seconds - before.latency_sum_seconds == Approx(0.030714).epsilon(1e-9));
}

TEST_CASE("every counter has a name and a help text", "[stats]") {
  std::set<std::string> names;
  for (unsigned i = 0; i < static_cast<unsigned>(Counter::count_); ++i) {
    CHECK(std::string(help(static_cast<Counter>(i))).size() > 10);
    CHECK(names.insert(name(static_cast<Counter>(i))).second);
  }
  CHECK(std::string(name(Counter::statements_rewritten)) == "statements_rewritten");
  CHECK(std::string(name(Gauge::connections_current)) == "connections_current");
  CHECK(std::string(name(TableCounter::shadow_conflicts)) == "shadow_conflicts");
}

namespace {

Snapshot sample_snapshot() {
  Snapshot s;
  s.counters[static_cast<unsigned>(Counter::connections_total)] = 12;
  s.counters[static_cast<unsigned>(Counter::conflicts)] = 7;
  s.counters[static_cast<unsigned>(Counter::bytes_server_to_client)] = 123456789012ull;
  s.gauges[static_cast<unsigned>(Gauge::connections_current)] = 3;
  Snapshot::Table t;
  t.name = "public.subscriptions";
  t.counters[static_cast<unsigned>(TableCounter::conflicts)] = 2;
  t.counters[static_cast<unsigned>(TableCounter::rewritten)] = 40;
  t.unchecked_writes = 6;
  s.tables.push_back(t);
  Snapshot::Table odd;
  odd.name = "we\"ird\\sch.t\nx";
  odd.counters[static_cast<unsigned>(TableCounter::forced_writes)] = 1;
  s.tables.push_back(odd);
  s.latency_bucket_bounds_seconds = {5e-6, 2.5e-5, 1e-3};
  s.latency_bucket_counts = {1, 3, 3, 4};
  s.latency_count = 4;
  s.latency_sum_seconds = 0.5;
  return s;
}

}  // namespace

TEST_CASE("metrics text follows the Prometheus 0.0.4 format", "[stats][metrics]") {
  const std::string text = metrics_text(sample_snapshot());
  const ParsedMetrics m = parse_metrics(text);

  CHECK(std::string(kMetricsContentType) == "text/plain; version=0.0.4");
  CHECK(m.samples.at("occproxy_connections_total") == "12");
  CHECK(m.samples.at("occproxy_conflicts_total") == "7");
  CHECK(m.samples.at("occproxy_bytes_server_to_client_total") == "123456789012");
  CHECK(m.samples.at("occproxy_statements_rewritten_total") == "0");
  CHECK(m.samples.at("occproxy_connections_current") == "3");
  CHECK(m.types.at("occproxy_connections_current") == "gauge");
  CHECK(m.types.at("occproxy_table_conflicts_total") == "counter");
  CHECK(m.samples.at("occproxy_table_conflicts_total{table=\"public.subscriptions\"}") == "2");
  CHECK(m.samples.at("occproxy_table_rewritten_total{table=\"public.subscriptions\"}") == "40");
  CHECK(m.samples.at("occproxy_table_forced_writes_total{table=\"we\\\"ird\\\\sch.t\\nx\"}") == "1");
  CHECK(m.types.at("occproxy_added_latency_seconds") == "histogram");
  CHECK(m.samples.at("occproxy_added_latency_seconds_bucket{le=\"5e-06\"}") == "1");
  CHECK(m.samples.at("occproxy_added_latency_seconds_bucket{le=\"2.5e-05\"}") == "3");
  CHECK(m.samples.at("occproxy_added_latency_seconds_bucket{le=\"0.001\"}") == "3");
  CHECK(m.samples.at("occproxy_added_latency_seconds_bucket{le=\"+Inf\"}") == "4");
  CHECK(m.samples.at("occproxy_added_latency_seconds_sum") == "0.5");
  CHECK(m.samples.at("occproxy_added_latency_seconds_count") == "4");
  CHECK(m.types.at("occproxy_unchecked_writes_total") == "counter");
  CHECK(m.samples.at("occproxy_unchecked_writes_total{table=\"public.subscriptions\"}") == "6");
  CHECK(m.samples.at("occproxy_unchecked_writes_total{table=\"we\\\"ird\\\\sch.t\\nx\"}") == "0");
  // Every counter, the gauge, 6 per-table counters and the unchecked writes x 2 tables, 4 buckets,
  // sum and count.
  CHECK(m.samples.size() == static_cast<unsigned>(Counter::count_) + 1 + 14 + 4 + 2);

  CHECK(text.find("# HELP occproxy_conflicts_total Writes refused with a version conflict.\n"
                  "# TYPE occproxy_conflicts_total counter\n"
                  "occproxy_conflicts_total 7\n") != std::string::npos);
}

TEST_CASE("metrics of the live counters parse too", "[stats][metrics]") {
  add(Counter::rules_reload_ok);
  table_add("public.live_metrics", TableCounter::shadow_conflicts, 4);
  const ParsedMetrics m = parse_metrics(metrics_text(snapshot()));
  CHECK(m.samples.at("occproxy_table_shadow_conflicts_total{table=\"public.live_metrics\"}") == "4");
  CHECK(m.samples.count("occproxy_rules_reload_ok_total") == 1);
}

TEST_CASE("a registered table has its series at zero before anything is counted", "[stats][metrics]") {
  register_table("public.registered_only");
  unchecked_write("public.unchecked_live", 2);
  const ParsedMetrics m = parse_metrics(metrics_text(snapshot()));
  CHECK(m.samples.at("occproxy_unchecked_writes_total{table=\"public.registered_only\"}") == "0");
  CHECK(m.samples.at("occproxy_table_conflicts_total{table=\"public.registered_only\"}") == "0");
  CHECK(m.samples.at("occproxy_unchecked_writes_total{table=\"public.unchecked_live\"}") == "2");
}

TEST_CASE("invariant metrics: one series per invariant in each family", "[stats][metrics][invariants]") {
  CHECK(invariant_metrics_text({}).empty());
  occ::invariants::Status holds;
  holds.invariant = occ::Invariant{"ledger", "SELECT 1 WHERE false", std::chrono::seconds(60), std::chrono::seconds(5)};
  holds.ran = true;
  holds.last_run = std::chrono::system_clock::time_point{std::chrono::milliseconds(1714566896250)};
  holds.last_duration = std::chrono::milliseconds(12);
  occ::invariants::Status failing;
  failing.invariant = occ::Invariant{"odd\"one", "SELECT", std::chrono::seconds(1), std::chrono::seconds(1)};
  failing.ran = true;
  failing.last_run = std::chrono::system_clock::time_point{std::chrono::seconds(1714566900)};
  failing.last_error = "canceling statement due to statement timeout";
  failing.errors = 3;
  failing.violations = 2;
  occ::invariants::Status pending;
  pending.invariant = occ::Invariant{"later", "SELECT", std::chrono::seconds(1), std::chrono::seconds(1)};

  const ParsedMetrics m = parse_metrics(invariant_metrics_text({holds, failing, pending}));
  const std::map<std::string, std::string> expected{
      {"occproxy_invariant_violations{name=\"ledger\"}", "0"},
      {"occproxy_invariant_violations{name=\"odd\\\"one\"}", "2"},
      {"occproxy_invariant_violations{name=\"later\"}", "0"},
      {"occproxy_invariant_last_run_timestamp_seconds{name=\"ledger\"}", "1714566896.250"},
      {"occproxy_invariant_last_run_timestamp_seconds{name=\"odd\\\"one\"}", "1714566900.000"},
      {"occproxy_invariant_last_run_timestamp_seconds{name=\"later\"}", "0"},
      {"occproxy_invariant_last_run_duration_seconds{name=\"ledger\"}", "0.012"},
      {"occproxy_invariant_last_run_duration_seconds{name=\"odd\\\"one\"}", "0"},
      {"occproxy_invariant_last_run_duration_seconds{name=\"later\"}", "0"},
      {"occproxy_invariant_last_run_failed{name=\"ledger\"}", "0"},
      {"occproxy_invariant_last_run_failed{name=\"odd\\\"one\"}", "1"},
      {"occproxy_invariant_last_run_failed{name=\"later\"}", "0"},
      {"occproxy_invariant_errors_total{name=\"ledger\"}", "0"},
      {"occproxy_invariant_errors_total{name=\"odd\\\"one\"}", "3"},
      {"occproxy_invariant_errors_total{name=\"later\"}", "0"},
  };
  CHECK(std::map<std::string, std::string>(m.samples.begin(), m.samples.end()) == expected);
  CHECK(m.types.at("occproxy_invariant_violations") == "gauge");
  CHECK(m.types.at("occproxy_invariant_errors_total") == "counter");
}

TEST_CASE("latency bounds are printed as the Go client prints them", "[stats][metrics]") {
  const ParsedMetrics m = parse_metrics(metrics_text(snapshot()));
  for (const std::string le : {"5e-06", "1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005",
                               "0.001", "0.005", "0.025", "+Inf"})
    CHECK(m.samples.count("occproxy_added_latency_seconds_bucket{le=\"" + le + "\"}") == 1);
}

TEST_CASE("html_escape escapes the five special characters", "[stats][html]") {
  CHECK(html_escape("<a href=\"x\">Tom & Jerry's</a>") ==
        "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;");
  CHECK(html_escape("plain") == "plain");
}

TEST_CASE("conflicts page shows each record with its diff, escaped", "[stats][html]") {
  const nlohmann::json conflict = {
      {"ts", "2024-05-01T12:00:00.000Z"},
      {"kind", "conflict"},
      {"table", "public.subscriptions"},
      {"key", {{"id", 42}}},
      {"expected", 3},
      {"current", 4},
      {"user", "app<script>"},
      {"application_name", "billing"},
      {"client_addr", "10.0.0.7"},
      {"fingerprint", "abc123"},
      {"diff",
       {{"plan", {{"base", "basic"}, {"mine", "pro"}, {"theirs", "team & co"}}},
        {"note", {{"base", nullptr}, {"mine", "<b>"}, {"theirs", nullptr}}}}}};
  const nlohmann::json forced = {{"kind", "forced_write"},
                                 {"table", "billing.plans"},
                                 {"key", {{"id", "p1"}, {"region", "eu"}}},
                                 {"user", "dba"}};
  const std::string page = conflicts_page({forced, conflict}, sample_snapshot());

  CHECK(page.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(page.find("<script") == std::string::npos);
  CHECK(page.find("app&lt;script&gt;") != std::string::npos);
  CHECK(page.find("<p>Conflicts: 7 &middot;") != std::string::npos);
  CHECK(page.find("<h3>Conflict (write refused) on public.subscriptions (id)=(42)</h3>") !=
        std::string::npos);
  CHECK(page.find("<h3>Forced write (check overridden) on billing.plans (id, region)=(p1, eu)</h3>") !=
        std::string::npos);
  CHECK(page.find("<dt>Expected version</dt><dd>3</dd><dt>Current version</dt><dd>4</dd>") !=
        std::string::npos);
  CHECK(page.find("<tr class=\"moved\"><td>plan</td><td>basic</td><td>pro</td>"
                  "<td class=\"theirs\">team &amp; co</td></tr>") != std::string::npos);
  CHECK(page.find("<tr><td>note</td><td><span class=\"null\">NULL</span></td><td>&lt;b&gt;</td>"
                  "<td class=\"theirs\"><span class=\"null\">NULL</span></td></tr>") !=
        std::string::npos);
  // Newest first, as given.
  CHECK(page.find("<h3>Forced write") < page.find("<h3>Conflict"));
  // Per table, what the checks did (the snapshot's tables, above the records).
  CHECK(page.find("<tr><td>public.subscriptions</td><td>2</td><td>0</td>") < page.find("<h3>"));
}

TEST_CASE("conflicts page shows merges, the writer and the columns changed on both sides", "[stats][html]") {
  const nlohmann::json merged = {{"id", "00000000000000aa"}, {"kind", "merged"}, {"table", "public.subscriptions"},
                                 {"key", {{"id", 42}}}};
  const nlohmann::json conflict = {{"id", "00000000000000bb"},
                                   {"kind", "conflict"},
                                   {"table", "public.subscriptions"},
                                   {"key", {{"id", 42}}},
                                   {"writer", {{"by", "postgres (billing)"}, {"at", "2024-05-01T12:00:00.000Z"}}},
                                   {"both_changed", {"notes", "status"}}};
  const std::string page = conflicts_page({merged, conflict}, sample_snapshot());
  CHECK(page.find("<h3>Merged (stale write applied column by column) on public.subscriptions (id)=(42)</h3>") !=
        std::string::npos);
  CHECK(page.find("<dt>Id</dt><dd>00000000000000aa</dd>") != std::string::npos);
  CHECK(page.find("<dt>Conflicting change by</dt><dd>postgres (billing) at 2024-05-01T12:00:00.000Z</dd>"
                  "<dt>Changed on both sides</dt><dd>notes, status</dd>") != std::string::npos);
  CHECK(page.find("&middot; merges: 0 &middot; shadow merges: 0 &middot;") != std::string::npos);
}

TEST_CASE("conflicts page copes with odd records and none at all", "[stats][html]") {
  const std::string empty = conflicts_page({}, Snapshot{});
  CHECK(empty.find("<p>None since the proxy started.</p>") != std::string::npos);

  const std::string odd =
      conflicts_page({nlohmann::json{{"kind", 5}, {"key", "x"}, {"diff", {1, 2}}},
                      nlohmann::json::object()},
                     Snapshot{});
  CHECK(odd.find("<h3>Record on </h3>") != std::string::npos);
}
