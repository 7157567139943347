// rewrite_sql: resolves each write of the cached analysis to its protected table and splices in the check.
#include "rules/rewrite.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>

#include "rules/plan_cache.h"
#include "rules/sql_analysis.h"

namespace occ {
namespace {

// Replace [begin, end) of the original text by `text` (begin == end: insert).
struct Edit {
  int begin = 0;
  int end = 0;
  std::string text;
};

// Characters that would fuse with a neighbour into one token: `WHERE` + `TRUE` must not become
// `WHERETRUE`, nor `TRUE` + `'x'` a typed literal.
bool joins(char ch) {
  const auto u = static_cast<unsigned char>(ch);
  return std::isalnum(u) || ch == '_' || ch == '$' || ch == '"' || ch == '\'' || u >= 0x80;
}

// `range` of `sql` with the edits that fall inside it applied. The edits of one statement never
// overlap (each write's regions are disjoint); one that would is dropped, not spliced across.
std::string splice(std::string_view sql, TextRange range, std::vector<Edit> edits) {
  std::stable_sort(edits.begin(), edits.end(),
                   [](const Edit& a, const Edit& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  std::string out;
  std::size_t size = static_cast<std::size_t>(range.end - range.begin) + 2 * edits.size();
  for (const Edit& e : edits) size += e.text.size();
  out.reserve(size);
  int at = range.begin;
  for (const Edit& e : edits) {
    if (e.begin < at || e.end > range.end) continue;
    out.append(sql.substr(static_cast<std::size_t>(at), static_cast<std::size_t>(e.begin - at)));
    if (!out.empty() && !e.text.empty() && joins(out.back()) && joins(e.text.front())) out += ' ';
    out += e.text;
    at = e.end;
    if (at < range.end && !e.text.empty() && joins(e.text.back()) && joins(sql[static_cast<std::size_t>(at)]))
      out += ' ';
  }
  out.append(sql.substr(static_cast<std::size_t>(at), static_cast<std::size_t>(range.end - at)));
  return out;
}

// A string literal that reads back as `s` whatever standard_conforming_strings is.
std::string literal(std::string_view s) {
  const bool backslash = s.find('\\') != std::string_view::npos;
  std::string out = backslash ? "E'" : "'";
  for (char ch : s) {
    if (ch == '\'' || (backslash && ch == '\\')) out += ch;
    out += ch;
  }
  out += '\'';
  return out;
}

// `text` dollar-quoted with a tag that does not occur in it.
std::string dollar_quoted(const std::string& text) {
  std::string tag = "occ";
  for (int n = 1; text.find("$" + tag + "$") != std::string::npos || text.ends_with("$" + tag); ++n)
    tag = "occ" + std::to_string(n);
  return "$" + tag + "$" + text + "$" + tag + "$";
}

// `s` as a JSON string. Written by hand: this runs for every checked statement, and a
// nlohmann document costs several times more than the text itself.
void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20) {
      out += "\\u00";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += ch;
    }
  }
  out += '"';
}

// What occ.conflict / occ.forced need to know about the table (migrations/001_occ_schema.sql).
std::string meta_json(const TablePolicy& p, bool deletes) {
  std::string out = "{\"schema\":";
  append_json_string(out, p.schema);
  out += ",\"table\":";
  append_json_string(out, p.name);
  out += ",\"key\":[";
  for (std::size_t i = 0; i < p.key.size(); ++i) {
    if (i > 0) out += ',';
    append_json_string(out, p.key[i]);
  }
  out += "],\"version_column\":";
  append_json_string(out, p.version_column);
  out += ",\"sqlstate\":";
  append_json_string(out, p.conflict_sqlstate);
  out += ",\"mode\":";
  append_json_string(out, to_string(p.mode));
  if (!p.redact.empty()) {
    // The events also reach the server log: redacted values must not.
    out += ",\"redact\":[";
    for (std::size_t i = 0; i < p.redact.size(); ++i) {
      if (i > 0) out += ',';
      append_json_string(out, p.redact[i]);
    }
    out += ']';
  }
  out += deletes ? R"(,"op":"delete","base":null})" : R"(,"op":"update","base":null})";
  return out;
}

// The version a written row gets when the proxy, not the trigger, advances it.
std::string proxy_bump(const TablePolicy& p, const std::string& version_ref) {
  switch (p.version_kind) {
    case VersionKind::uuid:
      return "gen_random_uuid()";
    case VersionKind::timestamp:
      return "clock_timestamp()";
    case VersionKind::counter:
      break;
  }
  return version_ref + " + 1";
}

Rejection force_refusal(const TablePolicy& p, std::string_view user) {
  return Rejection{"42501",
                   "occ: role \"" + std::string(user) + "\" may not force writes to " + p.qualified_name(),
                   "Only roles listed in force.allowed_roles may override the version check; nothing was written.",
                   "Remove the /*occ:force*/ comment to write with the version check.",
                   p.schema,
                   p.name};
}

Rejection unsupported_refusal(const TablePolicy& p, const std::string& form) {
  return Rejection{"0A000",
                   "occ: unsupported write on " + p.qualified_name() + ": " + form,
                   "The proxy cannot add its version check to this form of statement and on_unsupported is reject "
                   "for this table; nothing was written.",
                   "Rewrite the statement in a supported form, or set on_unsupported: passthrough for this table.",
                   p.schema,
                   p.name};
}

// The statement that makes the server raise `r` where the refused statement stood.
std::string rejection_sql(const Rejection& r) {
  return "SELECT occ.reject(" + literal(r.sqlstate) + ", " + literal(r.message) + ", " + literal(r.detail) + ", " +
         literal(r.hint) + ", " + literal(r.schema) + ", " + literal(r.table) + ")";
}

// What one write on a protected table turns into.
struct SitePlan {
  enum class Kind { untouched, edited, unsupported, refused };
  Kind kind = Kind::untouched;
  const TablePolicy* table = nullptr;
  std::vector<Edit> edits;
  std::optional<WriteInfo> write;
  std::string form;  // unsupported: which form, for the log and the refusal
  Rejection rejection;
};

class SitePlanner {
 public:
  SitePlanner(std::string_view sql, const StatementAnalysis& st, const WriteSite& site, const TablePolicy& p)
      : sql_(sql), st_(st), site_(site), p_(p) {
    plan_.table = &p;
  }

