// Role secrets for auth.mode terminate: fetched through auth.query on admin_dsn on a thread of
// their own (libpq blocks), kept in memory only and only for auth.cache_ttl.
#pragma once

#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "auth/scram.h"

namespace occ {

class PgConnection;

// What the server stores for a role's password, as far as the proxy can use it.
struct RoleSecret {
  bool role_exists = false;
  std::optional<ScramVerifier> scram;  // a SCRAM-SHA-256 verifier
  std::string md5;                     // or an md5 hash ("md5" + 32 hex digits)
  bool usable() const { return scram || !md5.empty(); }
};

// Reads auth.query's first row (rolname, rolpassword): no row, a role that does not exist.
RoleSecret role_secret(bool row, const std::optional<std::string>& rolpassword);

class AuthLookup {
 public:
  AuthLookup(std::string admin_dsn, std::string query, std::chrono::milliseconds cache_ttl);
  ~AuthLookup();
  AuthLookup(const AuthLookup&) = delete;
  AuthLookup& operator=(const AuthLookup&) = delete;

  // From a session's coroutine: the cached secret, or one fetched on the lookup thread. Only
  // usable secrets are cached, so a role created or given a password is seen at its next login.
  // Throws std::runtime_error when the lookup fails (admin_dsn unreachable, auth.query broken).
  boost::asio::awaitable<RoleSecret> find(std::string role);
  // Drops a cached secret that failed a login: the password may have changed since it was fetched.
  void forget(const std::string& role);

  // Runs auth.query now, on the calling thread (`occproxy check`, and the lookup thread).
  RoleSecret fetch(const std::string& role);

 private:
  struct Cached {
    RoleSecret secret;
    std::chrono::steady_clock::time_point fetched;
  };

  std::string admin_dsn_;
  std::string query_;
  std::chrono::milliseconds cache_ttl_;
  std::mutex mutex_;
  std::unordered_map<std::string, Cached> cache_;
  std::unique_ptr<PgConnection> connection_;  // used by fetch() only, on one thread at a time
  boost::asio::thread_pool thread_{1};
};

}  // namespace occ
