// The session read set: an LRU map of row identity to version, with an undo journal that makes
// it follow the server's transactions.
#include "proxy/read_set.h"

#include <algorithm>

namespace occ {

std::string ReadSet::id_of(const TablePolicy& table, const std::vector<std::string>& key) {
  // Length-prefixed parts, so ("a,b") and ("a", "b") never collide.
  std::string id = table.schema;
  id.push_back('\0');
  id += table.name;
  for (const auto& part : key) {
    id.push_back('\0');
    id += std::to_string(part.size());
    id.push_back(':');
    id += part;
  }
  return id;
}

void ReadSet::remember_undo(const std::string& id) {
  auto it = rows_.find(id);
  if (it == rows_.end())
    journal_.push_back({id, std::nullopt});
  else
    journal_.push_back({id, it->second});
}

void ReadSet::put(const std::string& id, Entry entry) {
  auto it = rows_.find(id);
  if (it != rows_.end()) {
    lru_.erase(it->second.lru);
    rows_.erase(it);
  }
  lru_.push_front(id);
  entry.lru = lru_.begin();
  rows_.emplace(id, std::move(entry));
  while (rows_.size() > max_rows_) {
    // Evicting is always safe: an unknown row is never a false conflict.
    rows_.erase(lru_.back());
    lru_.pop_back();
  }
}

void ReadSet::erase(const std::string& id) {
  auto it = rows_.find(id);
  if (it == rows_.end()) return;
  lru_.erase(it->second.lru);
  rows_.erase(it);
}

void ReadSet::note(const TablePolicy& table, const std::vector<std::string>& key, Row row) {
  if (max_rows_ == 0) return;
  auto id = id_of(table, key);
  remember_undo(id);
  put(id, Entry{table.qualified_name(), key, std::move(row), {}});
}

void ReadSet::forget(const TablePolicy& table, const std::vector<std::string>& key) {
  auto id = id_of(table, key);
  if (!rows_.count(id)) return;
  remember_undo(id);
  erase(id);
}

const ReadSet::Row* ReadSet::find(const TablePolicy& table, const std::vector<std::string>& key,
                                  Clock::time_point now) const {
  auto it = rows_.find(id_of(table, key));
  if (it == rows_.end()) return nullptr;
  if (now - it->second.row.seen > table.read_ttl) return nullptr;
  return &it->second.row;
}

void ReadSet::clear() {
  rows_.clear();
  lru_.clear();
  journal_.clear();
  savepoints_.clear();
}

void ReadSet::commit() {
  journal_.clear();
  savepoints_.clear();
}

void ReadSet::undo_to(std::size_t journal_length) {
  while (journal_.size() > journal_length) {
    auto& undo = journal_.back();
    if (undo.previous) {
      // A row evicted since is not brought back: its slot may be long gone from the LRU.
      put(undo.id, std::move(*undo.previous));
    } else {
      erase(undo.id);
    }
    journal_.pop_back();
  }
}

void ReadSet::rollback() {
  undo_to(0);
  savepoints_.clear();
}

void ReadSet::savepoint(const std::string& name) { savepoints_.emplace_back(name, journal_.size()); }

void ReadSet::release(const std::string& name) {
  // RELEASE drops the named savepoint and every later one; their changes belong to the outer level.
  for (auto it = savepoints_.rbegin(); it != savepoints_.rend(); ++it) {
    if (it->first == name) {
      savepoints_.erase(std::next(it).base(), savepoints_.end());
      return;
    }
  }
}

void ReadSet::rollback_to(const std::string& name) {
  // ROLLBACK TO undoes back to the named savepoint and keeps it; later savepoints are gone.
  for (auto it = savepoints_.rbegin(); it != savepoints_.rend(); ++it) {
    if (it->first == name) {
      undo_to(it->second);
      savepoints_.erase(it.base(), savepoints_.end());
      return;
    }
  }
}

std::string ReadSet::expected_map(const TablePolicy& table, const std::vector<std::vector<std::string>>& keys) const {
  const auto now = Clock::now();
  nlohmann::json map = nlohmann::json::object();
  auto add = [&](const std::vector<std::string>& key, const Row& row) {
    nlohmann::json* node = &map;
    for (const auto& part : key) node = &(*node)[part];
    *node = {{"v", row.version}, {"b", row.base}};
  };
  if (keys.empty()) {
    const auto name = table.qualified_name();
    for (const auto& [id, entry] : rows_)
      if (entry.table == name && now - entry.row.seen <= table.read_ttl)
        add(entry.key, entry.row);
  } else {
    for (const auto& key : keys)
      if (const Row* row = find(table, key, now)) add(key, *row);
  }
  return map.dump();
}

}  // namespace occ