  SitePlan plan(std::string_view user) {
    if (st_.force_hint && !p_.may_force(user)) return refused(force_refusal(p_, user));
    const bool deletes = site_.deletes();
    if (deletes && !p_.check_deletes) return std::move(plan_);
    const VersionFacts* facts = site_.facts(p_.version_column);
    const SetItem* own = deletes ? nullptr : site_.assignment(p_.version_column);
    const std::string version = quote_identifier(p_.version_column);
    const std::string ref = quote_identifier(site_.refname);
    const std::string version_ref = ref + "." + version;

    // Where the expected version comes from (SPEC 3.2): a force hint means none is checked; else
    // the statement's own `version = <constant or parameter>` under app_managed_version: enforce.
    // It is an SQL expression, so a per-row one (the session's read set) can take its place.
    // Under enforce that conjunct is the proxy's check, so it gives way to TRUE (a stale version
    // must reach the check, and a force must override it); under passthrough it is the app's own.
    std::string expected;
    const bool app_managed =
        facts != nullptr && (facts->condition.kind != VersionUse::Kind::none || facts->in_join_condition);
    if (app_managed && p_.enforce_app_managed) {
      if (facts->in_join_condition) return unsupported("the version column in MERGE's join condition");
      if (facts->condition.kind == VersionUse::Kind::other)
        return unsupported("a version condition other than one top-level `version = constant or parameter` conjunct");
      if (!st_.force_hint) expected = facts->condition.expected;
      edits_.push_back({facts->condition.conjunct.begin, facts->condition.conjunct.end, "TRUE"});
    } else if (!st_.force_hint) {
      // Nothing to check: at most the proxy's own increment.
      if (deletes || p_.version_bump != VersionBump::proxy || own != nullptr) return std::move(plan_);
      if (!site_.unlocatable.empty())
        return unsupported("statement text the proxy could not locate (" + site_.unlocatable + ")");
      return edited(
          {site_.set_keyword_end, site_.set_keyword_end, " " + version + " = " + proxy_bump(p_, version_ref) + ","},
          false);
    }
    if (!site_.unlocatable.empty())
      return unsupported("statement text the proxy could not locate (" + site_.unlocatable + ")");

    const std::string meta = dollar_quoted(meta_json(p_, deletes));
    const std::string row = "to_jsonb(" + ref + ".*)";
    const std::string forced_call = "occ.forced(" + version_ref + ", " + row + ", " + meta;
    const std::string matches = version_ref + " = " + expected;
    auto conflict_call = [&](const std::string& next) {
      return "occ.conflict(" + version_ref + ", " + expected + ", " + next + ", " + row + ", " + meta + ")";
    };

    if (!deletes) {
      std::string next;
      if (own != nullptr) {
        if (own->row_wise) return unsupported("a row-wise SET (..., version) = ... of the version column");
        if (own->subscripted) return unsupported("an assignment to a subscript or field of the version column");
        if (own->is_default) return unsupported("SET version = DEFAULT");
        next = own->value;
      } else {
        next = p_.version_bump == VersionBump::trigger ? version_ref : proxy_bump(p_, version_ref);
      }
      std::string value;
      if (st_.force_hint)
        value = own == nullptr && p_.version_bump == VersionBump::trigger ? forced_call + ")"
                                                                          : forced_call + ", " + next + ")";
      else
        value = "CASE WHEN " + matches + " THEN " + next + " ELSE " + conflict_call(next) + " END";
      if (own != nullptr) return edited({own->item.begin, own->item.end, version + " = " + value}, true);
      return edited({site_.set_keyword_end, site_.set_keyword_end, " " + version + " = " + value + ","}, true);
    }

    if (site_.current_of) return unsupported("DELETE ... WHERE CURRENT OF");
    // The guard must not raise for a row the rest of the condition excludes, whatever order the
    // planner evaluates conjuncts in: hence the condition is repeated in front of the check.
    const std::string when_matches = st_.force_hint ? "" : "WHEN " + matches + " THEN true ";
    const std::string otherwise = (st_.force_hint ? forced_call + ")" : conflict_call(version_ref)) + " IS NOT NULL";
    if (site_.has_condition) {
      const TextRange cond = site_.condition;
      const std::string guard = "CASE WHEN (" + splice(sql_, cond, edits_) + ") IS NOT TRUE THEN false " +
                                when_matches + "ELSE " + otherwise + " END";
      if (site_.condition_is_or) edits_.push_back({cond.begin, cond.begin, "("});
      return edited({cond.end, cond.end, std::string(site_.condition_is_or ? ")" : "") + " AND (" + guard + ")"}, true);
    }
    const std::string guard = st_.force_hint ? otherwise : "CASE " + when_matches + "ELSE " + otherwise + " END";
    const int at = site_.condition_insert_at;
    return edited({at, at, site_.kind == WriteKind::delete_ ? " WHERE " + guard : " AND (" + guard + ")"}, true);
  }

