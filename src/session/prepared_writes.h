// The checked writes a session prepared with SQL-level PREPARE, by name, as the server confirmed
// them: each EXECUTE supplies the version the session read as the extra arguments they expect.
#pragma once

#include <string>
#include <unordered_map>

#include "session/policy_store.h"
#include "sql/rewrite.h"

namespace occ {

class SqlPreparedWrites final : public PreparedWrites {
 public:
  const PreparedWrite* prepared_write(const std::string& name) const override {
    auto it = writes_.find(name);
    return it == writes_.end() ? nullptr : &it->second.write;
  }
  // `policy`: the rules the write was analysed under, which its TablePolicy pointers point into.
  void prepared(const std::string& name, const PreparedWrite& write, PolicyPtr policy) {
    writes_[name] = Entry{write, std::move(policy)};
  }
  // An empty name: all of them (DEALLOCATE ALL, DISCARD ALL).
  void forget(const std::string& name) {
    if (name.empty())
      writes_.clear();
    else
      writes_.erase(name);
  }

 private:
  struct Entry {
    PreparedWrite write;
    PolicyPtr policy;
  };
  std::unordered_map<std::string, Entry> writes_;
};

}  // namespace occ
