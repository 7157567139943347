// Which rewritten statements one server connection holds prepared, under which names: a bounded
// LRU of names the session binds instead of parsing the statement again. No I/O: the session
// sends the Parse and Close messages this asks for.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace occ {

class StatementCache {
 public:
  static constexpr std::size_t kDefaultCapacity = 256;
  explicit StatementCache(std::size_t capacity = kDefaultCapacity) : capacity_(capacity) {}

  // The name of the statement prepared for this key, now the most recently used; null if none.
  const std::string* find(const std::string& key);
  // A fresh name for a key find() did not know, about to be prepared; evicts the least recently used beyond
  // the bound, whose name then waits in retired() to be closed on the server.
  const std::string& insert(std::string key);
  // The server does not hold this statement (its Parse failed, or it said it does not exist).
  void forget(std::string_view name);
  // The server holds it but it must not be bound again (its cached plan is stale): close it.
  void retire(std::string_view name);
  // A Close the server skipped (an earlier error in its batch): handed over again.
  void close_later(std::string name) { retired_.push_back(std::move(name)); }
  // Names to close on the server, handed over once.
  std::vector<std::string> take_retired() { return std::exchange(retired_, {}); }
  // The server dropped every prepared statement (DISCARD ALL, DEALLOCATE ALL).
  void clear();

  std::size_t size() const { return lru_.size(); }

 private:
  struct Entry {
    std::string key;
    std::string name;
  };
  std::list<Entry>::iterator by_name(std::string_view name);

  std::size_t capacity_;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> by_key_;
  std::vector<std::string> retired_;
  uint64_t next_id_ = 1;  // never reset: a name is never reused for other text
};

// The key of a rewritten statement: a prepared statement means its text, its declared parameter
// types and the search_path its names were resolved under.
std::string statement_cache_key(std::string_view sql, const std::vector<int32_t>& param_types,
                                const std::vector<std::string>& search_path);

}  // namespace occ
