// What one SQL text writes and where in the text: session-independent, so it is cached by text.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/rules.h"

namespace occ {

// A half-open byte range [begin, end) of the analysed text.
struct TextRange {
  int begin = -1;
  int end = -1;
  bool valid() const { return begin >= 0 && end >= begin; }
};

// One item of a SET list, e.g. `status = $1` or one column of `(a, b) = (1, 2)`.
struct SetItem {
  std::string column;        // as the parser normalised it (catalog spelling)
  bool row_wise = false;     // one column of `(a, b) = ...`
  bool subscripted = false;  // `col[1] = ...` or `col.field = ...`
  bool is_default = false;   // `col = DEFAULT`
  TextRange item;            // `col = value`; for a row-wise item the whole `(a, b) = ...` group
  std::string value;         // the value as written (row-wise: its element, or the whole source)
};

// How a write's condition constrains one version column.
struct VersionUse {
  enum class Kind {
    none,      // not mentioned
    equality,  // exactly one top-level AND conjunct `version = <constant or parameter>`
    other,     // mentioned some other way (under OR/NOT, compared with a column, twice...)
  };
  Kind kind = Kind::none;
  TextRange conjunct;    // equality: the whole conjunct
  std::string expected;  // equality: the constant or parameter as written, e.g. `3`, `$2::bigint`
};

// The facts about one candidate version column of a write (a table name may be protected in
// several schemas with different version columns; the session's search_path picks one).
struct VersionFacts {
  std::string column;
  VersionUse condition;            // in the write's own condition (WHERE / WHEN MATCHED AND ...)
  bool in_join_condition = false;  // MERGE: mentioned in ON ...
};

enum class WriteKind {
  update,        // UPDATE
  delete_,       // DELETE
  upsert,        // INSERT ... ON CONFLICT ... DO UPDATE
  merge_update,  // MERGE ... WHEN MATCHED THEN UPDATE
  merge_delete,  // MERGE ... WHEN MATCHED THEN DELETE
};

// One write to a table whose name some rule protects.
struct WriteSite {
  WriteKind kind = WriteKind::update;
  std::string schema;   // empty when the statement does not qualify the name
  std::string name;     // relation name, catalog spelling
  std::string refname;  // alias, else name: how the statement's expressions name the row

  // Update-like writes: the SET list and where an extra item goes (end of the SET keyword).
  std::vector<SetItem> set_items;
  int set_keyword_end = -1;

  // The write's condition (WHERE, or MERGE's WHEN MATCHED AND ...).
  bool has_condition = false;
  TextRange condition;
  bool condition_is_or = false;  // top node is OR: needs parentheses before `AND guard`
  bool current_of = false;       // WHERE CURRENT OF cursor
  int condition_insert_at = -1;  // without a condition: where ` WHERE ...` / ` AND ...` goes

  std::vector<VersionFacts> versions;  // one per candidate version column

  // Non-empty when part of the statement could not be located in the text (then the write
  // must not be edited): a readable reason.
  std::string unlocatable;

  bool deletes() const { return kind == WriteKind::delete_ || kind == WriteKind::merge_delete; }
  const VersionFacts* facts(std::string_view version_column) const;
  const SetItem* assignment(std::string_view column) const;  // first SET item for `column`
};

// `SET search_path ...`: the new path as written; nullopt inside for RESET / DEFAULT.
using SearchPathChange = std::optional<std::vector<std::string>>;

struct StatementAnalysis {
  TextRange range;          // the statement without its `;`, leading comments included
  int first_token = -1;     // start of its first token that is not a comment
  bool force_hint = false;  // an `occ:force` comment inside the statement
  std::string fingerprint;  // pg_query fingerprint, computed only when `writes` is not empty
  std::vector<WriteSite> writes;
  std::optional<SearchPathChange> search_path_change;
};

struct SqlAnalysis {
  bool parse_failed = false;
  std::vector<StatementAnalysis> statements;
};

// Parses `sql` (one Query string or one Parse statement). Writes are reported only for tables
// whose name is protected in some schema of `rules`.
SqlAnalysis analyze_sql(std::string_view sql, const Rules& rules);

// `name` as an SQL identifier: bare when PostgreSQL would read it back unchanged, else quoted.
std::string quote_identifier(std::string_view name);

}  // namespace occ
