// The rules and catalog view in force, swapped whole on reload. Sessions keep a snapshot and
// check one relaxed counter per message to notice a swap, so the hot path takes no lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "admin/catalog.h"
#include "config/rules.h"

namespace occ {

class AuthLookup;
struct TlsContexts;  // the network shell's; the session core only carries the snapshot's pointer

struct Policy {
  RulesPtr rules;
  RelationIndex relations;
  std::shared_ptr<const TlsContexts> tls;  // null: TLS declined on both hops
  std::shared_ptr<AuthLookup> auth;  // auth.mode terminate only
  bool protects_anything() const { return rules && !rules->tables.empty(); }
};
using PolicyPtr = std::shared_ptr<const Policy>;

class PolicyStore {
 public:
  PolicyPtr get() const {
    std::lock_guard lock(mutex_);
    return current_;
  }
  void set(PolicyPtr policy) {
    set_current_rules(policy ? policy->rules : nullptr);
    {
      std::lock_guard lock(mutex_);
      current_ = std::move(policy);
    }
    generation_.fetch_add(1, std::memory_order_release);
  }
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  mutable std::mutex mutex_;
  PolicyPtr current_ = std::make_shared<const Policy>();
  std::atomic<uint64_t> generation_{1};
};

}  // namespace occ
