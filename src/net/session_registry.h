// The sessions alive in the process: the connection limit, and who to tell when shutting down.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace occ {

class Session;

class SessionRegistry {
 public:
  explicit SessionRegistry(std::size_t limit) : limit_(limit) {}

  // False when the limit is reached (the caller refuses the client with 53300).
  bool add(const std::shared_ptr<Session>& session);
  void remove(const Session* session);
  std::size_t size() const;
  void for_each(const std::function<void(const std::shared_ptr<Session>&)>& fn) const;
  // Called (on the removing thread) when the last session leaves.
  void on_empty(std::function<void()> fn);

 private:
  mutable std::mutex mutex_;
  std::size_t limit_;
  std::unordered_map<const Session*, std::weak_ptr<Session>> sessions_;
  std::function<void()> on_empty_;
};

}  // namespace occ
