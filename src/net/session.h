// One client connection and its own server connection: the network shell around the protocol
// core (session/relay.h). Startup, TLS and login, then two pumps that read frames, hand them to
// the core and write what it leaves in its outboxes; one end() closes both sides.
#pragma once

#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "auth/scram.h"
#include "net/connection.h"
#include "session/lifecycle.h"
#include "session/policy_store.h"
#include "session/relay.h"
#include "wire/frame_reader.h"

namespace occ {

struct Config;
struct RoleSecret;
class SessionRegistry;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(boost::asio::ip::tcp::socket client, const Config& config, PolicyStore& policy,
          SessionRegistry& registry);
  ~Session();

  boost::asio::awaitable<void> run();

  // The connection limit is reached: answer the startup with 53300 and close.
  void refuse_too_many_clients() { refused_ = true; }
  // Graceful shutdown: end now if idle, else once the current transaction ends.
  void begin_shutdown();
  // Immediate shutdown: close with 57P01.
  void terminate();

  const std::string& peer() const { return peer_; }
  // For a CancelRequest arriving on another connection (any thread): whether it names this
  // session's server backend, and whether that backend has a request of this session to work on.
  bool serves_backend(int32_t process_id, int32_t secret_key) const {
    return backend_pid_.load(std::memory_order_relaxed) == process_id &&
           backend_key_.load(std::memory_order_relaxed) == secret_key;
  }
  bool awaiting_reply() const { return awaiting_reply_.load(std::memory_order_relaxed); }
  boost::asio::any_io_executor executor() { return client_.get_executor(); }

 private:
  boost::asio::awaitable<bool> read_startup();
  boost::asio::awaitable<bool> connect_upstream();
  boost::asio::awaitable<void> start_upstream_tls();
  // auth.mode terminate (session_auth.cpp): false when the session must end (the client was told).
  boost::asio::awaitable<bool> authenticate_client();
  boost::asio::awaitable<bool> log_into_server();
  // Whether the client proved it knows the role's password; throws ScramError on a bad exchange.
  boost::asio::awaitable<bool> check_scram_proof(const RoleSecret& secret);
  boost::asio::awaitable<bool> check_md5_proof(const RoleSecret& secret);
  boost::asio::awaitable<void> pump_client_to_server();
  boost::asio::awaitable<void> pump_server_to_client();
  boost::asio::awaitable<void> write_own_requests();
  // After the core handled a batch: what other threads may read of it (a CancelRequest's check).
  void publish_state();

  const Policy& policy() { return relay_.policy(); }
  // Ends both sides once; the client gets the reason's FATAL where its row has one and
  // `tell_client` holds (not after the server's own FATAL).
  void end(EndReason reason, std::string detail = {}, bool tell_client = true);
  // Ends a session refused before relaying, when no server pump runs: logs the reason, sends the
  // client `fatal` (else the reason's own FATAL) and closes.
  boost::asio::awaitable<void> refuse(EndReason reason, std::string detail,
                                      std::optional<ClientFatal> fatal = std::nullopt);
  void close_client_after(std::chrono::milliseconds delay);

  Connection client_;
  Connection server_;
  boost::asio::steady_timer linger_;  // bounds the last words to a client that does not read
  const Config& config_;
  SessionRegistry& registry_;
  std::string peer_;

  FrameReader client_in_;
  FrameReader server_in_;
  Relay relay_;
  std::atomic<int32_t> backend_pid_{0};
  std::atomic<int32_t> backend_key_{0};
  // Requests sent to the server whose replies have not all arrived, as the other sessions'
  // threads may read it.
  std::atomic<bool> awaiting_reply_{false};

  std::string startup_packet_;  // kept until forwarded to the server
  // auth.mode terminate: what the client's proof gave the proxy to log into the server with,
  // wiped and freed once the server has answered; and the client's last login messages, held
  // until then. On the heap for the login only: an idle session should cost little.
  struct Login {
    std::optional<ScramVerifier> scram;
    ScramKey client_key{};
    std::string md5;
    std::string to_client_after_login;
  };
  std::unique_ptr<Login> login_;
  bool refused_ = false;
  bool server_pump_running_ = false;
  // The client pump's write to the server is in flight: the proxy's own requests wait for it.
  bool writing_to_server_ = false;
  std::optional<ClientFatal> fatal_for_client_;
};

}  // namespace occ
