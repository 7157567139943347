// Role secret lookups for auth.mode terminate, with their in-memory cache.
#include "auth/auth_lookup.h"

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "auth/md5_auth.h"
#include "admin/pg_connection.h"

namespace occ {

namespace asio = boost::asio;

RoleSecret role_secret(bool row, const std::optional<std::string>& rolpassword) {
  RoleSecret secret;
  secret.role_exists = row;
  if (!row || !rolpassword) return secret;
  secret.scram = parse_scram_verifier(*rolpassword);
  if (!secret.scram && is_md5_hash(*rolpassword)) secret.md5 = *rolpassword;
  return secret;
}

AuthLookup::AuthLookup(std::string admin_dsn, std::string query, std::chrono::milliseconds cache_ttl)
    : admin_dsn_(std::move(admin_dsn)), query_(std::move(query)), cache_ttl_(cache_ttl) {}

AuthLookup::~AuthLookup() { thread_.join(); }

asio::awaitable<RoleSecret> AuthLookup::find(std::string role) {
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mutex_);
    auto it = cache_.find(role);
    if (it != cache_.end()) {
      if (now - it->second.fetched < cache_ttl_) co_return it->second.secret;
      cache_.erase(it);
    }
  }
  // The query runs on the lookup thread; the session resumes on its own executor with the result.
  RoleSecret secret = co_await asio::async_initiate<decltype(asio::use_awaitable), void(std::exception_ptr, RoleSecret)>(
      [this](auto handler, std::string name) {
        asio::post(thread_, [this, name = std::move(name), handler = std::move(handler)]() mutable {
          std::exception_ptr error;
          RoleSecret found;
          try {
            found = fetch(name);
          } catch (...) {
            error = std::current_exception();
          }
          auto executor = asio::get_associated_executor(handler);
          asio::dispatch(executor, [handler = std::move(handler), error, found = std::move(found)]() mutable {
            handler(error, std::move(found));
          });
        });
      },
      asio::use_awaitable, role);
  if (secret.usable() && cache_ttl_.count() > 0) {
    std::lock_guard lock(mutex_);
    cache_[role] = Cached{secret, now};
  }
  co_return secret;
}

void AuthLookup::forget(const std::string& role) {
  std::lock_guard lock(mutex_);
  cache_.erase(role);
}

RoleSecret AuthLookup::fetch(const std::string& role) {
  // One retry on a fresh connection: the kept one may have been closed by the server meanwhile.
  for (int attempt = 0;; ++attempt) {
    try {
      if (!connection_) connection_ = std::make_unique<PgConnection>(admin_dsn_);
      PgResult result = connection_->query(query_, {role});
      if (result.columns() != 2) throw std::runtime_error("auth.query must return two columns: rolname, rolpassword");
      const bool row = result.rows() > 0;
      return role_secret(row, row ? result.nullable(0, 1) : std::nullopt);
    } catch (const PgError& e) {
      connection_.reset();
      if (attempt > 0) {
        // The first line says what failed; libpq adds the query text and a caret under the spot.
        const std::string_view message = e.what();
        throw std::runtime_error("auth.query on admin_dsn failed: " + std::string(message.substr(0, message.find('\n'))));
      }
    }
  }
}

}  // namespace occ
