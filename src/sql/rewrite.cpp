// rewrite_sql: resolves each write of the cached analysis to its protected table and splices in the check.
#include "sql/rewrite.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>

#include "sql/helper_contract.h"
#include "sql/json_text.h"
#include "sql/plan_cache.h"
#include "sql/sql_analysis.h"
#include "sql/sql_lexer.h"

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
// Characters as PostgreSQL counts them in UTF-8: every byte but continuation bytes.
int characters(std::string_view text) {
  int n = 0;
  for (char ch : text) n += (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
  return n;
}

// `range` of `sql` with `edits` applied; with `shifts`, also where each applied edit moved the text
// (positions counted from the start of `sql`).
std::string splice(std::string_view sql, TextRange range, std::vector<Edit> edits,
                   std::vector<TextShift>* shifts = nullptr) {
  std::stable_sort(edits.begin(), edits.end(),
                   [](const Edit& a, const Edit& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  std::string out;
  std::size_t size = static_cast<std::size_t>(range.end - range.begin) + 2 * edits.size();
  for (const Edit& e : edits) size += e.text.size();
  out.reserve(size);
  int at = range.begin;
  int at_character = shifts ? characters(sql.substr(0, static_cast<std::size_t>(at))) : 0;
  for (const Edit& e : edits) {
    if (e.begin < at || e.end > range.end) continue;
    const std::string_view kept = sql.substr(static_cast<std::size_t>(at), static_cast<std::size_t>(e.begin - at));
    out.append(kept);
    const std::size_t inserted_from = out.size();
    if (!out.empty() && !e.text.empty() && joins(out.back()) && joins(e.text.front())) out += ' ';
    out += e.text;
    at = e.end;
    if (at < range.end && !e.text.empty() && joins(e.text.back()) && joins(sql[static_cast<std::size_t>(at)]))
      out += ' ';
    if (shifts) {
      at_character += characters(kept);
      const int removed = characters(sql.substr(static_cast<std::size_t>(e.begin), static_cast<std::size_t>(e.end - e.begin)));
      shifts->push_back({at_character, removed, characters(std::string_view(out).substr(inserted_from))});
      at_character += removed;
    }
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

// What occ.conflict / occ.forced need to know about the table (migrations/001_occ_schema.sql);
// `read`: what the session read of the row (a JSON object), when the statement carries it here.
std::string meta_json(const TablePolicy& p, bool deletes, std::string_view read = {}) {
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
  if (p.track_writer) out += R"(,"track_writer":true)";
  out += deletes ? R"(,"op":"delete","base":)" : R"(,"op":"update","base":)";
  // An empty read says nothing about the columns: the DETAIL then names the expected version.
  out += read.empty() || read == "{}" ? "null" : read;
  out += '}';
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

// A built-in SQL type: its name in casts, its OID in a Parse's parameter types.
struct SqlType {
  const char* name;
  int oid;
};
constexpr SqlType kJsonb{"jsonb", 3802};
constexpr SqlType kText{"text", 25};

// The SQL type a version of this kind is compared as.
SqlType version_type(const TablePolicy& p) {
  switch (p.version_kind) {
    case VersionKind::uuid:
      return {"uuid", 2950};
    case VersionKind::timestamp:
      return {"timestamptz", 1184};
    case VersionKind::counter:
      break;
  }
  return {"bigint", 20};
}

// `(ref.k1)::text, (ref.k2)::text`: a row's key as the read set is keyed by it, the way the server
// prints each value whatever format the client asked for.
std::string key_text(const TablePolicy& p, const std::string& ref) {
  std::string out;
  for (const std::string& column : p.key) {
    if (!out.empty()) out += ", ";
    out += "(" + ref + "." + quote_identifier(column) + ")::text";
  }
  return out;
}

// The columns appended to a result so the session learns each row's key and version. In a
// SELECT they are named: `(t.id)::text` would be an output column `id`, and the client's
// `ORDER BY id` ambiguous.
std::string tracked_columns(const TablePolicy& p, const std::string& ref, bool named) {
  if (!named) return key_text(p, ref) + ", (" + ref + "." + quote_identifier(p.version_column) + ")::text";
  std::string out;
  for (const std::string& column : p.key)
    out += "(" + ref + "." + quote_identifier(column) + ")::text AS " + quote_identifier(helpers::kKeyColumn) + ", ";
  return out + "(" + ref + "." + quote_identifier(p.version_column) + ")::text AS " +
         quote_identifier(helpers::kVersionColumn);
}

ResultTracking tracking_of(std::vector<const TablePolicy*> tables) {
  ResultTracking t;
  for (const TablePolicy* p : tables) t.added_columns += static_cast<unsigned>(p->key.size() + 1);
  t.tables = std::move(tables);
  return t;
}

// A key tuple set large enough that listing it costs more than sending every tracked row.
constexpr std::size_t max_pinned_keys = 1000;

// The key tuples the write can touch at most, in the table's key order: every combination of the
// values its condition pins each key column to. Empty: not pinned (every tracked row).
std::vector<std::vector<KeyValue>> pinned_keys(const WriteSite& site, const TablePolicy& p) {
  auto same_set = [](std::vector<std::string> a, std::vector<std::string> b) {
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    return a == b;
  };
  // An upsert's VALUES name the rows DO UPDATE writes only when the conflict is on the key.
  const bool inserted = site.kind == WriteKind::upsert && same_set(site.conflict_columns, p.key);
  std::vector<std::vector<KeyValue>> tuples{{}};
  for (const std::string& column : p.key) {
    auto named = [&column](const KeyPin& pin) { return pin.column == column; };
    const KeyPin* pin = nullptr;
    if (auto it = std::find_if(site.pins.begin(), site.pins.end(), named); it != site.pins.end())
      pin = &*it;
    else if (auto in = std::find_if(site.inserted_pins.begin(), site.inserted_pins.end(), named);
             inserted && in != site.inserted_pins.end())
      pin = &*in;
    if (pin == nullptr || tuples.size() * pin->values.size() > max_pinned_keys) return {};
    std::vector<std::vector<KeyValue>> longer;
    for (const std::vector<KeyValue>& tuple : tuples) {
      for (const KeyValue& value : pin->values) {
        longer.push_back(tuple);
        longer.back().push_back(value);
      }
    }
    tuples = std::move(longer);
  }
  return tuples;
}

// What a write needs from the session: its read set, and in the extended protocol the parameters
// that carry it (numbered on from `next_param`; dropped by the caller if the write is not edited).
struct ReadAccess {
  const ReadSetLookup* reads = nullptr;
  bool extended = false;
  int next_param = 0;
  std::vector<ExpectedParam>* params = nullptr;
  bool prepared = false;  // the parameters are an SQL-level PREPARE's, filled at each EXECUTE
};

// What one write on a protected table turns into.
struct SitePlan {
  enum class Kind { untouched, edited, unsupported, refused };
  Kind kind = Kind::untouched;
  const TablePolicy* table = nullptr;
  std::vector<Edit> edits;
  std::optional<WriteInfo> write;
  std::string form;  // unsupported: which form, for the log and the refusal
  Rejection rejection;
  std::optional<CheckedRowWrite> row_write;  // edited: the session learns the new version from the tag
};

class SitePlanner {
 public:
  // `view`: the write goes through that view of `p`, whose columns keep the table's names.
  SitePlanner(std::string_view sql, const StatementAnalysis& st, const WriteSite& site, const TablePolicy& p,
              const ProtectedView* view, ReadAccess& access)
      : sql_(sql), st_(st), site_(site), p_(p), view_(view), access_(access) {
    plan_.table = &p;
  }

  SitePlan plan(std::string_view user) {
    if (st_.force_hint && !p_.may_force(user)) return refused(force_refusal(p_, user));
    const bool deletes = site_.deletes();
    if (deletes && !p_.check_deletes) return std::move(plan_);
    if (view_ != nullptr && !view_->unsupported.empty())
      return unsupported("a write through view " + view_->qualified_name() + " (" + view_->unsupported + ")");
    if (view_ != nullptr && !view_->unsupported_write.empty())
      return unsupported("a write through view " + view_->qualified_name() + " (" + view_->unsupported_write + ")");
    const VersionFacts* facts = site_.facts(p_.version_column);
    const SetItem* own = deletes ? nullptr : site_.assignment(p_.version_column);
    const std::string version = quote_identifier(p_.version_column);
    const std::string ref = quote_identifier(site_.refname);
    const std::string version_ref = ref + "." + version;

    // Where the expected version comes from (SPEC 3.2): a force hint means none is checked; else
    // the statement's own `version = <constant or parameter>` under app_managed_version: enforce;
    // else the session's read set (NULL: never read).
    // Under enforce the statement's conjunct is the proxy's check, so it gives way to TRUE (a stale
    // version must reach the check, and a force must override it); under passthrough it is the
    // app's own. `base` is what the session read of the row, for the conflict's DETAIL and diff.
    std::string expected;
    std::string base;  // SQL text or jsonb, passed to occ.conflict on its own
    std::string read;  // JSON text, carried in the meta instead
    bool per_row = false;
    const bool app_managed =
        facts != nullptr && (facts->condition.kind != VersionUse::Kind::none || facts->in_join_condition);
    // A write an SQL-level PREPARE prepares is checked against the read set where one pinned row's
    // command tag tells the version written: each EXECUTE then supplies the version read.
    const bool prepared_check = site_.prepared_body && access_.prepared && !app_managed &&
                                pinned_keys(site_, p_).size() == 1 && tag_tells_version(own);
    const bool reads = access_.reads != nullptr && (!site_.deferred || prepared_check);
    // Nothing to check: at most the proxy's own increment.
    auto unchecked = [&]() -> SitePlan {
      if (deletes || p_.version_bump != VersionBump::proxy || own != nullptr) return std::move(plan_);
      if (!site_.unlocatable.empty())
        return unsupported("statement text the proxy could not locate (" + site_.unlocatable + ")");
      return edited(
          {site_.set_keyword_end, site_.set_keyword_end, " " + version + " = " + proxy_bump(p_, version_ref) + ","},
          false);
    };
    if (app_managed && p_.enforce_app_managed) {
      if (facts->in_join_condition) return unsupported("the version column in MERGE's join condition");
      if (facts->condition.kind == VersionUse::Kind::other)
        return unsupported("a version condition other than one top-level `version = constant or parameter` conjunct");
      if (!st_.force_hint) expected = facts->condition.expected;
      if (!st_.force_hint && reads && site_.unlocatable.empty()) {
        ReadCheck check = read_check(false);
        base = std::move(check.base);
        read = std::move(check.read);
      }
      edits_.push_back({facts->condition.conjunct.begin, facts->condition.conjunct.end, "TRUE"});
    } else if (!st_.force_hint && reads && !app_managed) {
      if (!site_.unlocatable.empty())
        return unsupported("statement text the proxy could not locate (" + site_.unlocatable + ")");
      ReadCheck check = read_check(true);
      if (check.never_read && !p_.reject_unknown_version) return unchecked();
      if (check.pinned && tag_tells_version(own))
        row_write_ = CheckedRowWrite{&p_, deletes, std::move(check.key), std::move(check.version), check.version_param};
      expected = std::move(check.expected);
      base = std::move(check.base);
      read = std::move(check.read);
      per_row = check.per_row;
    } else if (!st_.force_hint) {
      return unchecked();
    }
    if (!site_.unlocatable.empty())
      return unsupported("statement text the proxy could not locate (" + site_.unlocatable + ")");

    const std::string meta = dollar_quoted(meta_json(p_, deletes, read));
    const std::string row = "to_jsonb(" + ref + ".*)";
    const std::string forced_call = std::string(helpers::kForced) + "(" + version_ref + ", " + row + ", " + meta;
    const std::string matches = version_ref + " = " + expected;
    // The session's own earlier write of this row in the same transaction (a batch, a function):
    // not a conflict, whatever version the proxy expected (migrations/005_own_writes.sql). A view
    // has no xmin: the table's row is found by the key the view shows (008_view_writes.sql).
    const std::string written_here =
        view_ == nullptr
            ? std::string(helpers::kWrittenHere) + "(" + ref + ".xmin, " + version_ref + ")"
            : std::string(helpers::kWrittenHereIn) + "(" +
                  literal(quote_identifier(p_.schema) + "." + quote_identifier(p_.name)) + "::regclass, " +
                  key_object(ref) + ", " + version_ref + ")";
    // MERGE's WHEN conditions cannot read system columns: its DELETE keeps the plain check.
    const bool sees_writer = site_.kind != WriteKind::merge_delete;
    // The read is merged into the meta only when there is a conflict: the common path stays cheap.
    auto conflict_call = [&](const std::string& next) {
      return std::string(helpers::kConflict) + "(" + version_ref + ", " + expected + ", " + next + ", " + row + ", " + meta +
             (base.empty() ? "" : ", " + base) + ")";
    };
    // A row the session never read (on_unknown_version): written as usual, or refused unless the
    // session's own transaction wrote it.
    auto unknown = [&](const std::string& next) {
      if (!p_.reject_unknown_version) return next;
      const std::string refusal = std::string(helpers::kUnknownVersion) + "(" + version_ref + ", " + next + ", " + row + ", " + meta + ")";
      return sees_writer ? "CASE WHEN " + written_here + " THEN " + next + " ELSE " + refusal + " END" : refusal;
    };

    // on_conflict: merge (SPEC 3.10): a row whose version is not the one read goes to occ.merge,
    // which refuses it only for a column changed on both sides; the SET list keeps the current
    // value of each column the other writer changed. Both decisions are taken per written row.
    const bool merging = merges(own);
    std::string merge_base;
    if (merging) {
      if (!read.empty())
        merge_base = dollar_quoted(read) + "::text";
      else if (!base.empty())
        merge_base = "(" + base + ")::text";
      else
        merge_base = "NULL::text";
    }

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
        value = "CASE WHEN " + matches + " THEN " + next + " " +
                (per_row ? "WHEN " + expected + " IS NULL THEN " + unknown(next) + " " : std::string()) + "WHEN " +
                written_here + " THEN " + next + " ELSE " +
                (merging ? merge_call(version_ref, expected, next, row, meta, merge_base, ref)
                         : conflict_call(next)) +
                " END";
      if (merging && p_.mode == EnforceMode::enforce) {
        // A column the other writer changed keeps its value: either this write sets it to its
        // base (an ORM writing every column), or to the same value, or occ.merge refuses the row.
        // The session's own earlier write of the row in this transaction is not another writer's.
        for (const SetItem& item : site_.set_items) {
          if (item.column == p_.version_column) continue;
          const std::string column = ref + "." + quote_identifier(item.column);
          const std::string keep = "CASE WHEN " + matches + " OR " + expected + " IS NULL THEN false WHEN " +
                                   written_here + " THEN false ELSE occ.theirs_changed(" + row + ", " + merge_base +
                                   ", " + literal(item.column) + ", " + meta + ") END";
          edits_.push_back({item.value_at.begin, item.value_at.end,
                            "CASE WHEN " + keep + " THEN " + column + " ELSE (" + item.value + ") END"});
        }
      }
      if (own != nullptr) return edited({own->item.begin, own->item.end, version + " = " + value}, true);
      return edited({site_.set_keyword_end, site_.set_keyword_end, " " + version + " = " + value + ","}, true);
    }

    if (site_.current_of) return unsupported("DELETE ... WHERE CURRENT OF");
    // The guard must not raise for a row the rest of the condition excludes, whatever order the
    // planner evaluates conjuncts in: hence the condition is repeated in front of the check.
    std::string when_matches;
    if (!st_.force_hint) when_matches = "WHEN " + matches + " THEN true ";
    if (per_row)
      when_matches += "WHEN " + expected + " IS NULL THEN " +
                      (p_.reject_unknown_version ? unknown(version_ref) + " IS NOT NULL " : std::string("true "));
    if (!st_.force_hint && sees_writer) when_matches += "WHEN " + written_here + " THEN true ";
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
  // What the session read of the rows this write can touch, as SQL.
  struct ReadCheck {
    std::string expected;     // the expected version; NULL where the row was never read
    std::string base;         // the values read: JSON text of a pinned row, else jsonb; empty: none
    std::string read;         // or those values as JSON text, for the meta (no jsonb to parse)
    bool per_row = false;     // `expected` may be NULL (a map lookup per row, or a Bind parameter)
    bool never_read = false;  // the one row the write can touch is unknown to the session
    bool pinned = false;      // compared with one row's version: a known literal, or a Bind parameter
    std::vector<std::string> key;  // simple protocol, pinned: that row's key and the version read
    std::string version;
    int version_param = 0;         // extended protocol, pinned: the parameter carrying the version
  };

  // `jsonb_build_object('k1', ref.k1, ...)`: the row's key, by column name.
  std::string key_object(const std::string& ref) const {
    std::string out;
    for (const std::string& column : p_.key)
      out += (out.empty() ? "" : ", ") + literal(column) + ", " + ref + "." + quote_identifier(column);
    return "jsonb_build_object(" + out + ")";
  }

  // Whether on_conflict: merge applies: a checked UPDATE whose SET items are plain column
  // assignments (an upsert, MERGE, a row-wise or subscripted item keep the whole-row check).
  bool merges(const SetItem* own) const {
    if (p_.on_conflict != OnConflict::merge || site_.kind != WriteKind::update || st_.force_hint) return false;
    return std::all_of(site_.set_items.begin(), site_.set_items.end(), [&](const SetItem& item) {
      return &item == own || (!item.row_wise && !item.subscripted && !item.is_default);
    });
  }

  // occ.merge's call: `mine` holds each value the write sets, typed as its column (the CASE
  // coerces it the way the assignment does).
  std::string merge_call(const std::string& version_ref, const std::string& expected, const std::string& next,
                         const std::string& row, const std::string& meta, const std::string& merge_base,
                         const std::string& ref) const {
    // A function takes at most 100 arguments: 40 columns per jsonb_build_object, concatenated.
    constexpr int kPerCall = 40;
    std::string mine;
    int in_call = 0;
    for (const SetItem& item : site_.set_items) {
      if (item.column == p_.version_column) continue;
      if (in_call == kPerCall) {
        mine += ") || ";
        in_call = 0;
      }
      mine += in_call++ == 0 ? "jsonb_build_object(" : ", ";
      mine += literal(item.column) + ", CASE WHEN false THEN " + ref + "." + quote_identifier(item.column) + " ELSE (" +
              item.value + ") END";
    }
    mine = mine.empty() ? "'{}'::jsonb" : "(" + mine + "))";
    return std::string(helpers::kMerge) + "(" + version_ref + ", " + expected + ", " + next + ", " + row + ", " + meta + ", " + merge_base +
           ", " + mine + ")";
  }

  // Whether "UPDATE 1" / "DELETE 1" alone tells the written row's new version, once the write has
  // been checked against the version read: a counter advances by one (the trigger's or the proxy's
  // increment); the statement sets neither the version nor a key column; shadow mode writes stale
  // rows too; and a RETURNING of the client's own already carries the row.
  bool tag_tells_version(const SetItem* own) const {
    if (p_.version_kind != VersionKind::counter || p_.mode != EnforceMode::enforce || own != nullptr) return false;
    // A merged write advances the current version, not the one read.
    if (merges(own)) return false;
    if (!(site_.top_level && !site_.deferred) && !site_.prepared_body) return false;
    if (site_.has_returning) return false;
    if (site_.kind != WriteKind::update && site_.kind != WriteKind::delete_) return false;
    return std::none_of(p_.key.begin(), p_.key.end(),
                        [this](const std::string& column) { return site_.assignment(column) != nullptr; });
  }

  // A write pinned to one key compares with that row's version as a scalar: a literal in the simple
  // protocol, a parameter filled at each Bind in the extended one. Any other write looks each row
  // up by its key in a jsonb map of the rows read (a literal, or one parameter).
  ReadCheck read_check(bool with_version) {
    ReadCheck check;
    const SqlType version = version_type(p_);
    const std::string type = version.name;
    const std::vector<std::vector<KeyValue>> tuples = pinned_keys(site_, p_);
    if (tuples.size() == 1 && access_.extended) {
      auto added = [&](ExpectedParam::Carries carries, SqlType sql_type) {
        ExpectedParam& param = access_.params->emplace_back();
        param = {&p_, carries, ++access_.next_param, sql_type.oid, {{}}};
        if (carries == ExpectedParam::Carries::version) check.version_param = param.param_number;
        for (const KeyValue& value : tuples.front()) param.keys.front().push_back({value.param_number, value.literal});
        return "$" + std::to_string(param.param_number) + "::" + sql_type.name;
      };
      if (with_version) check.expected = added(ExpectedParam::Carries::version, version);
      check.base = added(ExpectedParam::Carries::base, kText);
      check.per_row = true;
      check.pinned = with_version;
      return check;
    }
    std::vector<std::vector<std::string>> keys;
    for (const std::vector<KeyValue>& tuple : tuples) {
      std::vector<std::string>& key = keys.emplace_back();
      for (const KeyValue& value : tuple) {
        // A parameter in a simple Query (only inside PREPARE, which is never read-checked): unpinned.
        if (value.param_number != 0) {
          keys.clear();
          break;
        }
        key.push_back(value.literal);
      }
      if (keys.empty()) break;
    }
    if (keys.size() == 1 && !access_.extended) {
      if (const std::optional<RowRead> row = access_.reads->read_row(p_, keys.front())) {
        check.expected = literal(row->version) + "::" + type;
        check.pinned = with_version;
        check.key = keys.front();
        check.version = row->version;
        // occ.conflict's base argument leaves redacted columns out, should the rules have changed
        // since the read; the meta is taken as it is.
        if (p_.redact.empty())
          check.read = row->base;
        else
          check.base = dollar_quoted(std::string(row->base)) + "::text";
      } else {
        check.never_read = true;
        check.expected = "NULL::" + type;
        check.per_row = true;
      }
      return check;
    }
    std::string map;
    if (access_.extended) {
      ExpectedParam& param = access_.params->emplace_back();
      param = {&p_, ExpectedParam::Carries::map, ++access_.next_param, kJsonb.oid, {}};
      for (const std::vector<KeyValue>& tuple : tuples) {
        std::vector<ExpectedParam::KeySource>& sources = param.keys.emplace_back();
        for (const KeyValue& value : tuple) sources.push_back({value.param_number, value.literal});
      }
      map = "$" + std::to_string(param.param_number) + "::jsonb";
    } else {
      map = dollar_quoted(access_.reads->expected_map(p_, keys)) + "::jsonb";
    }
    const std::string key = key_text(p_, quote_identifier(site_.refname));
    check.expected = "(" + map + " #>> ARRAY[" + key + ", 'v'])::" + type;
    check.base = map + " #> ARRAY[" + key + ", 'b']";
    check.per_row = true;
    return check;
  }

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
    plan_.row_write = std::move(row_write_);
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
  const ProtectedView* view_;
  ReadAccess& access_;
  SitePlan plan_;
  std::vector<Edit> edits_;
  std::optional<CheckedRowWrite> row_write_;
};

// What a statement's name stands for under the session's search_path: a protected table, or a view
// over one (`table` is then the view's table); `table` is null for any other relation.
struct ProtectedRelation {
  const TablePolicy* table = nullptr;
  const ProtectedView* view = nullptr;
};
ProtectedRelation protected_relation(const std::string& schema, const std::string& name,
                                     const std::vector<std::string>& path, const SessionView& session) {
  const std::optional<std::string> resolved =
      schema.empty() ? session.relations.resolve(name, path, session.rules) : std::optional<std::string>(schema);
  if (!resolved) return {};
  if (const TablePolicy* table = session.rules.find(*resolved, name)) return {table, nullptr};
  const ProtectedView* view = session.rules.find_view(*resolved, name);
  return view ? ProtectedRelation{session.rules.find(view->table_schema, view->table_name), view} : ProtectedRelation{};
}

// A top-level SELECT on protected tables: its rows carry each table's key and version at the end,
// or it is counted as a read the session cannot trace.
// `appending`: false for an SQL-level PREPARE, whose EXECUTE may also feed CREATE TABLE AS or
// EXPLAIN, which must not see the appended columns: only SELECT * rows are tracked there.
void track_select(const ReadSite& site, bool extended_protocol, bool appending, const std::vector<std::string>& path,
                  const SessionView& session, std::vector<Edit>& edits, StatementEffect& effect, Rewrite& out) {
  std::vector<const TablePolicy*> tables;
  std::vector<const ReadTable*> names;
  bool untraceable_view = false;  // a view over a protected table whose rows are not the table's
  for (const ReadTable& t : site.tables) {
    const ProtectedRelation relation = protected_relation(t.schema, t.name, path, session);
    if (relation.view != nullptr && !relation.view->unsupported.empty()) {
      untraceable_view = true;
    } else if (relation.table != nullptr) {
      tables.push_back(relation.table);
      names.push_back(&t);
    }
  }
  if (untraceable_view) ++out.untracked_reads;
  if (tables.empty()) return;
  if (!site.untraceable.empty() || (site.traced && extended_protocol)) {
    ++out.untracked_reads;
    return;
  }
  if (site.traced) {
    effect.tracking.tables = std::move(tables);
    effect.tracking.in_place = true;
    return;
  }
  if (site.whole_rows && !extended_protocol) {
    effect.tracking.tables = std::move(tables);
    effect.tracking.in_place = true;
    return;
  }
  if (!appending) {
    ++out.untracked_reads;
    return;
  }
  std::string columns;
  for (std::size_t i = 0; i < tables.size(); ++i) {
    const ReadTable& t = *names[i];
    std::string ref;
    if (!t.alias.empty())
      ref = quote_identifier(t.alias);
    else if (!t.schema.empty())
      ref = quote_identifier(t.schema) + "." + quote_identifier(t.name);
    else
      ref = quote_identifier(t.name);
    columns += ", " + tracked_columns(*tables[i], ref, true);
  }
  edits.push_back({site.insert_at, site.insert_at, std::move(columns)});
  effect.tracking = tracking_of(std::move(tables));
}

// A top-level write on a protected table whose command tag cannot tell the session what it wrote
// (CheckedRowWrite) reports the key and version of each row it writes, so the session's own
// writes refresh its read set (and a DELETE's rows are forgotten). MERGE has no
// RETURNING in PostgreSQL 15; a writable CTE's rows feed its query, not the client.
void track_write(const WriteSite& site, const TablePolicy& p, std::vector<Edit>& edits, StatementEffect& effect) {
  if (!site.top_level || site.deferred || !site.unlocatable.empty() || site.returning_insert_at < 0) return;
  if (site.kind != WriteKind::update && site.kind != WriteKind::delete_ && site.kind != WriteKind::upsert) return;
  const std::string columns = tracked_columns(p, quote_identifier(site.refname), false);
  const int at = site.returning_insert_at;
  edits.push_back({at, at, (site.has_returning ? ", " : " RETURNING ") + columns});
  effect.tracking = tracking_of({&p});
  effect.tracking.drop_result = !site.has_returning;
  effect.tracking.rows_deleted = site.kind == WriteKind::delete_;
}

// A top-level INSERT reports its rows' keys and versions: a row the session created is one it
// knows, so its own later writes to it are checked (and not refused under on_unknown_version: reject).
void track_insert(const InsertSite& site, const std::vector<std::string>& path, const SessionView& session,
                  std::vector<Edit>& edits, StatementEffect& effect) {
  const ProtectedRelation relation = protected_relation(site.table.schema, site.table.name, path, session);
  const TablePolicy* p = relation.table;
  if (p == nullptr || (relation.view != nullptr && !relation.view->unsupported.empty())) return;
  const std::string columns = tracked_columns(*p, quote_identifier(site.table.alias), false);
  const int at = site.returning_insert_at;
  edits.push_back({at, at, (site.has_returning ? ", " : " RETURNING ") + columns});
  effect.tracking = tracking_of({p});
  effect.tracking.drop_result = !site.has_returning;
}

}  // namespace

std::vector<std::string> effective_search_path(const SearchPathChange& change, std::string_view user) {
  // RESET and DEFAULT: the server's default, "$user", public.
  std::vector<std::string> path = change ? *change : std::vector<std::string>{"$user", "public"};
  for (std::string& schema : path)
    if (schema == "$user") schema = std::string(user);
  return path;
}

bool may_need_rewrite(std::string_view sql, const Rules& rules, bool standard_conforming_strings) {
  auto lower = [](char ch) { return ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch; };
  auto same_word = [&](std::string_view word, std::string_view name, bool fold) {
    if (word.size() != name.size()) return false;
    for (std::size_t i = 0; i < word.size(); ++i)
      if ((fold ? lower(word[i]) : word[i]) != name[i]) return false;
    return true;
  };
  // search_path also changes with RESET ALL and DISCARD ALL, which clear the read set too; the
  // read set follows SAVEPOINT, RELEASE and ROLLBACK TO (whose SAVEPOINT keyword is optional).
  // Cursors and SQL-level prepared statements carry the rows of a statement analysed earlier.
  static constexpr std::string_view always[] = {"search_path", "reset",   "discard", "savepoint",  "release",
                                                "rollback",    "declare", "fetch",   "close",      "prepare",
                                                "execute",     "deallocate"};
  auto wanted = [&](std::string_view word, bool quoted) {
    for (std::string_view w : always)
      if (same_word(word, w, !quoted)) return true;
    for (const TablePolicy& p : rules.tables)
      if (same_word(word, p.name, !quoted)) return true;
    for (const ProtectedView& v : rules.views)
      if (same_word(word, v.name, !quoted)) return true;
    return false;
  };
  // Bare words anywhere in `text`. Literals and comments are searched too: a false "maybe" costs
  // one parse, while a name must never hide in a misread literal.
  auto any_bare_word = [&](std::string_view text) {
    for (std::size_t i = 0; i < text.size();) {
      if (!sql_ident_char(text[i])) {
        ++i;
        continue;
      }
      std::size_t j = i;
      while (j < text.size() && sql_ident_char(text[j])) ++j;
      if (wanted(text.substr(i, j - i), false)) return true;
      i = j;
    }
    return false;
  };
  bool maybe = false;
  lex_sql(sql, [&](const Lexeme& lx) {
    const std::string_view text = sql.substr(lx.begin, lx.end - lx.begin);
    switch (lx.kind) {
      case Lexeme::Kind::word:
        maybe = wanted(text, false);
        break;
      case Lexeme::Kind::quoted_name: {
        // U&"..." spells a name with escapes this scan does not decode.
        if (lx.begin >= 2 && sql[lx.begin - 1] == '&' && (sql[lx.begin - 2] == 'u' || sql[lx.begin - 2] == 'U')) {
          maybe = true;
          break;
        }
        std::string name;
        for (std::size_t k = lx.body_begin; k < lx.body_end; ++k) {
          name += sql[k];
          if (sql[k] == '"') ++k;  // "" is one quote
        }
        maybe = wanted(name, true);
        break;
      }
      case Lexeme::Kind::string:
      case Lexeme::Kind::dollar_string:
      case Lexeme::Kind::comment:
        maybe = any_bare_word(text);
        break;
      default:
        break;
    }
    return !maybe;
  }, standard_conforming_strings);
  return maybe;
}

int original_position(const std::vector<TextShift>& shifts, int position) {
  int offset = position - 1;  // 0-based, in the rewritten text
  int moved = 0;              // rewritten minus original characters before the current edit
  for (const TextShift& s : shifts) {
    const int starts = s.at + moved;
    if (offset < starts) break;
    if (offset < starts + s.inserted) return s.at + 1;
    moved += s.inserted - s.removed;
  }
  return offset - moved + 1;
}

namespace {

// A constant as SQL that reads the same under either standard_conforming_strings setting.
std::string escaped_literal(const std::optional<std::string>& value) {
  if (!value) return "NULL";
  std::string out = "E'";
  for (char c : *value) {
    if (c == '\\' || c == '\'') out += c;
    out += c;
  }
  return out + "'";
}

// The SQL-level prepared statements the proxy added to (checked writes, shadowed SELECTs) as this
// text leaves them, statement by statement: a PREPARE, DEALLOCATE or DISCARD ALL earlier in the
// text overrides what the session knew.
class PreparedInText {
 public:
  explicit PreparedInText(const SqlPrepared* session) : session_(session) {}
  const PreparedWrite* write_of(const std::string& name) const {
    if (auto it = here_.find(name); it != here_.end()) return it->second.write;
    return all_dropped_ || session_ == nullptr ? nullptr : session_->prepared_write(name);
  }
  const std::string* shadow_of(const std::string& name) const {
    if (auto it = here_.find(name); it != here_.end()) return it->second.shadow.empty() ? nullptr : &it->second.shadow;
    return all_dropped_ || session_ == nullptr ? nullptr : session_->shadow_of(name);
  }
  // A PREPARE of `name` here, with the checked write or the shadow the proxy gave it, if any.
  void prepared(const std::string& name, const PreparedWrite* write, std::string shadow) {
    here_[name] = {write, std::move(shadow)};
  }
  void deallocated(const std::string& name) { here_[name] = {}; }
  void deallocated_all() {
    here_.clear();
    all_dropped_ = true;
  }

 private:
  struct Added {
    const PreparedWrite* write = nullptr;
    std::string shadow;  // empty: none
  };
  const SqlPrepared* session_;
  std::unordered_map<std::string, Added> here_;
  bool all_dropped_ = false;
};

// EXECUTE of a checked prepared write: the version read (and the values read) of the row its
// arguments name go after them, as the PREPARE's added parameters expect.
void execute_prepared_write(const StatementAnalysis& st, const SessionView& session, const PreparedInText& in_text,
                            std::vector<Edit>& edits, StatementEffect& effect) {
  const PreparedWrite* prepared = in_text.write_of(st.result_name);
  if (prepared == nullptr || st.execute_args_at < 0) return;
  const AddedValues values =
      added_values(prepared->params, prepared->row_write.version_param, *session.reads, [&](int n) {
        const auto index = static_cast<std::size_t>(n - 1);
        const auto& arg = index < st.execute_args.size() ? st.execute_args[index] : std::nullopt;
        return arg && arg->param_number == 0 ? std::optional<std::string>(arg->literal) : std::nullopt;
      });
  std::string args;
  for (const auto& value : values.values) args += (args.empty() && !st.execute_has_args ? "" : ", ") + escaped_literal(value);
  if (!st.execute_has_args) args = "(" + args + ")";
  edits.push_back({st.execute_args_at, st.execute_args_at, std::move(args)});
  CheckedRowWrite written = prepared->row_write;
  written.key = values.written_key;
  written.version = values.written_version;
  written.version_param = 0;
  effect.row_write = std::move(written);
}

bool pins_whole_key(const ReadSite& site, const ResultTracking& tracking) {
  if (tracking.tables.size() != 1 || !tracking.tracked()) return false;
  return std::all_of(tracking.tables.front()->key.begin(), tracking.tables.front()->key.end(),
                     [&site](const std::string& column) {
                       return std::any_of(site.pins.begin(), site.pins.end(), [&column](const KeyPin& pin) {
                         return pin.column == column && pin.values.size() == 1;
                       });
                     });
}

// A simple Query's `PREPARE r AS SELECT <columns>` whose rows need the key and version appended:
// r stays as written and the shadow, the same SELECT with them appended, is prepared right after
// it (SqlPrepared says why). Returns the shadow's effect; none when the rows are tracked in place,
// cannot be tracked, or the statement's name cannot be found in the text.
std::optional<StatementEffect> prepare_shadow(std::string_view sql, const StatementAnalysis& st,
                                              const std::vector<std::string>& path, const SessionView& session,
                                              std::vector<Edit>& edits, StatementEffect& effect, Rewrite& out) {
  if (!st.name_at.valid() || st.last_token_end < st.name_at.end) {
    track_select(*st.read, false, false, path, session, edits, effect, out);
    return std::nullopt;
  }
  StatementEffect shadow;
  std::vector<Edit> body;
  track_select(*st.read, false, true, path, session, body, shadow, out);
  if (body.empty()) {
    effect.tracking = std::move(shadow.tracking);
    return std::nullopt;
  }
  shadow.named = NamedResult::prepare;
  shadow.result_name = std::string(helpers::kShadowStatementPrefix) + std::to_string(session.next_shadow + out.shadows_named++);
  shadow.shadow_for = st.result_name;
  shadow.hidden = true;
  edits.push_back({st.last_token_end, st.last_token_end,
                   "; PREPARE " + quote_identifier(shadow.result_name) +
                       splice(sql, TextRange{st.name_at.end, st.last_token_end}, std::move(body))});
  return shadow;
}

}  // namespace

Rewrite rewrite_sql(std::string_view sql, bool extended_protocol, const SessionView& session, PlanCache& cache) {
  Rewrite out;
  const std::shared_ptr<const SqlAnalysis> analysis = cache.analysis(sql, session.rules, session.syntax);
  if (analysis->parse_failed) {
    out.parse_failed = true;
    return out;
  }
  ReadAccess access{session.reads, extended_protocol, 0, &out.expected_params};
  if (extended_protocol) {
    out.client_param_count = std::max(analysis->max_param, session.declared_param_count);
    access.next_param = out.client_param_count;
  }
  std::vector<StatementEffect> effects(analysis->statements.size());
  bool any_effect = false;
  std::optional<std::vector<std::string>> path_in_text;  // after a SET search_path earlier in this text
  std::vector<Edit> edits;
  PreparedInText in_text(session.prepared);
  std::vector<std::pair<std::size_t, StatementEffect>> added;  // statements the proxy adds, after which of the client's
  for (std::size_t i = 0; i < analysis->statements.size(); ++i) {
    const StatementAnalysis& st = analysis->statements[i];
    StatementEffect& effect = effects[i];
    effect.named = st.named;
    effect.result_name = st.result_name;
    const std::vector<std::string>& path = path_in_text ? *path_in_text : session.search_path;
    const std::size_t params_before = out.expected_params.size();
    const int next_param_before = access.next_param;
    std::vector<SitePlan> plans;
    std::vector<const WriteSite*> planned_sites;
    std::string shadow_name;  // a PREPARE's shadow, when it gets one
    // An SQL-level PREPARE's parameters are its own, numbered after those its body names or it declares.
    PreparedWrite prepared;
    ReadAccess prepared_access{session.reads, true, std::max(st.max_param, st.declared_params), &prepared.params, true};
    ReadAccess& statement_access = st.named == NamedResult::prepare ? prepared_access : access;
    for (const WriteSite& site : st.writes) {
      const ProtectedRelation target = protected_relation(site.schema, site.name, path, session);
      if (target.table != nullptr) {
        plans.push_back(SitePlanner(sql, st, site, *target.table, target.view, statement_access).plan(session.user));
        planned_sites.push_back(&site);
      }
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
    if (refusal || passed_unchanged) {
      // The statement goes unedited (or refused): the parameters its plans asked for are not sent.
      out.expected_params.resize(params_before);
      access.next_param = next_param_before;
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
      if (session.reads != nullptr) {
        for (std::size_t k = 0; k < plans.size(); ++k) {
          if (plans[k].row_write && st.named == NamedResult::prepare) {
            prepared.row_write = std::move(*plans[k].row_write);
            effect.prepared_write = std::move(prepared);
          } else if (plans[k].row_write) {
            effect.row_write = std::move(plans[k].row_write);
          } else {
            track_write(*planned_sites[k], *plans[k].table, edits, effect);
          }
        }
        if (st.named == NamedResult::execute) {
          execute_prepared_write(st, session, in_text, edits, effect);
          const std::string* shadow = st.name_at.valid() ? in_text.shadow_of(st.result_name) : nullptr;
          if (shadow != nullptr) {
            edits.push_back({st.name_at.begin, st.name_at.end, quote_identifier(*shadow)});
            effect.result_name = *shadow;
            effect.shadow_for = st.result_name;
          }
        }
        std::optional<StatementEffect> shadow;
        if (st.read && st.named == NamedResult::prepare && !extended_protocol && plans.empty())
          shadow = prepare_shadow(sql, st, path, session, edits, effect, out);
        else if (st.read) {
          track_select(*st.read, extended_protocol, st.named != NamedResult::prepare, path, session, edits, effect, out);
          effect.key_pinned_read = st.named == NamedResult::none && pins_whole_key(*st.read, effect.tracking);
        }
        if (st.insert) track_insert(*st.insert, path, session, edits, effect);
        if (shadow) {
          shadow_name = shadow->result_name;
          added.emplace_back(i, std::move(*shadow));
        }
        // A Parse holds one statement: there the session closes the shadow beside it.
        if (st.named == NamedResult::deallocate && !st.result_name.empty()) {
          const std::string* dropped = extended_protocol ? nullptr : in_text.shadow_of(st.result_name);
          if (dropped != nullptr) {
            StatementEffect deallocate;
            deallocate.named = NamedResult::deallocate;
            deallocate.result_name = *dropped;
            deallocate.hidden = true;
            deallocate.shadow_for = st.result_name;
            edits.push_back({st.last_token_end, st.last_token_end, "; DEALLOCATE " + quote_identifier(*dropped)});
            added.emplace_back(i, std::move(deallocate));
          }
        }
      }
    }

    if (st.named == NamedResult::prepare)
      in_text.prepared(st.result_name, effect.prepared_write ? &*effect.prepared_write : nullptr, shadow_name);
    else if (st.named == NamedResult::deallocate && st.result_name.empty())
      in_text.deallocated_all();
    else if (st.named == NamedResult::deallocate)
      in_text.deallocated(st.result_name);
    if (st.command == SessionCommand::discard_all) in_text.deallocated_all();
    effect.command = st.command;
    effect.savepoint = st.savepoint;
    any_effect = any_effect || effect.tracking.tracked() || effect.row_write || effect.command != SessionCommand::none ||
                 effect.named != NamedResult::none;

    if (st.search_path_change) {
      out.search_path_change = *st.search_path_change;
      out.search_path_local = st.search_path_local;
      path_in_text = effective_search_path(*st.search_path_change, session.user);
    }
  }
  if (!added.empty()) {
    // Each added statement's results arrive right after those of the client's statement it follows.
    std::vector<StatementEffect> all;
    all.reserve(effects.size() + added.size());
    auto next = added.begin();
    for (std::size_t i = 0; i < effects.size(); ++i) {
      all.push_back(std::move(effects[i]));
      for (; next != added.end() && next->first == i; ++next) all.push_back(std::move(next->second));
    }
    effects = std::move(all);
    any_effect = true;
  }
  if (any_effect) out.effects = std::move(effects);
  if (!edits.empty()) {
    out.action = Rewrite::Action::rewrite;
    out.sql = splice(sql, TextRange{0, static_cast<int>(sql.size())}, std::move(edits), &out.shifts);
  }
  return out;
}

}  // namespace occ
