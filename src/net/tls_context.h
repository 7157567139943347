// OpenSSL contexts for both hops from the `tls` config (rebuilt on SIGHUP) and RFC 5929 channel binding data.
#pragma once

#include <utility>

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config/config.h"

namespace occ {

// Every connection holds the shared_ptr of the context its SSL object came from for as long as
// the connection lives: a reload swaps in new contexts without freeing the ones still in use.
using SslContextPtr = std::shared_ptr<boost::asio::ssl::context>;

// Both contexts of one load, swapped together so that a reload is all or nothing.
struct TlsContexts {
  SslContextPtr for_clients;     // null when client_mode is disable
  std::string client_end_point;  // tls-server-end-point of cert_file's leaf, for SCRAM-SHA-256-PLUS
  SslContextPtr for_upstream;    // null when upstream_mode is disable
};
using TlsContextsPtr = std::shared_ptr<const TlsContexts>;

// A context or a readable reason (naming the file) why there is none.
struct SslContextResult {
  SslContextPtr context;
  std::string error;
};

struct TlsContextsResult {
  TlsContextsPtr contexts;
  std::string error;
};

// The server side for clients: cert_file's chain and key_file's key, checked to belong together;
// TLS 1.2 or later; ALPN "postgresql" accepted when a client offers it.
SslContextResult make_client_context(const TlsConfig& config);

// The client side for the server: TLS 1.2 or later; verify-ca and verify-full check the chain
// against upstream_ca_file; the host name check of verify-full is per connection
// (prepare_upstream_ssl).
SslContextResult make_upstream_context(const TlsConfig& config);

// Both, as the config asks; at startup an error is fatal, on SIGHUP the caller logs it and keeps
// the contexts it has.
TlsContextsResult load_tls(const TlsConfig& config);

// For one upstream connection, before its handshake: SNI for a host name (never for an address,
// as libpq does) and, under verify-full, the check that the certificate names `host` (DNS name or
// IP address; the subject CN only when the certificate has no DNS names). Returns an error text
// or "".
std::string prepare_upstream_ssl(SSL* ssl, UpstreamTlsMode mode, const std::string& host);

// After a failed upstream handshake: why the server's certificate was refused ("hostname mismatch",
// "unable to get local issuer certificate", ...), or "" when verification was not the cause.
std::string upstream_verify_error(SSL* ssl);

// RFC 5929 tls-server-end-point: the certificate's DER hashed with its signature's hash algorithm,
// SHA-256 when that is MD5 or SHA-1. Empty when the signature has no single hash (Ed25519, ...),
// in which case channel binding is not offered.
std::string tls_server_end_point(X509* certificate);

// The same for the certificate the peer of this connection presented (the server's, upstream).
std::string peer_end_point(SSL* ssl);

}  // namespace occ
