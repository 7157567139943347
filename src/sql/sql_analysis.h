// What one SQL text writes and where in the text: session-independent, so it is cached by text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sql/literal.h"
#include "config/rules.h"

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
  TextRange value_at;        // where `value` is in the text
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
  TextRange expected_at;  // equality: where `expected` is in the text
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

// A value a statement pins a key column to: a constant or a parameter.
struct KeyValue {
  int param_number = 0;  // 1-based $n, or 0 for a constant
  std::string literal;   // a constant's value as PostgreSQL prints it (`'42'` and `42` are both "42"), see read_constant
  int token = -1;        // where the constant starts in the text
};

// A column of the target that every written row has one of `values` in.
struct KeyPin {
  std::string column;  // catalog spelling
  std::vector<KeyValue> values;
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

  // Key columns the condition pins with top-level AND conjuncts `col = value` / `col IN (values)`
  // (MERGE: also its join condition).
  std::vector<KeyPin> pins;
  // Upsert: the ON CONFLICT columns, and the columns the VALUES rows pin (valid for the rows the
  // DO UPDATE writes only when the conflict columns are the table's key).
  std::vector<std::string> conflict_columns;
  std::vector<KeyPin> inserted_pins;

  bool top_level = false;  // the statement itself: not inside a CTE, EXPLAIN, PREPARE or COPY
  bool deferred = false;   // inside PREPARE: runs later, when this text's context is gone
  bool prepared_body = false;  // the statement a PREPARE prepares (its EXECUTE's command tag is this one's)
  bool has_returning = false;
  int returning_insert_at = -1;  // top level: where ` RETURNING ...` (or `, ...` after one) goes

  // Non-empty when part of the statement could not be located in the text (then the write
  // must not be edited): a readable reason.
  std::string unlocatable;

  bool deletes() const { return kind == WriteKind::delete_ || kind == WriteKind::merge_delete; }
  const VersionFacts* facts(std::string_view version_column) const;
  const SetItem* assignment(std::string_view column) const;  // first SET item for `column`
};

// A relation in a SELECT's FROM whose name some rule protects.
struct ReadTable {
  std::string schema;            // empty when the statement does not qualify the name
  std::string name;              // catalog spelling
  std::string alias;             // empty without one
  bool renamed_columns = false;  // `AS t (a, b)`: the key and version are not reachable by name
};

// A top-level SELECT reading protected names: where the key and version columns of each of its
// rows can be appended to its target list.
struct ReadSite {
  std::vector<ReadTable> tables;  // plain relations of the top-level FROM, in FROM order
  // Empty when the columns can be appended: else why not (aggregates, DISTINCT, UNION...).
  std::string untraceable;
  int insert_at = -1;  // the end of the last target list item
  // FROM is that one table and the target list has `*` or `name.*`: each row already carries
  // the table's key and version columns.
  bool whole_rows = false;
  // No protected name in the top-level FROM, but CTEs or subqueries in FROM read exactly one
  // protected table once (`tables` holds it): where the result has that table's key and version
  // columns (the server names their origin in RowDescription), each row is one of its rows.
  bool traced = false;
  // FROM is one protected table, with no set operation or WITH: the columns of it that the WHERE
  // clause's top-level conjuncts pin to constants or parameters.
  std::vector<KeyPin> pins;
};

// A top-level INSERT (without ON CONFLICT DO UPDATE) into a table whose name some rule protects.
struct InsertSite {
  ReadTable table;  // alias: how RETURNING names the row (the table's name without one)
  bool has_returning = false;
  int returning_insert_at = -1;  // where ` RETURNING ...` (or `, ...` after one) goes
};

// Statements that change what the session's read set must remember.
enum class SessionCommand : uint8_t { none, savepoint, release, rollback_to, discard_all, reset_all };

// Results that arrive later under a name: a cursor's rows by FETCH, an SQL-level prepared
// statement's by EXECUTE. The statement that names one, and the name as the catalog spells it
// (empty for CLOSE ALL / DEALLOCATE ALL).
enum class NamedResult : uint8_t { none, declare_cursor, fetch, close_cursor, prepare, execute, deallocate };

// `SET search_path ...`: the new path as written; nullopt inside for RESET / DEFAULT.
using SearchPathChange = std::optional<std::vector<std::string>>;

struct StatementAnalysis {
  TextRange range;          // the statement without its `;`, leading comments included
  int first_token = -1;     // start of its first token that is not a comment
  int last_token_end = -1;  // end of its last token that is not a comment
  bool force_hint = false;  // an `occ:force` comment inside the statement
  std::string fingerprint;  // pg_query fingerprint, computed only when `writes` is not empty
  std::vector<WriteSite> writes;
  std::optional<ReadSite> read;
  std::optional<InsertSite> insert;
  SessionCommand command = SessionCommand::none;
  std::string savepoint;  // savepoint / release / rollback_to: the name as the catalog spells it
  std::optional<SearchPathChange> search_path_change;
  bool search_path_local = false;  // SET LOCAL: the change ends with the transaction
  NamedResult named = NamedResult::none;
  std::string result_name;
  int max_param = 0;        // the highest $n in this statement
  int declared_params = 0;  // PREPARE name (types): how many types it declares
  // EXECUTE: each argument that is a constant or a parameter (nullopt: any other expression), and
  // where more arguments go: before the closing parenthesis, or (none yet) after the name.
  std::vector<std::optional<KeyValue>> execute_args;
  int execute_args_at = -1;
  bool execute_has_args = false;
  // A PREPARE, or an EXECUTE that is the statement itself (not inside EXPLAIN or CREATE TABLE AS):
  // where the statement's name is written.
  TextRange name_at;
};

struct SqlAnalysis {
  bool parse_failed = false;
  int max_param = 0;  // the highest $n anywhere in the text
  std::vector<StatementAnalysis> statements;
};

// Parses `sql` (one Query string or one Parse statement) as a session with `syntax` reads it.
// Writes are reported only for tables whose name is protected in some schema of `rules`.
SqlAnalysis analyze_sql(std::string_view sql, const Rules& rules, StringSyntax syntax = {});

// libpg_query's fingerprint of one statement's text; empty when it does not parse.
std::string statement_fingerprint(std::string_view statement);

// `name` as an SQL identifier: bare when PostgreSQL would read it back unchanged, else quoted.
std::string quote_identifier(std::string_view name);

}  // namespace occ
