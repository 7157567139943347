// Session-facing entry of the SQL layer: one SQL text in (a Query message's string or a Parse's
// statement), what to send to the server out. Pure: no sockets, no catalog I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "admin/catalog.h"
#include "sql/literal.h"
#include "config/rules.h"
#include "sql/sql_analysis.h"  // SessionCommand

namespace occ {

class PlanCache;
class SqlPrepared;

// What the session read of one row (SPEC 3.2 item 3).
struct RowRead {
  std::string_view version;  // text form, as the server prints it
  std::string_view base;     // JSON object text: column -> value read (the conflict's DETAIL and diff)
};

// The session's read set as the rewriter sees it (SPEC 3.2 item 3).
class ReadSetLookup {
 public:
  virtual ~ReadSetLookup() = default;
  // The row of `table` whose key columns' text values are `key` (in the table's key order), as the
  // session read it; nullopt when never read or expired.
  virtual std::optional<RowRead> read_row(const TablePolicy& table, const std::vector<std::string>& key) const = 0;
  // The expected versions of `table` as the JSON map a rewritten statement looks its rows up in:
  // nested objects keyed by each key column's text value, leaf {"v": version, "b": {column: value}}
  // (b: the values read, for the conflict's DETAIL and diff). Restricted to `keys` (tuples of key
  // column values in text form, in the table's key order), or every tracked row when `keys` is empty.
  virtual std::string expected_map(const TablePolicy& table,
                                   const std::vector<std::vector<std::string>>& keys) const = 0;
};

// What the rewriter needs to know about the client session.
struct SessionView {
  std::string_view user;                        // session user (for force.allowed_roles)
  const std::vector<std::string>& search_path;  // "$user" already substituted
  const Rules& rules;
  const RelationIndex& relations;
  const ReadSetLookup* reads = nullptr;         // null: no read tracking
  int declared_param_count = 0;                 // extended protocol: types the Parse declared
  const SqlPrepared* prepared = nullptr;        // for EXECUTE of a checked write or a shadowed SELECT
  StringSyntax syntax{};                        // how the server reads this session's string constants
  uint32_t next_shadow = 0;                     // the number the next shadow statement is named by
};

// How the session notes key and version of every row a statement returns. Usually from columns
// the proxy appended, which the session strips before the client sees the row; for `SELECT *`
// of one table in the simple protocol (every value text) from the client's own columns, found by
// the RowDescription's table OID and attribute numbers, the statement and its bytes untouched.
struct ResultTracking {
  std::vector<const TablePolicy*> tables;  // in the order their columns were appended
  unsigned added_columns = 0;              // per table: its key columns, then its version column
  bool in_place = false;                   // one table, its columns among the client's
  bool drop_result = false;                // the client asked for no rows (the proxy added RETURNING)
  bool rows_deleted = false;               // the rows returned were deleted: forget them
  // A cursor's or SQL-level prepared statement's rows (FETCH, EXECUTE): the added columns are
  // recognised by their names ("occ:key", "occ:version") and cut only where they are there; with
  // no tables (a name the session does not know) they are cut, and nothing is noted.
  bool by_name = false;

  bool tracked() const { return added_columns > 0 || in_place || by_name; }
};

// A write the session's read set checks against exactly one row it read, on a table whose version
// is a counter, in enforce mode. When the server reports one row written, the check passed: the
// row held the version read, and the write advanced it by exactly one. The session then knows the
// new version from the command tag, and the proxy adds no RETURNING (which costs the server more
// than the check itself).
struct CheckedRowWrite {
  const TablePolicy* table = nullptr;
  bool deletes = false;          // the row is gone: forget it
  std::vector<std::string> key;  // simple protocol; in the extended one each Bind names the row
  std::string version;           // simple protocol: the version read, which the write compares with
  int version_param = 0;         // extended protocol: the added parameter that carries that version
};

// Extended protocol: a parameter the proxy added at Parse, filled by the session at each Bind from
// the read set, where each key column's value comes from a bound parameter or a literal.
struct ExpectedParam {
  // A write pinned to one key gets the row's version and base as two scalars (NULL when the row
  // was never read): cheaper for the server than looking rows up in a map. Any other write gets
  // expected_map(table, keys).
  enum class Carries { map, version, base };
  const TablePolicy* table = nullptr;
  Carries carries = Carries::map;
  int param_number = 0;  // 1-based $n of the added parameter, sent in text format
  int type_oid = 0;      // the type the Parse declares for it
  struct KeySource {
    int param_number = 0;  // 1-based $n of the client's parameter, or 0 for `literal`
    std::string literal;   // text value of a constant