 private:
  SitePlan refused(Rejection r) {
    plan_.kind = SitePlan::Kind::refused;
    plan_.rejection = std::move(r);
    return std::move(plan_);
  }

  SitePlan unsupported(std::string form) {
    plan_.kind = SitePlan::Kind::unsupported;
    plan_.form = std::move(form);
    return std::move(plan_);
  }

  SitePlan edited(Edit last, bool checked) {
    edits_.push_back(std::move(last));
    plan_.kind = SitePlan::Kind::edited;
    plan_.edits = std::move(edits_);
    if (checked) {
      WriteInfo info;
      info.table = &p_;
      info.fingerprint = st_.fingerprint;
      info.forced = st_.force_hint;
      for (const SetItem& item : site_.set_items) info.assigned.emplace_back(item.column, item.value);
      plan_.write = std::move(info);
    }
    return std::move(plan_);
  }

  std::string_view sql_;
  const StatementAnalysis& st_;
  const WriteSite& site_;
  const TablePolicy& p_;
  SitePlan plan_;
  std::vector<Edit> edits_;
};

// The search_path in force after `SET search_path`, as the session would substitute it.
std::vector<std::string> effective_path(const SearchPathChange& change, std::string_view user) {
  // RESET and DEFAULT: the server's default, "$user", public.
  std::vector<std::string> path = change ? *change : std::vector<std::string>{"$user", "public"};
  for (std::string& schema : path)
    if (schema == "$user") schema = std::string(user);
  return path;
}

}  // namespace

