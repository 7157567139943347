// Builds the OpenSSL contexts with errors naming file and reason; hashes certificates as PostgreSQL does.
#include "net/tls_context.h"

#include <boost/asio/ip/address.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <system_error>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

namespace occ {

namespace {

namespace ssl = boost::asio::ssl;

// The first reason in OpenSSL's error queue (the cause; later entries only wrap it); empties the queue.
std::string openssl_error() {
  std::string first;
  while (unsigned long code = ERR_get_error()) {
    if (!first.empty()) continue;
    const char* reason = ERR_reason_error_string(code);
    first = reason ? reason : "OpenSSL error " + std::to_string(code);
  }
  return first.empty() ? "unknown OpenSSL error" : first;
}

// Why `path` cannot be read, or "" when it can: OpenSSL's own message for a missing file is "system lib".
std::string unreadable(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return "it is a folder, not a file";
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return std::error_code(errno, std::generic_category()).message();
  std::fclose(f);
  return {};
}

// PEM marks an encrypted key either way: "BEGIN ENCRYPTED PRIVATE KEY" (PKCS#8) or "Proc-Type: 4,ENCRYPTED".
bool is_encrypted_pem(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string head(4096, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<std::size_t>(in.gcount()));
  return head.find("ENCRYPTED") != std::string::npos;
}

std::string file_problem(const char* key, const std::string& path, const std::string& problem) {
  return std::string(key) + " " + path + ": " + problem;
}

// An encrypted key would make OpenSSL prompt on the terminal; refusing the passphrase fails the load instead.
int no_passphrase(char*, int, int, void*) { return 0; }

int select_postgresql_alpn(SSL*, const unsigned char** out, unsigned char* out_length, const unsigned char* offered,
                           unsigned offered_length, void*) {
  static const unsigned char postgresql[] = {10, 'p', 'o', 's', 't', 'g', 'r', 'e', 's', 'q', 'l'};
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, out_length, postgresql, sizeof postgresql, offered, offered_length) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// What both sides share: TLS 1.2 at least (PostgreSQL's own minimum), no compression, no renegotiation.
SslContextPtr new_context(ssl::context::method method) {
  auto context = std::make_shared<ssl::context>(method);
  SSL_CTX* native = context->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_default_passwd_cb(native, no_passphrase);
  return context;
}

}  // namespace

SslContextResult make_client_context(const TlsConfig& config) {
  ERR_clear_error();
  for (const auto& [key, path] :
       {std::pair{"tls.cert_file", &config.cert_file}, std::pair{"tls.key_file", &config.key_file}}) {
    if (path->empty()) return {nullptr, std::string(key) + " is not set"};
    if (auto problem = unreadable(*path); !problem.empty()) {
      return {nullptr, file_problem(key, *path, "cannot read it: " + problem)};
    }
  }
  auto context = new_context(ssl::context::tls_server);
  SSL_CTX* native = context->native_handle();
  if (SSL_CTX_use_certificate_chain_file(native, config.cert_file.c_str()) != 1) {
    return {nullptr,
            file_problem("tls.cert_file", config.cert_file, "no PEM certificate in it (" + openssl_error() + ")")};
  }
  // Read by hand rather than with SSL_CTX_use_PrivateKey_file, whose mismatch error does not say
  // which file is wrong.
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(nullptr, &EVP_PKEY_free);
  if (std::unique_ptr<BIO, decltype(&BIO_free)> in(BIO_new_file(config.key_file.c_str(), "r"), &BIO_free); in) {
    key.reset(PEM_read_bio_PrivateKey(in.get(), nullptr, no_passphrase, nullptr));
  }
  if (!key) {
    ERR_clear_error();  // OpenSSL's decoders say "unsupported" for anything they cannot read
    return {nullptr,
            file_problem("tls.key_file", config.key_file,
                         is_encrypted_pem(config.key_file)
                             ? "the key is encrypted; give it without a passphrase, readable only by the proxy's user"
                             : "no PEM private key in it")};
  }
  if (X509_check_private_key(SSL_CTX_get0_certificate(native), key.get()) != 1) {
    ERR_clear_error();
    return {nullptr, file_problem("tls.key_file", config.key_file,
                                  "is not the private key of the certificate in tls.cert_file " + config.cert_file)};
  }
  if (SSL_CTX_use_PrivateKey(native, key.get()) != 1) {
    return {nullptr,
            file_problem("tls.key_file", config.key_file, "OpenSSL refused the key (" + openssl_error() + ")")};
  }
  // As PostgreSQL: no resumption, so every connection presents (and binds to) the current certificate.
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(native, SSL_OP_NO_TICKET);
  // Newer libpq offers ALPN "postgresql"; answering it keeps such clients content, offering none is fine too.
  SSL_CTX_set_alpn_select_cb(native, select_postgresql_alpn, nullptr);
  return {context, {}};
}

SslContextResult make_upstream_context(const TlsConfig& config) {
  ERR_clear_error();
  auto context = new_context(ssl::context::tls_client);
  SSL_CTX* native = context->native_handle();
  const bool verifies =
      config.upstream_mode == UpstreamTlsMode::verify_ca || config.upstream_mode == UpstreamTlsMode::verify_full;
  if (!verifies) {
    // prefer and require encrypt without checking who answers, as libpq's sslmode does.
    SSL_CTX_set_verify(native, SSL_VERIFY_NONE, nullptr);
    return {context, {}};
  }
  const std::string& ca = config.upstream_ca_file;
  if (ca.empty())
    return {nullptr, std::string("tls.upstream_ca_file is not set; ") + to_string(config.upstream_mode) + " needs it"};
  if (auto problem = unreadable(ca); !problem.empty()) {
    return {nullptr, file_problem("tls.upstream_ca_file", ca, "cannot read it: " + problem)};
  }
  if (SSL_CTX_load_verify_locations(native, ca.c_str(), nullptr) != 1) {
    return {nullptr, file_problem("tls.upstream_ca_file", ca, "no PEM CA certificate in it (" + openssl_error() + ")")};
  }
  SSL_CTX_set_verify(native, SSL_VERIFY_PEER, nullptr);
  return {context, {}};
}

TlsContextsResult load_tls(const TlsConfig& config) {
  TlsContexts contexts;
  if (config.client_mode != ClientTlsMode::disable) {
    auto made = make_client_context(config);
    if (!made.context) return {nullptr, made.error};
    contexts.for_clients = made.context;
    contexts.client_end_point = tls_server_end_point(SSL_CTX_get0_certificate(made.context->native_handle()));
  }
  if (upstream_tls_wanted(config.upstream_mode)) {
    auto made = make_upstream_context(config);
    if (!made.context) return {nullptr, made.error};
    contexts.for_upstream = made.context;
  }
  return {std::make_shared<const TlsContexts>(std::move(contexts)), {}};
}

std::string prepare_upstream_ssl(SSL* ssl, UpstreamTlsMode mode, const std::string& host) {
  ERR_clear_error();
  boost::system::error_code not_an_address;
  boost::asio::ip::make_address(host, not_an_address);
  const bool is_address = !not_an_address;
  // RFC 6066 forbids addresses in SNI.
  if (!is_address && !host.empty() && SSL_set_tlsext_host_name(ssl, host.c_str()) != 1) {
    return "cannot send the server name \"" + host + "\" in the TLS handshake: " + openssl_error();
  }
  if (mode != UpstreamTlsMode::verify_full) return {};
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  const int ok = is_address ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                            : X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
  if (ok != 1) return "cannot check the server's certificate against \"" + host + "\": " + openssl_error();
  return {};
}

std::string upstream_verify_error(SSL* ssl) {
  // Without SSL_VERIFY_PEER OpenSSL still records why it would have refused; that refused nothing.
  if (SSL_get_verify_mode(ssl) == SSL_VERIFY_NONE) return {};
  const long result = SSL_get_verify_result(ssl);
  if (result == X509_V_OK) return {};
  return X509_verify_cert_error_string(result);
}

std::string tls_server_end_point(X509* certificate) {
  if (!certificate) return {};
  int digest_nid = NID_undef;
  if (OBJ_find_sigid_algs(X509_get_signature_nid(certificate), &digest_nid, nullptr) != 1) return {};
  // RFC 5929 4.1: MD5 and SHA-1 are replaced by SHA-256.
  const EVP_MD* digest =
      digest_nid == NID_md5 || digest_nid == NID_sha1 ? EVP_sha256() : EVP_get_digestbynid(digest_nid);
  if (!digest) return {};
  unsigned char hash[EVP_MAX_MD_SIZE];
  unsigned length = 0;
  if (X509_digest(certificate, digest, hash, &length) != 1) {
    ERR_clear_error();
    return {};
  }
  return std::string(reinterpret_cast<const char*>(hash), length);
}

std::string peer_end_point(SSL* ssl) { return tls_server_end_point(SSL_get0_peer_certificate(ssl)); }

}  // namespace occ
