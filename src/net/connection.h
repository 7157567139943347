// One side of a session: a TCP socket that may be upgraded to TLS after the SSLRequest exchange.
// Reads and writes go through here so the pumps need not know which it is.
#pragma once

#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>

#include <memory>
#include <string_view>

#include "net/tls_context.h"

namespace occ {

class Connection {
 public:
  explicit Connection(boost::asio::ip::tcp::socket socket) : plain_(std::move(socket)) {}

  boost::asio::ip::tcp::socket& socket() { return tls_ ? tls_->next_layer() : plain_; }
  const boost::asio::ip::tcp::socket& socket() const { return tls_ ? tls_->next_layer() : plain_; }
  auto get_executor() { return socket().get_executor(); }
  bool is_tls() const { return tls_ != nullptr; }
  SSL* ssl() { return tls_ ? tls_->native_handle() : nullptr; }

  boost::asio::awaitable<std::size_t> read_some(boost::asio::mutable_buffer buffer);
  // Whether a reader may wait for the socket to turn readable before it takes a buffer: not under
  // TLS, whose stream may hold bytes, decrypted or not, that the socket no longer has.
  bool can_wait_before_read() const { return !tls_; }
  boost::asio::awaitable<void> write(std::string_view bytes);
  // For a connection's last words: the error is returned, not thrown.
  boost::asio::awaitable<boost::system::error_code> try_write(std::string_view bytes);
  // Last words before a close, from outside the pumps: blocking, errors ignored.
  void write_now(std::string_view bytes);

  // Server side of the handshake (towards a client that sent SSLRequest and got 'S').
  boost::asio::awaitable<void> accept_tls(SslContextPtr context);
  // Client side (towards the database server that answered 'S'), with SNI and the host check of
  // verify-full. Throws std::runtime_error with a readable reason when the handshake fails.
  boost::asio::awaitable<void> connect_tls(SslContextPtr context, UpstreamTlsMode mode, const std::string& host);

  void close();

 private:
  boost::asio::ip::tcp::socket plain_;  // moved into tls_ by an upgrade
  SslContextPtr context_;  // declared before tls_ so it outlives it: a reload swaps contexts
  // On the heap: most connections are plain, and an idle one should cost little (SPEC 5).
  std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>> tls_;
};

}  // namespace occ
