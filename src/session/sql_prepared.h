// The SQL-level prepared statements a session's proxy added to, by name, as the server confirmed
// them: checked writes, whose EXECUTE supplies the version the session read as the extra
// arguments they expect, and SELECTs with a shadow (sql/rewrite.h, SqlPrepared).
#pragma once

#include <string>
#include <unordered_map>

#include "session/policy_store.h"
#include "sql/rewrite.h"

namespace occ {

class SqlPreparedStatements final : public SqlPrepared {
 public:
  const PreparedWrite* prepared_write(const std::string& name) const override {
    auto it = writes_.find(name);
    return it == writes_.end() ? nullptr : &it->second.write;
  }
  const std::string* shadow_of(const std::string& name) const override {
    auto it = shadows_.find(name);
    return it == shadows_.end() ? nullptr : &it->second;
  }
  // `policy`: the rules the write was analysed under, which its TablePolicy pointers point into.
  void prepared(const std::string& name, const PreparedWrite& write, PolicyPtr policy) {
    writes_[name] = Entry{write, std::move(policy)};
  }
  void shadowed(const std::string& name, const std::string& shadow) { shadows_[name] = shadow; }
  void unshadow(const std::string& name) { shadows_.erase(name); }
  // An empty name: all of them (DEALLOCATE ALL, DISCARD ALL).
  void forget(const std::string& name) {
    if (name.empty()) {
      writes_.clear();
      shadows_.clear();
    } else {
      writes_.erase(name);
      shadows_.erase(name);
    }
  }

 private:
  struct Entry {
    PreparedWrite write;
    PolicyPtr policy;
  };
  std::unordered_map<std::string, Entry> writes_;
  std::unordered_map<std::string, std::string> shadows_;
};

}  // namespace occ