bool may_need_rewrite(std::string_view sql, const Rules& rules) {
  auto lower = [](char ch) { return ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch; };
  auto same_word = [&](std::string_view word, std::string_view name, bool fold) {
    if (word.size() != name.size()) return false;
    for (std::size_t i = 0; i < word.size(); ++i)
      if ((fold ? lower(word[i]) : word[i]) != name[i]) return false;
    return true;
  };
  // search_path also changes with RESET ALL and DISCARD ALL.
  static constexpr std::string_view always[] = {"search_path", "reset", "discard"};
  auto wanted = [&](std::string_view word, bool quoted) {
    for (std::string_view w : always)
      if (same_word(word, w, !quoted)) return true;
    for (const TablePolicy& p : rules.tables)
      if (same_word(word, p.name, !quoted)) return true;
    return false;
  };
  auto ident_char = [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '$' ||
           static_cast<unsigned char>(ch) >= 0x80;
  };
  std::size_t i = 0;
  while (i < sql.size()) {
    const char ch = sql[i];
    if (ch == '"') {
      std::string word;
      std::size_t j = i + 1;
      for (; j < sql.size(); ++j) {
        if (sql[j] != '"') {
          word += sql[j];
        } else if (j + 1 < sql.size() && sql[j + 1] == '"') {
          word += '"';
          ++j;
        } else {
          break;
        }
      }
      // U&"..." spells a name with escapes this scan does not decode.
      if (i >= 2 && sql[i - 1] == '&' && (sql[i - 2] == 'u' || sql[i - 2] == 'U')) return true;
      if (wanted(word, true)) return true;
      i = j + 1;
    } else if (ident_char(ch)) {
      std::size_t j = i;
      while (j < sql.size() && ident_char(sql[j])) ++j;
      if (wanted(sql.substr(i, j - i), false)) return true;
      i = j;
    } else {
      ++i;
    }
  }
  return false;
}

Rewrite rewrite_sql(std::string_view sql, bool extended_protocol, const SessionView& session, PlanCache& cache) {
  Rewrite out;
  const std::shared_ptr<const SqlAnalysis> analysis = cache.analysis(sql, session.rules);
  if (analysis->parse_failed) {
    out.parse_failed = true;
    return out;
  }
  std::optional<std::vector<std::string>> path_in_text;  // after a SET search_path earlier in this text
  std::vector<Edit> edits;
  for (const StatementAnalysis& st : analysis->statements) {
    const std::vector<std::string>& path = path_in_text ? *path_in_text : session.search_path;
    std::vector<SitePlan> plans;
    for (const WriteSite& site : st.writes) {
      const std::optional<std::string> schema =
          site.schema.empty() ? session.relations.resolve(site.name, path, session.rules) : site.schema;
      const TablePolicy* p = schema ? session.rules.find(*schema, site.name) : nullptr;
      if (p != nullptr) plans.push_back(SitePlanner(sql, st, site, *p).plan(session.user));
    }

    std::optional<Rejection> refusal;
    bool passed_unchanged = false;
    for (const SitePlan& plan : plans) {
      if (plan.kind == SitePlan::Kind::refused && !refusal) refusal = plan.rejection;
    }
    for (const SitePlan& plan : plans) {
      if (plan.kind != SitePlan::Kind::unsupported || refusal) continue;
      if (plan.table->reject_unsupported) {
        refusal = unsupported_refusal(*plan.table, plan.form);
      } else {
        passed_unchanged = true;
      }
    }
    if (refusal) {
      if (extended_protocol) {
        Rewrite rejected;
        rejected.action = Rewrite::Action::reject;
        rejected.rejection = std::move(refusal);
        return rejected;
      }
      edits.push_back({st.first_token, st.range.end, rejection_sql(*refusal)});
      if (!out.rejection) out.rejection = std::move(refusal);
    } else if (passed_unchanged) {
      for (const SitePlan& plan : plans) {
        if (plan.kind != SitePlan::Kind::unsupported) continue;
        ++out.unsupported_passed;
        spdlog::warn("occ: {} on {} is not supported; statement forwarded unchanged (on_unsupported: passthrough)",
                     plan.form, plan.table->qualified_name());
      }
    } else {
      for (SitePlan& plan : plans) {
        edits.insert(edits.end(), plan.edits.begin(), plan.edits.end());
        if (plan.write) out.writes.push_back(std::move(*plan.write));
      }
    }

    if (st.search_path_change) {
      out.search_path_change = *st.search_path_change;
      path_in_text = effective_path(*st.search_path_change, session.user);
    }
  }
  if (!edits.empty()) {
    out.action = Rewrite::Action::rewrite;
    out.sql = splice(sql, TextRange{0, static_cast<int>(sql.size())}, std::move(edits));
  }
  return out;
}

}  // namespace occ
