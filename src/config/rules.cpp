// Loads the rules file into per-table policies (defaults applied) and holds the snapshot in force.
#include "config/rules.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <optional>

#include "config/yaml_errors.h"

namespace occ {

bool TablePolicy::may_force(std::string_view role) const {
  return std::find(force_roles.begin(), force_roles.end(), role) != force_roles.end();
}

bool TablePolicy::is_redacted(std::string_view column) const {
  return std::find(redact.begin(), redact.end(), column) != redact.end();
}

const TablePolicy* Rules::find(std::string_view schema, std::string_view name) const {
  for (const auto& t : tables) {
    if (t.name == name && t.schema == schema) return &t;
  }
  return nullptr;
}

const ProtectedView* Rules::find_view(std::string_view schema, std::string_view name) const {
  auto it = std::find_if(views.begin(), views.end(),
                         [&](const ProtectedView& v) { return v.name == name && v.schema == schema; });
  return it == views.end() ? nullptr : &*it;
}

bool Rules::has_table_named(std::string_view name) const {
  return std::any_of(tables.begin(), tables.end(), [&](const TablePolicy& t) { return t.name == name; }) ||
         std::any_of(views.begin(), views.end(), [&](const ProtectedView& v) { return v.name == name; });
}

const char* to_string(VersionKind k) {
  switch (k) {
    case VersionKind::counter: return "counter";
    case VersionKind::uuid: return "uuid";
    case VersionKind::timestamp: return "timestamp";
  }
  return "?";
}

const char* to_string(EnforceMode m) {
  switch (m) {
    case EnforceMode::enforce: return "enforce";
    case EnforceMode::shadow: return "shadow";
  }
  return "?";
}

const char* to_string(VersionBump b) {
  switch (b) {
    case VersionBump::trigger: return "trigger";
    case VersionBump::proxy: return "proxy";
  }
  return "?";
}

const char* to_string(OnConflict c) {
  switch (c) {
    case OnConflict::reject: return "reject";
    case OnConflict::merge: return "merge";
  }
  return "?";
}

namespace {

// PostgreSQL silently truncates longer names, which would then never match the catalog.
constexpr std::size_t max_identifier_bytes = 63;

bool starts_identifier(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80; }
bool continues_identifier(unsigned char c) { return starts_identifier(c) || (c >= '0' && c <= '9') || c == '$'; }

// A SQL name as the DBA would write it in a statement: dot-separated parts, each either quoted
// (kept as written, "" for a quote) or plain (folded to lower case, as the server does).
// Returns the parts in catalog spelling, or an explanation in `problem`.
std::vector<std::string> sql_name_parts(std::string_view text, std::string& problem) {
  std::vector<std::string> parts;
  std::size_t i = 0;
  while (true) {
    std::string part;
    if (i < text.size() && text[i] == '"') {
      ++i;
      while (true) {
        if (i >= text.size()) {
          problem = "unterminated quoted identifier";
          return {};
        }
        if (text[i] == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') {
            part += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        part += text[i++];
      }
      if (part.empty()) {
        problem = "a quoted identifier cannot be empty";
        return {};
      }
    } else {
      if (i >= text.size() || !starts_identifier(static_cast<unsigned char>(text[i]))) {
        problem = "expected a name starting with a letter or _ (quote other names: \"Name\")";
        return {};
      }
      while (i < text.size() && continues_identifier(static_cast<unsigned char>(text[i]))) {
        char c = text[i++];
        part += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
      }
    }
    if (part.size() > max_identifier_bytes) {
      problem = "name part longer than 63 bytes";
      return {};
    }
    parts.push_back(std::move(part));
    if (i == text.size()) return parts;
    if (text[i] != '.') {
      problem = "unexpected character '" + std::string(1, text[i]) + "' (quote names with special characters)";
      return {};
    }
    ++i;
  }
}

std::string quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

struct PolicyReader {
  const YamlReader& yaml;

  // One unqualified SQL name (a column or a role) in catalog spelling.
  std::string name(const YamlReader::Entry& e, const YAML::Node& at, const std::string& text) const {
    std::string problem;
    auto parts = sql_name_parts(text, problem);
    if (parts.size() > 1) problem = "expected a single name, not a qualified name";
    if (!problem.empty()) yaml.fail(at, e.path, "bad name " + quoted(text) + ": " + problem);
    return parts.front();
  }

  std::vector<std::string> name_list(const YamlReader::Entry& e) const {
    std::vector<std::string> out;
    auto texts = yaml.string_list(e);
    for (std::size_t i = 0; i < texts.size(); ++i) {
      std::string folded = name(e, e.value[i], texts[i]);
      if (std::find(out.begin(), out.end(), folded) != out.end()) {
        yaml.fail(e.value[i], e.path, folded + " is listed twice");
      }
      out.push_back(std::move(folded));
    }
    return out;
  }

  // One defaults key on `p`; the same keys may appear in a table entry to override.
  void apply(TablePolicy& p, const YamlReader::Entry& e) const {
    if (e.key == "version_column") {
      p.version_column = name(e, e.key_node, yaml.string(e));
    } else if (e.key == "version_kind") {
      auto v = yaml.choice(e, {"counter", "uuid", "timestamp"});
      p.version_kind = v == "counter" ? VersionKind::counter : v == "uuid" ? VersionKind::uuid : VersionKind::timestamp;
    } else if (e.key == "on_unknown_version") {
      p.reject_unknown_version = yaml.choice(e, {"allow", "reject"}) == "reject";
    } else if (e.key == "app_managed_version") {
      p.enforce_app_managed = yaml.choice(e, {"passthrough", "enforce"}) == "enforce";
    } else if (e.key == "check_deletes") {
      p.check_deletes = yaml.boolean(e);
    } else if (e.key == "mode") {
      p.mode = yaml.choice(e, {"enforce", "shadow"}) == "shadow" ? EnforceMode::shadow : EnforceMode::enforce;
    } else if (e.key == "version_bump") {
      p.version_bump = yaml.choice(e, {"trigger", "proxy"}) == "proxy" ? VersionBump::proxy : VersionBump::trigger;
    } else if (e.key == "on_unsupported") {
      p.reject_unsupported = yaml.choice(e, {"passthrough", "reject"}) == "reject";
    } else if (e.key == "conflict_sqlstate") {
      p.conflict_sqlstate = sqlstate(e);
    } else if (e.key == "read_ttl") {
      p.read_ttl = yaml.duration(e, false);
    } else if (e.key == "force") {
      for (const auto& f : yaml.entries(e.value, e.path, {"allowed_roles"})) p.force_roles = name_list(f);
    } else if (e.key == "redact") {
      p.redact = name_list(e);
    } else if (e.key == "on_conflict") {
      p.on_conflict = yaml.choice(e, {"reject", "merge"}) == "merge" ? OnConflict::merge : OnConflict::reject;
    } else if (e.key == "track_writer") {
      p.track_writer = yaml.boolean(e);
    }
  }

  std::string sqlstate(const YamlReader::Entry& e) const {
    std::string s = yaml.string(e);
    bool well_formed = s.size() == 5 && std::all_of(s.begin(), s.end(), [](char c) {
      return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
    });
    if (!well_formed) yaml.fail(e.key_node, e.path, "expected 5 characters from 0-9 and A-Z, got " + quoted(s));
    // Classes 00, 01 and 02 are success, warning and no-data: the client would not see a failure.
    if (s.starts_with("00") || s.starts_with("01") || s.starts_with("02")) {
      yaml.fail(e.key_node, e.path, "class " + s.substr(0, 2) + " is not an error class, got " + quoted(s));
    }
    return s;
  }
};

const std::vector<std::string_view> policy_keys{
    "version_column", "version_kind", "on_unknown_version", "app_managed_version", "check_deletes", "mode",
    "version_bump",   "on_unsupported", "conflict_sqlstate", "read_ttl",        "force",         "redact",
    "on_conflict",    "track_writer"};

std::vector<std::string_view> table_keys() {
  std::vector<std::string_view> keys{"table", "key"};
  keys.insert(keys.end(), policy_keys.begin(), policy_keys.end());
  return keys;
}

// Without a timeout, a query may run until its next run is due, and at most this long.
constexpr std::chrono::milliseconds kDefaultInvariantTimeout{30'000};

// Names become Prometheus label values and log words: keep them plain.
bool plain_name(std::string_view name) {
  return !name.empty() && name.size() <= 100 && std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
  });
}

std::vector<Invariant> parse_invariants(const YamlReader& yaml, const YamlReader::Entry& section) {
  std::vector<Invariant> out;
  std::map<std::string, int> first_line;
  const YAML::Node& items = yaml.list(section);
  for (std::size_t i = 0; i < items.size(); ++i) {
    const YAML::Node item = items[i];
    const std::string path = "invariants[" + std::to_string(i) + "]";
    Invariant inv;
    bool have_interval = false;
    bool have_timeout = false;
    YAML::Node name_at, timeout_at;
    for (const auto& e : yaml.entries(item, path, {"name", "query", "interval", "timeout"})) {
      if (e.key == "name") {
        name_at = e.key_node;
        inv.name = yaml.string(e);
        if (!plain_name(inv.name))
          yaml.fail(e.key_node, e.path, "use letters, digits, '_', '-' and '.' only (at most 100), got " + quoted(inv.name));
      } else if (e.key == "query") {
        inv.query = yaml.string(e);
        if (inv.query.find_first_not_of(" \t\r\n") == std::string::npos)
          yaml.fail(e.key_node, e.path, "is empty; give a SELECT that returns the rows violating the invariant");
      } else if (e.key == "interval") {
        inv.interval = yaml.duration(e, false);
        have_interval = true;
      } else {
        timeout_at = e.key_node;
        inv.timeout = yaml.duration(e, false);
        have_timeout = true;
      }
    }
    if (inv.name.empty()) yaml.fail(item, path, "missing required key `name`");
    if (inv.query.empty()) yaml.fail(item, path, "missing required key `query` (a SELECT returning the violating rows)");
    if (!have_interval) yaml.fail(item, path, "missing required key `interval` (how often to run it, e.g. 1m)");
    if (!have_timeout) inv.timeout = std::min(inv.interval, kDefaultInvariantTimeout);
    if (inv.timeout > inv.interval)
      yaml.fail(timeout_at, path + ".timeout", "is longer than the interval; a run must end before the next is due");
    const int line = name_at.Mark().line + 1;
    auto [seen, inserted] = first_line.emplace(inv.name, line);
    if (!inserted)
      yaml.fail(name_at, path + ".name",
                inv.name + " is listed twice (first on line " + std::to_string(seen->second) + ")");
    out.push_back(std::move(inv));
  }
  return out;
}

Rules parse(const YamlReader& yaml) {
  const PolicyReader reader{yaml};
  TablePolicy defaults;
  std::optional<YAML::Node> tables;
  std::vector<Invariant> invariants;
  for (const auto& e : yaml.entries(yaml.root(), "", {"defaults", "tables", "invariants"})) {
    if (e.key == "defaults") {
      for (const auto& d : yaml.entries(e.value, e.path, policy_keys)) reader.apply(defaults, d);
    } else if (e.key == "tables") {
      tables.emplace(yaml.list(e));
    } else {
      invariants = parse_invariants(yaml, e);
    }
  }

  Rules rules;
  const auto known_table_keys = table_keys();
  std::map<std::pair<std::string, std::string>, int> first_line;
  for (std::size_t i = 0; tables && i < tables->size(); ++i) {
    const YAML::Node item = (*tables)[i];
    const std::string path = "tables[" + std::to_string(i) + "]";
    TablePolicy policy = defaults;
    const YamlReader::Entry* table_entry = nullptr;
    const YamlReader::Entry* key_entry = nullptr;
    const auto entries = yaml.entries(item, path, known_table_keys);
    for (const auto& e : entries) {
      if (e.key == "table") {
        table_entry = &e;
      } else if (e.key == "key") {
        key_entry = &e;
      } else {
        reader.apply(policy, e);
      }
    }
    if (!table_entry) yaml.fail(item, path, "missing required key `table` (schema.name)");
    if (!key_entry) yaml.fail(item, path, "missing required key `key` (the row's key columns, e.g. [id])");

    const std::string text = yaml.string(*table_entry);
    std::string problem;
    auto parts = sql_name_parts(text, problem);
    if (problem.empty() && parts.size() > 2) problem = "expected name or schema.name";
    if (!problem.empty()) yaml.fail(table_entry->key_node, table_entry->path, "bad table name " + quoted(text) + ": " + problem);
    policy.schema = parts.size() == 2 ? parts[0] : "public";
    policy.name = parts.back();

    policy.key = reader.name_list(*key_entry);
    for (const std::string_view own : {kModifiedByColumn, kModifiedAtColumn}) {
      if (policy.track_writer && (policy.version_column == own ||
                                  std::find(policy.key.begin(), policy.key.end(), own) != policy.key.end()))
        yaml.fail(key_entry->key_node, key_entry->path,
                  std::string(own) + " is kept by track_writer and cannot be the version or a key column");
    }
    if (policy.key.empty()) yaml.fail(key_entry->key_node, key_entry->path, "must name at least one column");
    if (std::find(policy.key.begin(), policy.key.end(), policy.version_column) != policy.key.end()) {
      yaml.fail(key_entry->key_node, key_entry->path,
                "the version column " + policy.version_column + " cannot be part of the key");
    }

    const int line = table_entry->key_node.Mark().line + 1;
    auto [seen, inserted] = first_line.emplace(std::make_pair(policy.schema, policy.name), line);
    if (!inserted) {
      yaml.fail(table_entry->key_node, table_entry->path,
                policy.qualified_name() + " is listed twice (first on line " + std::to_string(seen->second) + ")");
    }
    rules.tables.push_back(std::move(policy));
  }
  rules.invariants = std::move(invariants);
  return rules;
}

std::atomic<RulesPtr>& rules_in_force() {
  static std::atomic<RulesPtr> rules{std::make_shared<const Rules>()};
  return rules;
}

}  // namespace

Rules parse_rules(const std::string& yaml_text, const std::string& file_name_for_errors) {
  try {
    Rules rules = parse(YamlReader(file_name_for_errors, yaml_text));
    rules.path = file_name_for_errors;
    rules.loaded_at = std::chrono::system_clock::now();
    return rules;
  } catch (const YamlError& e) {
    throw RulesError(e.what());
  }
}

Rules load_rules(const std::string& path) {
  std::string text;
  try {
    text = read_text_file(path, "rules file");
  } catch (const YamlError& e) {
    throw RulesError(e.what());
  }
  return parse_rules(text, path);
}

RulesPtr current_rules() noexcept { return rules_in_force().load(); }

void set_current_rules(RulesPtr rules) noexcept {
  // Readers never see null: no rules means no protected table.
  if (!rules) rules = std::make_shared<const Rules>();
  rules_in_force().store(std::move(rules));
}

}  // namespace occ
