// Bookkeeping of live sessions: limit, iteration for shutdown, notice when the last one leaves.
#include "net/session_registry.h"

#include <vector>

namespace occ {

bool SessionRegistry::add(const std::shared_ptr<Session>& session) {
  std::lock_guard lock(mutex_);
  if (sessions_.size() >= limit_) return false;
  sessions_.emplace(session.get(), session);
  return true;
}

void SessionRegistry::remove(const Session* session) {
  std::function<void()> notify;
  {
    std::lock_guard lock(mutex_);
    if (sessions_.erase(session) == 0) return;
    if (sessions_.empty()) notify = on_empty_;
  }
  if (notify) notify();
}

std::size_t SessionRegistry::size() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

void SessionRegistry::for_each(const std::function<void(const std::shared_ptr<Session>&)>& fn) const {
  std::vector<std::shared_ptr<Session>> alive;
  {
    std::lock_guard lock(mutex_);
    alive.reserve(sessions_.size());
    for (const auto& [key, weak] : sessions_)
      if (auto s = weak.lock()) alive.push_back(std::move(s));
  }
  for (const auto& s : alive) fn(s);
}

void SessionRegistry::on_empty(std::function<void()> fn) {
  bool empty_now;
  {
    std::lock_guard lock(mutex_);
    on_empty_ = fn;
    empty_now = sessions_.empty();
  }
  if (empty_now && fn) fn();
}

}  // namespace occ
