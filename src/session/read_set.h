// Per-session memory of the version each protected row had when this session last saw it
// (SPEC 3.2 item 3): bounded (LRU), expiring (read_ttl), and transactional (undone on ROLLBACK
// and ROLLBACK TO SAVEPOINT, kept on COMMIT).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "sql/rewrite.h"

namespace occ {

class ReadSet final : public ReadSetLookup {
 public:
  using Clock = std::chrono::steady_clock;

  struct Row {
    std::string version;      // text form, as the server prints it
    std::string base = "{}";  // JSON object text: column -> value read
    Clock::time_point seen;
  };

  explicit ReadSet(std::size_t max_rows) : max_rows_(max_rows) {}

  // Remembers (or refreshes) a row; provisional until the transaction it belongs to commits.
  void note(const TablePolicy& table, const std::vector<std::string>& key, Row row);
  // Forgets a row (the session deleted it).
  void forget(const TablePolicy& table, const std::vector<std::string>& key);
  // The remembered row, unless expired under the table's read_ttl.
  const Row* find(const TablePolicy& table, const std::vector<std::string>& key, Clock::time_point now) const;
  void clear();

  // Transaction outcome, as the server reports it.
  void commit();
  void rollback();
  void savepoint(const std::string& name);
  void release(const std::string& name);
  void rollback_to(const std::string& name);

  std::string expected_map(const TablePolicy& table,
                           const std::vector<std::vector<std::string>>& keys) const override;
  std::optional<RowRead> read_row(const TablePolicy& table, const std::vector<std::string>& key) const override;

  std::size_t size() const { return rows_.size(); }
  // What the open transaction keeps to undo itself: at most 2 x max_rows entries, however much it reads.
  std::size_t journal_size() const { return journal_.size() + touched_.size(); }

 private:
  // Keyed by id_of(table, key), which also yields the table and key back: an entry outlives a rules
  // reload, so it holds no TablePolicy pointer.
  struct Entry {
    Row row;
    std::list<const std::string*>::iterator lru;
    std::uint64_t seq = 0;  // when it was noted: entries noted since a mark are that mark's to undo
  };
  // A row as it was before the first change at its level; restored when that level rolls back.
  struct Undo {
    std::string id;
    Entry previous;
  };
  // Where a transaction or savepoint level began.
  struct Mark {
    std::string name;
    std::uint64_t seq = 0;
    std::size_t journal = 0;
    std::size_t touched = 0;
    bool touched_overflow = false;
  };

  static std::string id_of(const TablePolicy& table, const std::vector<std::string>& key);
  // The id's prefix shared by every row of `table`.
  static std::string table_prefix(const TablePolicy& table);
  // The key an id was made of (id_of's inverse), its table's prefix being `prefix_size` long.
  static std::vector<std::string> key_of(const std::string& id, std::size_t prefix_size);
  std::uint64_t level_start() const { return savepoints_.empty() ? transaction_.seq : savepoints_.back().seq; }
  // Journals what a change to `id` must restore, and records `id` as touched at this level.
  void before_change(const std::string& id, bool noting);
  void put(std::string id, Entry entry);
  void erase(const std::string& id);
  void undo_to(const Mark& mark);
  void end_transaction();

  std::size_t max_rows_;
  std::unordered_map<std::string, Entry> rows_;
  std::list<const std::string*> lru_;  // rows_' keys (stable in its nodes); front = most recently used
  std::uint64_t next_seq_ = 1;
  Mark transaction_;             // everything since the last commit or rollback
  std::vector<Mark> savepoints_;
  // Both lists are capped at max_rows, so a transaction that reads millions of rows costs no more
  // than the read set itself. Past the caps a rollback still forgets every row the undone part
  // noted (by seq, scanning the read set) but may not restore what it overwrote: an unknown
  // row is refused or allowed as on_unknown_version says, never a false conflict.
  std::vector<Undo> journal_;          // oldest first
  std::vector<std::string> touched_;   // ids first noted at each level, in order
  bool touched_overflow_ = false;
};

}  // namespace occ
