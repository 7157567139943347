// Renders audit records as a plain HTML page: no scripts, every value escaped.
#include "http/conflicts_page.h"

#include "audit/audit_log.h"

namespace occ::stats {
namespace {

using json = nlohmann::json;

constexpr std::string_view kStyle =
    "body{font-family:sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #bbb;padding:.2em .6em;text-align:left;vertical-align:top}"
    "th{background:#eee}td{font-family:monospace;white-space:pre-wrap}"
    "tr.moved td.theirs{background:#fdd}.null{color:#888;font-style:italic}"
    "section{border-top:1px solid #ccc;padding-top:.5em}"
    "dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em}dd{margin:0}";

// A JSON value as a person reads it: strings without quotes, SQL NULL for null.
std::string value_html(const json& v) {
  if (v.is_null()) return "<span class=\"null\">NULL</span>";
  if (v.is_string()) return html_escape(v.get_ref<const std::string&>());
  return html_escape(v.dump(-1, ' ', false, json::error_handler_t::replace));
}

std::string field_html(const json& record, const char* field) {
  auto it = record.find(field);
  return it == record.end() ? "" : value_html(*it);
}

const char* kind_title(const json& record) {
  auto it = record.find("kind");
  const std::string_view kind = it != record.end() && it->is_string()
                                    ? std::string_view(it->get_ref<const std::string&>())
                                    : std::string_view();
  if (kind == "conflict") return "Conflict (write refused)";
  if (kind == "shadow_conflict") return "Shadow conflict (write let through)";
  if (kind == "forced_write") return "Forced write (check overridden)";
  if (kind == "merged") return "Merged (stale write applied column by column)";
  if (kind == "shadow_merged") return "Shadow merge (would have merged; written as sent)";
  return "Record";
}

// "(id, region)=(42, eu)", the way PostgreSQL names a key in its own messages.
std::string key_html(const json& record) {
  auto it = record.find("key");
  if (it == record.end() || !it->is_object() || it->empty()) return "";
  std::string columns;
  std::string values;
  for (const auto& [column, value] : it->items()) {
    if (!columns.empty()) {
      columns += ", ";
      values += ", ";
    }
    columns += html_escape(column);
    values += value_html(value);
  }
  return " (" + columns + ")=(" + values + ")";
}

// A list of column names, comma-separated; empty when absent.
std::string list_html(const json& record, const char* field) {
  auto it = record.find(field);
  if (it == record.end() || !it->is_array()) return "";
  std::string out;
  for (const json& item : *it) out += (out.empty() ? "" : ", ") + value_html(item);
  return out;
}

void definition(std::string& out, const char* term, const std::string& value_html) {
  if (value_html.empty()) return;
  out += "<dt>";
  out += term;
  out += "</dt><dd>" + value_html + "</dd>";
}

// One row per column the write set or another writer changed since the read: what the session
// read, what it wrote, what is there now.
void diff_table(std::string& out, const json& record) {
  auto diff = record.find("diff");
  if (diff == record.end() || !diff->is_object() || diff->empty()) return;
  out +=
      "<table><thead><tr><th>Column</th><th>Base (read)</th><th>Mine (written)</th>"
      "<th>Theirs (current)</th></tr></thead><tbody>";
  for (const auto& [column, sides] : diff->items()) {
    const auto side = [&](const char* name) {
      return sides.is_object() && sides.contains(name) ? value_html(sides[name]) : "";
    };
    // Someone else changed this column after the session read it.
    const bool moved = sides.is_object() && sides.contains("base") && sides.contains("theirs") &&
                       sides["base"] != sides["theirs"];
    out += moved ? "<tr class=\"moved\">" : "<tr>";
    out += "<td>" + html_escape(column) + "</td><td>" + side("base") + "</td><td>" +
           side("mine") + "</td><td class=\"theirs\">" + side("theirs") + "</td></tr>";
  }
  out += "</tbody></table>";
}

void record_section(std::string& out, const json& record) {
  out += "<section><h3>";
  out += kind_title(record);
  out += " on " + field_html(record, "table") + key_html(record) + "</h3><dl>";
  definition(out, "Id", field_html(record, "id"));
  definition(out, "Time", field_html(record, "ts"));
  definition(out, "Expected version", field_html(record, "expected"));
  definition(out, "Current version", field_html(record, "current"));
  definition(out, "User", field_html(record, "user"));
  definition(out, "Application", field_html(record, "application_name"));
  definition(out, "Client", field_html(record, "client_addr"));
  definition(out, "Statement fingerprint", field_html(record, "fingerprint"));
  if (auto writer = record.find("writer"); writer != record.end() && writer->is_object())
    definition(out, "Conflicting change by", field_html(*writer, "by") + " at " + field_html(*writer, "at"));
  definition(out, "Changed on both sides", list_html(record, "both_changed"));
  out += "</dl>";
  diff_table(out, record);
  out += "</section>";
}

// Per protected table: what the checks did to its writes.
void tables_html(std::string& out, const Snapshot& snap) {
  if (snap.tables.empty()) return;
  out += "<table><thead><tr><th>Table</th><th>Conflicts</th><th>Merges</th><th>Shadow conflicts</th>"
         "<th>Shadow merges</th><th>Forced writes</th></tr></thead><tbody>";
  for (const Snapshot::Table& t : snap.tables) {
    const auto n = [&](TableCounter c) { return "<td>" + std::to_string(t.counters[static_cast<unsigned>(c)]) + "</td>"; };
    out += "<tr><td>" + html_escape(t.name) + "</td>" + n(TableCounter::conflicts) + n(TableCounter::merges) +
           n(TableCounter::shadow_conflicts) + n(TableCounter::shadow_merges) + n(TableCounter::forced_writes) + "</tr>";
  }
  out += "</tbody></table>";
}

// One row per invariant; its violating rows (the first ones) below it.
void invariants_section(std::string& out, const std::vector<invariants::Status>& checks) {
  out += "<h2>Invariants</h2><table><thead><tr><th>Name</th><th>Violations</th><th>Last run</th>"
         "<th>Last error</th></tr></thead><tbody>";
  for (const invariants::Status& st : checks) {
    out += "<tr><td>" + html_escape(st.invariant.name) + "</td><td>" + std::to_string(st.violations) + "</td><td>" +
           (st.ran ? html_escape(audit::format_timestamp(st.last_run)) : std::string("not yet")) + "</td><td>" +
           html_escape(st.last_error) + "</td></tr>";
  }
  out += "</tbody></table>";
  for (const invariants::Status& st : checks) {
    if (st.rows.empty()) continue;
    out += "<section><h3>Invariant " + html_escape(st.invariant.name) + ": " + std::to_string(st.violations) +
           " violating rows</h3><table><thead><tr>";
    for (const auto& [column, value] : st.rows.front().items()) out += "<th>" + html_escape(column) + "</th>";
    out += "</tr></thead><tbody>";
    for (const json& row : st.rows) {
      out += "<tr>";
      for (const auto& [column, value] : row.items()) out += "<td>" + value_html(value) + "</td>";
      out += "</tr>";
    }
    out += "</tbody></table></section>";
  }
}

}  // namespace

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string conflicts_page(const std::vector<json>& records, const Snapshot& snap,
                           const std::vector<invariants::Status>& checks) {
  const auto counter = [&](Counter c) {
    return std::to_string(snap.counters[static_cast<unsigned>(c)]);
  };
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<title>occproxy: recent conflicts</title><style>";
  out += kStyle;
  out += "</style></head><body><h1>occproxy</h1><p>Conflicts: " + counter(Counter::conflicts) +
         " &middot; shadow conflicts: " + counter(Counter::shadow_conflicts) +
         " &middot; merges: " + counter(Counter::merges) +
         " &middot; shadow merges: " + counter(Counter::shadow_merges) +
         " &middot; forced writes: " + counter(Counter::forced_writes) +
         " &middot; client connections open: " +
         std::to_string(snap.gauges[static_cast<unsigned>(Gauge::connections_current)]) +
         "</p><p><a href=\"/stats\">/stats</a> &middot; <a href=\"/metrics\">/metrics</a>"
         " &middot; <a href=\"/rules\">/rules</a> &middot; <a href=\"/conflicts\">/conflicts</a>"
         "</p>";
  tables_html(out, snap);
  out += "<h2>Recent conflicts, merges and forced writes</h2>";
  if (records.empty()) out += "<p>None since the proxy started.</p>";
  for (const json& record : records) record_section(out, record);
  if (!checks.empty()) invariants_section(out, checks);
  out += "</body></html>\n";
  return out;
}

}  // namespace occ::stats
