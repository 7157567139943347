// The session read set: an LRU map of row identity to version, with an undo journal that makes
// it follow the server's transactions.
#include "session/read_set.h"

#include <algorithm>

#include "sql/json_text.h"

namespace occ {

std::string ReadSet::table_prefix(const TablePolicy& table) {
  std::string prefix = table.schema;
  prefix.push_back('\0');
  prefix += table.name;
  return prefix;
}

std::string ReadSet::id_of(const TablePolicy& table, const std::vector<std::string>& key) {
  // Length-prefixed parts, so ("a,b") and ("a", "b") never collide.
  std::string id = table_prefix(table);
  for (const auto& part : key) {
    id.push_back('\0');
    id += std::to_string(part.size());
    id.push_back(':');
    id += part;
  }
  return id;
}

std::vector<std::string> ReadSet::key_of(const std::string& id, std::size_t prefix_size) {
  std::vector<std::string> key;
  for (std::size_t at = prefix_size; at < id.size();) {
    const std::size_t colon = id.find(':', at + 1);
    const std::size_t length = std::stoul(id.substr(at + 1, colon - at - 1));
    key.push_back(id.substr(colon + 1, length));
    at = colon + 1 + length;
  }
  return key;
}

void ReadSet::before_change(const std::string& id, bool noting) {
  auto it = rows_.find(id);
  // Noted at this level already: its first change here journaled and touched it.
  if (it != rows_.end() && it->second.seq >= level_start()) return;
  if (it != rows_.end() && journal_.size() < max_rows_) {
    journal_.push_back({id, it->second});
    journal_.back().previous.lru = {};  // its list node may be gone by the time it is restored
  }
  if (!noting) return;
  if (touched_.size() < max_rows_)
    touched_.push_back(id);
  else
    touched_overflow_ = true;
}

void ReadSet::put(std::string id, Entry entry) {
  auto [it, added] = rows_.try_emplace(std::move(id));
  if (added) {
    lru_.push_front(&it->first);
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  entry.lru = lru_.begin();
  it->second = std::move(entry);
  while (rows_.size() > max_rows_) {
    // Evicting is always safe: an unknown row is never a false conflict.
    auto oldest = rows_.find(*lru_.back());
    lru_.pop_back();
    rows_.erase(oldest);
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
  before_change(id, true);
  put(std::move(id), Entry{std::move(row), {}, next_seq_++});
}

void ReadSet::forget(const TablePolicy& table, const std::vector<std::string>& key) {
  auto id = id_of(table, key);
  if (!rows_.count(id)) return;
  before_change(id, false);
  erase(id);
}

const ReadSet::Row* ReadSet::find(const TablePolicy& table, const std::vector<std::string>& key,
                                  Clock::time_point now) const {
  auto it = rows_.find(id_of(table, key));
  if (it == rows_.end()) return nullptr;
  if (now - it->second.row.seen > table.read_ttl) return nullptr;
  return &it->second.row;
}

void ReadSet::end_transaction() {
  journal_.clear();
  touched_.clear();
  // A big transaction's lists are not kept around for the small ones after it.
  if (journal_.capacity() > 1024) journal_.shrink_to_fit();
  if (touched_.capacity() > 1024) touched_.shrink_to_fit();
  touched_overflow_ = false;
  savepoints_.clear();
  transaction_ = Mark{{}, next_seq_, 0, 0, false};
}

void ReadSet::clear() {
  rows_.clear();
  lru_.clear();
  end_transaction();
}

void ReadSet::commit() { end_transaction(); }

void ReadSet::undo_to(const Mark& mark) {
  // First forget every row noted since the mark...
  if (touched_overflow_) {
    for (auto it = rows_.begin(); it != rows_.end();) {
      if (it->second.seq >= mark.seq) {
        lru_.erase(it->second.lru);
        it = rows_.erase(it);
      } else {
        ++it;
      }
    }
  } else {
    for (std::size_t i = mark.touched; i < touched_.size(); ++i) {
      auto it = rows_.find(touched_[i]);
      if (it != rows_.end() && it->second.seq >= mark.seq) erase(touched_[i]);
    }
  }
  touched_.resize(std::min(touched_.size(), mark.touched));
  touched_overflow_ = mark.touched_overflow;
  // ...then bring back what it overwrote, newest first so that the state at the mark wins. A record
  // of a row that was itself noted after the mark (a deeper level's journal) must stay undone.
  while (journal_.size() > mark.journal) {
    auto& undo = journal_.back();
    if (undo.previous.seq < mark.seq) put(undo.id, std::move(undo.previous));
    journal_.pop_back();
  }
}

void ReadSet::rollback() {
  undo_to(transaction_);
  end_transaction();
}

void ReadSet::savepoint(const std::string& name) {
  savepoints_.push_back(Mark{name, next_seq_, journal_.size(), touched_.size(), touched_overflow_});
}

void ReadSet::release(const std::string& name) {
  // RELEASE drops the named savepoint and every later one; their changes belong to the outer level.
  for (auto it = savepoints_.rbegin(); it != savepoints_.rend(); ++it) {
    if (it->name == name) {
      savepoints_.erase(std::next(it).base(), savepoints_.end());
      return;
    }
  }
}

void ReadSet::rollback_to(const std::string& name) {
  // ROLLBACK TO undoes back to the named savepoint and keeps it; later savepoints are gone.
  for (auto it = savepoints_.rbegin(); it != savepoints_.rend(); ++it) {
    if (it->name == name) {
      savepoints_.erase(it.base(), savepoints_.end());
      undo_to(savepoints_.back());
      return;
    }
  }
}

std::string ReadSet::expected_map(const TablePolicy& table, const std::vector<std::vector<std::string>>& keys) const {
  const auto now = Clock::now();
  std::vector<std::pair<std::vector<std::string>, const Row*>> found;
  if (keys.empty()) {
    // Every row of the table, its key read back from its id.
    const std::string prefix = table_prefix(table);
    for (const auto& [id, entry] : rows_) {
      if (!id.starts_with(prefix) || id.size() == prefix.size() || id[prefix.size()] != '\0') continue;
      if (now - entry.row.seen > table.read_ttl) continue;
      found.emplace_back(key_of(id, prefix.size()), &entry.row);
    }
  } else {
    for (const auto& key : keys)
      if (const Row* row = find(table, key, now)) found.emplace_back(key, row);
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  found.erase(std::unique(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first == b.first; }),
              found.end());
  // Nested objects, one level per key column: {"k1": {"k2": {"b": base, "v": version}}}. Sorted
  // keys put the rows that share a prefix next to each other, under one object.
  std::string out = "{";
  const std::vector<std::string>* previous = nullptr;
  for (const auto& [key_parts, row] : found) {
    const std::vector<std::string>* key = &key_parts;
    const std::size_t depth = key->size();
    std::size_t common = 0;
    if (previous != nullptr) {
      while (common + 1 < depth && (*previous)[common] == (*key)[common]) ++common;
      out.append(depth - 1 - common, '}');
      out += ',';
    }
    for (std::size_t i = common; i < depth; ++i) {
      append_json_string(out, (*key)[i]);
      out += ":{";
    }
    out += "\"b\":";
    out += row->base;
    out += ",\"v\":";
    append_json_string(out, row->version);
    out += '}';
    previous = key;
  }
  if (previous != nullptr) out.append(previous->size() - 1, '}');
  out += '}';
  return out;
}

std::optional<RowRead> ReadSet::read_row(const TablePolicy& table, const std::vector<std::string>& key) const {
  const Row* row = find(table, key, Clock::now());
  if (row == nullptr) return std::nullopt;
  return RowRead{row->version, row->base};
}

}  // namespace occ
