// The results of tracked statements (SPEC 3.2 item 3, 3.9): where each row's key and version
// are, cutting the proxy's added columns off what the client sees, and noting the rows read in
// the session's read set. The one place that decides how a row too large to buffer may pass.
// No I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "wire/messages.h"
#include "session/read_set.h"
#include "admin/catalog.h"
#include "sql/rewrite.h"

namespace occ {

// Longest value read that the read set keeps for the conflict diff; longer ones are left out.
inline constexpr std::size_t kMaxBaseValue = 2048;
// Longest key or version value a streamed row is noted by. A btree index entry is at most about
// 2.7 kB, so a real key is never longer; a longer one leaves the row unnoted.
inline constexpr std::size_t kMaxKeyValue = 8192;

// Whether result column `column` is sent in text format, by Bind's result format codes as the
// client sent them: none (all text), one for all, or one each.
bool text_format(const std::vector<int16_t>& formats, std::size_t column);

// Where a tracked result's columns come from, learnt from its RowDescription.
struct ResultLayout {
  bool known = false;
  unsigned client_columns = 0;
  bool described = false;  // from a RowDescription; an Execute without Describe gets none
  unsigned added = 0;      // described: the proxy's columns after the client's, cut off every row
  bool foreign = false;    // ResultTracking::by_name, but the columns are not the proxy's: untouched
  struct BaseColumn {
    unsigned index;  // position in the row the client sees
    unsigned table;  // index into ResultTracking::tables
    std::string name;
  };
  std::vector<BaseColumn> base;  // text-format columns of tracked tables: the values read
  // ResultTracking::in_place: where the table's key columns (in key order) and version column
  // are among the client's; -1 where the result lacks one, and no row is noted.
  std::vector<int> key_at;
  int version_at = -1;
};

// The layout of a tracked result; throws MalformedMessage when it lacks the added columns.
ResultLayout describe_layout(const pg::RowDescription& description, const ResultTracking& tracking,
                             const RelationIndex& relations);

// How many columns the proxy added to each row: as described, else as the statement was rewritten.
inline unsigned added_columns(const ResultTracking& tracking, const ResultLayout& layout) {
  return layout.described ? layout.added : tracking.added_columns;
}

// The RowDescription the client gets: without the added columns.
void client_row_description(std::string& out, pg::RowDescription description, const ResultLayout& layout);

// The DataRow the client gets: the added columns follow the client's, so the body is cut.
void client_data_row(std::string& out, const pg::DataRow& row, std::string_view body, unsigned added);

// How a DataRow of a result passes when it is too large to hold whole.
enum class RowPassage {
  stream,  // untracked: forwarded as it arrives
  scan,    // tracked in place: forwarded as it arrives, its key, version and values read on the way
  drop,    // a RETURNING only the proxy asked for: discarded as it arrives
  whole,   // added columns follow the client's: held whole, then cut (its length word must change)
};
RowPassage large_row_passage(const ResultTracking* tracking, const ResultLayout& layout);

// Reads a DataRow body fed in pieces, keeping the first `cap` bytes of each column a layout needs.
class RowScanner {
 public:
  // Per column: how many bytes to keep (0: none). Columns past the end keep none.
  explicit RowScanner(std::vector<std::size_t> caps) : caps_(std::move(caps)) {}
  // Caps for an in-place tracked row: its key and version columns, and the base values.
  static RowScanner for_layout(const ResultLayout& layout);

  // Throws MalformedMessage on a body that is not a DataRow's.
  void feed(std::string_view bytes);
  bool complete() const { return phase_ == Phase::done; }
  // Once complete: the kept values (nullopt for SQL NULL and for columns not kept).
  pg::DataRow row() const;
  // Whether column `i` was longer than its cap (its kept value is a prefix).
  bool truncated(std::size_t i) const { return i < truncated_.size() && truncated_[i]; }

 private:
  enum class Phase { count, length, value, done };
  std::vector<std::size_t> caps_;
  Phase phase_ = Phase::count;
  char word_[4] = {};
  std::size_t word_have_ = 0;
  std::size_t columns_ = 0;
  std::size_t column_ = 0;
  std::size_t value_left_ = 0;
  std::vector<std::optional<std::string>> values_;
  std::vector<bool> truncated_;
};

// The cursors (or SQL-level prepared statements) of a session whose rows arrive later, by FETCH
// (EXECUTE): each with the tracking of the query it was declared with. Bounded: a name it no
// longer holds is still cut by the added columns' names, its rows just go unnoted.
class NamedResults {
 public:
  static constexpr std::size_t kMaxNames = 256;

  // `generation`: the rules generation the tracking's TablePolicy pointers belong to.
  void declare(const std::string& name, const ResultTracking& tracking, uint64_t generation);
  // How to track the rows fetched or executed by `name` under rules `generation`.
  ResultTracking rows_of(const std::string& name, uint64_t generation) const;
  // An empty name: all of them (CLOSE ALL, DEALLOCATE ALL).
  void forget(const std::string& name);
  void clear() { names_.clear(); }
  std::size_t size() const { return names_.size(); }

 private:
  struct Entry {
    ResultTracking tracking;
    uint64_t generation = 0;
  };
  std::unordered_map<std::string, Entry> names_;
};

// Notes the key and version (and base values) of every tracked table's row in `row`.
// `result_formats`: the Bind's, for an Execute's rows; null for a simple Query's (all text).
void note_row(ReadSet& reads, const pg::DataRow& row, const ResultTracking& tracking, const ResultLayout& layout,
              const std::vector<int16_t>* result_formats);

}  // namespace occ
