// Plain or TLS I/O for one side of a session.
#include "net/connection.h"

#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <stdexcept>
#include <string>

namespace occ {

namespace asio = boost::asio;
using asio::use_awaitable;

asio::awaitable<std::size_t> Connection::read_some(asio::mutable_buffer buffer) {
  if (tls_) co_return co_await tls_->async_read_some(buffer, use_awaitable);
  co_return co_await plain_.async_read_some(buffer, use_awaitable);
}

asio::awaitable<void> Connection::write(std::string_view bytes) {
  if (tls_)
    co_await asio::async_write(*tls_, asio::buffer(bytes), use_awaitable);
  else
    co_await asio::async_write(plain_, asio::buffer(bytes), use_awaitable);
}

asio::awaitable<boost::system::error_code> Connection::try_write(std::string_view bytes) {
  boost::system::error_code ec;
  if (tls_)
    co_await asio::async_write(*tls_, asio::buffer(bytes), asio::redirect_error(use_awaitable, ec));
  else
    co_await asio::async_write(plain_, asio::buffer(bytes), asio::redirect_error(use_awaitable, ec));
  co_return ec;
}

void Connection::write_now(std::string_view bytes) {
  boost::system::error_code ignored;
  if (tls_)
    asio::write(*tls_, asio::buffer(bytes), ignored);
  else
    asio::write(plain_, asio::buffer(bytes), ignored);
}

asio::awaitable<void> Connection::accept_tls(SslContextPtr context) {
  context_ = std::move(context);
  tls_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket>>(std::move(plain_), *context_);
  co_await tls_->async_handshake(asio::ssl::stream_base::server, use_awaitable);
}

asio::awaitable<void> Connection::connect_tls(SslContextPtr context, UpstreamTlsMode mode, const std::string& host) {
  context_ = std::move(context);
  tls_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket>>(std::move(plain_), *context_);
  if (auto error = prepare_upstream_ssl(tls_->native_handle(), mode, host); !error.empty())
    throw std::runtime_error(error);
  boost::system::error_code ec;
  co_await tls_->async_handshake(asio::ssl::stream_base::client, asio::redirect_error(use_awaitable, ec));
  if (ec) {
    auto why = upstream_verify_error(tls_->native_handle());
    throw std::runtime_error("TLS handshake with the server failed: " + (why.empty() ? ec.message() : why));
  }
}

void Connection::close() {
  boost::system::error_code ignored;
  socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket().close(ignored);
}

}  // namespace occ
