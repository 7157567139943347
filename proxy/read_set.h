// Per-session memory of the version each protected row had when this session last saw it
// (SPEC 3.2 item 3): bounded (LRU), expiring (read_ttl), and transactional (undone on ROLLBACK
// and ROLLBACK TO SAVEPOINT, kept on COMMIT).
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "rules/rewrite.h"

namespace occ {

class ReadSet final : public ReadSetLookup {
 public:
  using Clock = std::chrono::steady_clock;

  struct Row {
    std::string version;   // text form, as the server prints it
    nlohmann::json base;   // column -> value read (object; may be empty)
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

  std::size_t size() const { return rows_.size(); }
  std::size_t journal_size() const { return journal_.size(); }

 private:
  struct Entry {
    std::string table;  // "schema.name": entries outlive a rules reload, so no TablePolicy pointer
    std::vector<std::string> key;
    Row row;
    std::list<std::string>::iterator lru;
  };
  struct Undo {
    std::string id;
    std::optional<Entry> previous;  // nullopt: the row was not there
  };

  static std::string id_of(const TablePolicy& table, const std::vector<std::string>& key);
  void remember_undo(const std::string& id);
  void put(const std::string& id, Entry entry);
  void erase(const std::string& id);
  void undo_to(std::size_t journal_length);

  std::size_t max_rows_;
  std::unordered_map<std::string, Entry> rows_;
  std::list<std::string> lru_;  // front = most recently used
  std::vector<Undo> journal_;   // changes since the last commit, oldest first
  std::vector<std::pair<std::string, std::size_t>> savepoints_;  // name, journal length
};

}  // namespace occ