    bool operator==(const KeySource&) const = default;
  };
  std::vector<std::vector<KeySource>> keys;  // tuples in key order; empty: every tracked row
};

// A write an SQL-level PREPARE prepared, pinned to one key and checked against the read set:
// each EXECUTE supplies the version read (and the values read) as arguments after the client's.
struct PreparedWrite {
  std::vector<ExpectedParam> params;  // numbered after the client's own
  CheckedRowWrite row_write;          // version_param: the added parameter carrying the version
};

// The session's SQL-level prepared statements the proxy added to, by name, as the server confirmed
// them: checked writes, and SELECTs with a shadow. A client's `PREPARE r AS SELECT <columns>`
// stays as written, since its EXECUTE may feed CREATE TABLE AS or EXPLAIN, which must not see
// added columns; in the same simple Query the proxy prepares its shadow, the same SELECT with the
// key and version appended, and a plain `EXECUTE r(...)` runs the shadow, whose added columns the
// session strips. DEALLOCATE r deallocates both.
class SqlPrepared {
 public:
  virtual ~SqlPrepared() = default;
  virtual const PreparedWrite* prepared_write(const std::string& name) const = 0;
  // The shadow statement of `name`; null when it has none.
  virtual const std::string* shadow_of(const std::string& name) const = 0;
};

// The values of the parameters the proxy added, for one execution. `client_value(n)`: the text
// form of the client's $n (nullopt: NULL, or not known).
struct AddedValues {
  std::vector<std::optional<std::string>> values;  // in ExpectedParam order; nullopt: NULL
  std::vector<std::string> written_key;           // row_write_param's row, when the session read it
  std::string written_version;
};
template <class ClientValue>
AddedValues added_values(const std::vector<ExpectedParam>& params, int row_write_param, const ReadSetLookup& reads,
                         const ClientValue& client_value);

// What one statement of the text means for the session, in statement order.
struct StatementEffect {
  ResultTracking tracking;  // tables empty: nothing appended
  std::optional<CheckedRowWrite> row_write;
  SessionCommand command = SessionCommand::none;
  std::string savepoint;    // for savepoint / release / rollback_to
  NamedResult named = NamedResult::none;
  std::string result_name;  // the cursor or prepared statement; empty: CLOSE ALL / DEALLOCATE ALL
  std::optional<PreparedWrite> prepared_write;  // PREPARE of a checked write
  // A tracked SELECT of one table whose WHERE pins its whole key to one value: at most one row,
  // found by the key's index, so a generic plan of it cannot be worse than a custom one.
  bool key_pinned_read = false;
  // A statement the proxy added to the client's text: a shadow's PREPARE or DEALLOCATE. Its
  // CommandComplete is not the client's.
  bool hidden = false;
  // A statement naming a shadow (result_name) in the client's statement's place: this is the
  // client's name, which the server's errors must show.
  std::string shadow_for;
};

// An error the proxy wants the server session to raise in the statement's place.
struct Rejection {
  std::string sqlstate;  // e.g. "42501"
  std::string message;
  std::string detail;
  std::string hint;
  std::string schema;
  std::string table;
};

// What the session needs to audit one checked write (SPEC 3.7 "mine").
struct WriteInfo {
  const TablePolicy* table = nullptr;
  std::string fingerprint;  // pg_query fingerprint of the original statement
  bool forced = false;
  std::vector<std::pair<std::string, std::string>> assigned;  // column -> value's SQL text ("$2" for a parameter)
};

// Where the rewriting moved the client's text, in characters, as the server counts an error's
// position: the client's characters [at, at + removed) became `inserted` characters.
struct TextShift {
  int at = 0;
  int removed = 0;
  int inserted = 0;
};

// An error's position (1-based, in characters) in the rewritten text, as a position in the
// client's; a position inside the proxy's own text points where that text was inserted.
int original_position(const std::vector<TextShift>& shifts, int position);

struct Rewrite {
  enum class Action { forward, rewrite, reject };
  Action action = Action::forward;
  // Action::rewrite: the text to send instead. In the simple protocol a refused statement is
  // replaced by SQL that makes the server raise `rejection` at that point of the message.
  std::string sql;
  // Action::reject (extended protocol): the error to give the client for this Parse. In the simple
  // protocol the refusal is already in `sql`; this then holds the first one, for counting and logs.
  std::optional<Rejection> rejection;
  std::vector<WriteInfo> writes;
  // A SET / RESET search_path in this text: the new path as written ("$user" not substituted);
  // an empty optional inside means RESET / DEFAULT.
  std::optional<std::optional<std::vector<std::string>>> search_path_change;
  bool search_path_local = false;  // that change is SET LOCAL: it ends with the transaction
  bool parse_failed = false;     // forwarded unchanged: the server reports its own error
  unsigned unsupported_passed = 0;
  unsigned untracked_reads = 0;  // SELECTs on protected tables whose rows cannot be traced
  uint32_t shadows_named = 0;    // shadow statements named, from SessionView::next_shadow on
  // Read tracking: one entry per statement when any statement has tracking or a session command.
  std::vector<StatementEffect> effects;
  // Extended protocol: parameters the proxy added (never shown in ParameterDescription), and how
  // many the client's statement has (the added ones follow).
  std::vector<ExpectedParam> expected_params;
  int client_param_count = 0;
  // Action::rewrite: the edits, for mapping error positions back to the client's text.
  std::vector<TextShift> shifts;
};

// Cheap pre-filter: false when `sql` cannot touch a protected table nor change search_path,
// so the caller forwards it without parsing. Literals end where the server ends them under
// `standard_conforming_strings`.
bool may_need_rewrite(std::string_view sql, const Rules& rules, bool standard_conforming_strings = true);

Rewrite rewrite_sql(std::string_view sql, bool extended_protocol, const SessionView& session,
                    PlanCache& cache);

template <class ClientValue>
AddedValues added_values(const std::vector<ExpectedParam>& params, int row_write_param, const ReadSetLookup& reads,
                         const ClientValue& client_value) {
  AddedValues out;
  // The key tuples a parameter names, as text; a tuple with a key bound to NULL names no row.
  auto keys_of = [&](const ExpectedParam& expected) {
    std::vector<std::vector<std::string>> keys;
    for (const auto& tuple : expected.keys) {
      std::vector<std::string> key;
      for (const auto& source : tuple) {
        if (source.param_number == 0)
          key.push_back(source.literal);
        else if (std::optional<std::string> value = client_value(source.param_number))
          key.push_back(std::move(*value));
      }
      if (key.size() == tuple.size()) keys.push_back(std::move(key));
    }
    return keys;
  };
  // A version parameter and the base parameter after it name the same row: one lookup serves both.
  const ExpectedParam* looked_up = nullptr;
  std::optional<RowRead> row;
  for (const auto& expected : params) {
    const bool same_row = looked_up != nullptr && expected.carries == ExpectedParam::Carries::base &&
                          looked_up->table == expected.table && looked_up->keys == expected.keys;
    if (!same_row) {
      auto keys = keys_of(expected);
      if (expected.carries == ExpectedParam::Carries::map) {
        // A key bound to NULL matches no row: an empty map, not every tracked row.
        out.values.emplace_back(expected.keys.empty() || !keys.empty() ? reads.expected_map(*expected.table, keys)
                                                                        : "{}");
        looked_up = nullptr;
        continue;
      }
      row = keys.size() == 1 ? reads.read_row(*expected.table, keys.front()) : std::nullopt;
      looked_up = &expected;
      // Only the top-level write's own parameter: a writable CTE's pinned write has one too.
      if (row && row_write_param == expected.param_number) {
        out.written_key = std::move(keys.front());
        out.written_version = std::string(row->version);
      }
    }
    if (!row)
      out.values.emplace_back();
    else
      out.values.emplace_back(std::string(expected.carries == ExpectedParam::Carries::version ? row->version : row->base));
  }
  return out;
}

// The schemas a search_path setting names, "$user" replaced by the session's user; no setting
// (RESET, DEFAULT, the server's default) is "$user", public.
std::vector<std::string> effective_search_path(const SearchPathChange& change, std::string_view user);

}  // namespace occ
