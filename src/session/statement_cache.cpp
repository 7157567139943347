// The per-server-connection LRU of prepared rewritten statements.
#include "session/statement_cache.h"

#include <utility>

namespace occ {

const std::string* StatementCache::find(const std::string& key) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return &it->second->name;
}

const std::string& StatementCache::insert(std::string key) {
  while (capacity_ > 0 && lru_.size() >= capacity_) retire(lru_.back().name);
  lru_.push_front({std::move(key), "occ_" + std::to_string(next_id_++)});
  by_key_.emplace(lru_.front().key, lru_.begin());
  return lru_.front().name;
}

std::list<StatementCache::Entry>::iterator StatementCache::by_name(std::string_view name) {
  for (auto it = lru_.begin(); it != lru_.end(); ++it)
    if (it->name == name) return it;
  return lru_.end();
}

void StatementCache::forget(std::string_view name) {
  auto it = by_name(name);
  if (it == lru_.end()) return;
  by_key_.erase(it->key);
  lru_.erase(it);
}

void StatementCache::retire(std::string_view name) {
  auto it = by_name(name);
  if (it == lru_.end()) return;
  retired_.push_back(std::move(it->name));
  by_key_.erase(it->key);
  lru_.erase(it);
}

void StatementCache::clear() {
  lru_.clear();
  by_key_.clear();
  retired_.clear();
}

std::string statement_cache_key(std::string_view sql, const std::vector<int32_t>& param_types,
                                const std::vector<std::string>& search_path) {
  std::string key(sql);
  key.push_back('\0');
  for (int32_t type : param_types) key.append(std::to_string(type)).push_back(',');
  for (const auto& schema : search_path) key.append(schema).push_back('\0');
  return key;
}

}  // namespace occ
