// tls/auth config sections and TLS contexts: generated certificates, handshakes over in-memory BIO pairs.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config/config.h"
#include "net/tls_context.h"

using namespace std::chrono_literals;

namespace {

const std::string cfg = "/etc/occ/occproxy.yaml";

std::string config_error(const std::string& yaml) {
  try {
    occ::parse_config(yaml, cfg);
  } catch (const occ::ConfigError& e) {
    return e.what();
  }
  return "no error";
}

using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using CertPtr = std::unique_ptr<X509, decltype(&X509_free)>;
using SslPtr = std::unique_ptr<SSL, decltype(&SSL_free)>;

KeyPtr ec_key() { return KeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), &EVP_PKEY_free); }
KeyPtr ed25519_key() { return KeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"), &EVP_PKEY_free); }

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  REQUIRE(ext);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `key` named `cn`, signed by the issuer (itself when null) with `digest`
// (null for Ed25519, which hashes internally).
CertPtr certificate(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key, const EVP_MD* digest,
                    const char* alt_names) {
  static long serial = 1;
  CertPtr cert(X509_new(), &X509_free);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* signer = issuer ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  if (!issuer) {
    add_extension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  }
  if (alt_names) add_extension(cert.get(), signer, NID_subject_alt_name, alt_names);
  REQUIRE(X509_sign(cert.get(), issuer_key ? issuer_key : key, digest) > 0);
  return cert;
}

std::string der_hash(X509* cert, const EVP_MD* digest) {
  unsigned char* der = nullptr;
  const int length = i2d_X509(cert, &der);
  unsigned char hash[EVP_MAX_MD_SIZE];
  unsigned hash_length = 0;
  EVP_Digest(der, length, hash, &hash_length, digest, nullptr);
  OPENSSL_free(der);
  return std::string(reinterpret_cast<const char*>(hash), hash_length);
}

// A temp folder with a CA, a server certificate (localhost, 127.0.0.1) and a second, unrelated CA.
class Pki {
 public:
  Pki() : ca_key_(ec_key()), ca_(nullptr, &X509_free), other_ca_key_(ec_key()), other_ca_(nullptr, &X509_free) {
    dir_ = std::filesystem::temp_directory_path() / ("occ_tls_test_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    ca_ = certificate(ca_key_.get(), "occ test CA", nullptr, nullptr, EVP_sha256(), nullptr);
    other_ca_ = certificate(other_ca_key_.get(), "another CA", nullptr, nullptr, EVP_sha256(), nullptr);
    write_cert(ca_.get(), "ca.pem");
    write_cert(other_ca_.get(), "other_ca.pem");
    auto key = ec_key();
    auto leaf = issue(key.get(), EVP_sha256());
    write_cert(leaf.get(), "server.pem");
    write_key(key.get(), "server.key");
  }
  ~Pki() { std::filesystem::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  CertPtr issue(EVP_PKEY* key, const EVP_MD* digest) const {
    return certificate(key, "localhost", ca_.get(), ca_key_.get(), digest, "DNS:localhost,IP:127.0.0.1");
  }

  void write_cert(X509* cert, const std::string& name) const {
    std::FILE* f = std::fopen(path(name).c_str(), "w");
    REQUIRE(f);
    PEM_write_X509(f, cert);
    std::fclose(f);
  }
  void write_key(EVP_PKEY* key, const std::string& name, const EVP_CIPHER* cipher = nullptr) const {
    std::FILE* f = std::fopen(path(name).c_str(), "w");
    REQUIRE(f);
    static unsigned char passphrase[] = "secret";
    PEM_write_PrivateKey(f, key, cipher, cipher ? passphrase : nullptr, cipher ? 6 : 0, nullptr, nullptr);
    std::fclose(f);
  }
  void write_text(const std::string& text, const std::string& name) const { std::ofstream(path(name)) << text; }

  occ::TlsConfig config(occ::UpstreamTlsMode mode, const std::string& ca = "ca.pem") const {
    occ::TlsConfig c;
    c.cert_file = path("server.pem");
    c.key_file = path("server.key");
    c.client_mode = occ::ClientTlsMode::require;
    c.upstream_mode = mode;
    if (mode == occ::UpstreamTlsMode::verify_ca || mode == occ::UpstreamTlsMode::verify_full)
      c.upstream_ca_file = path(ca);
    return c;
  }

 private:
  std::filesystem::path dir_;
  KeyPtr ca_key_;
  CertPtr ca_;
  KeyPtr other_ca_key_;
  CertPtr other_ca_;
};

struct Handshake {
  bool ok = false;
  std::string verify_error;  // upstream_verify_error on the client side
  std::string peer_end_point;
  std::string server_name;  // SNI as the server saw it
  std::string alpn;         // what the server chose
};

// The proxy's upstream side (client) against a server using the proxy's client-facing context,
// over a BIO pair.
Handshake handshake(const occ::TlsContexts& server_side, const occ::TlsContexts& client_side, occ::UpstreamTlsMode mode,
                    const std::string& host, bool offer_alpn = false) {
  SslPtr server(SSL_new(server_side.for_clients->native_handle()), &SSL_free);
  SslPtr client(SSL_new(client_side.for_upstream->native_handle()), &SSL_free);
  REQUIRE(occ::prepare_upstream_ssl(client.get(), mode, host).empty());
  if (offer_alpn) {
    static const unsigned char protos[] = {2, 'h', '2', 10, 'p', 'o', 's', 't', 'g', 'r', 'e', 's', 'q', 'l'};
    SSL_set_alpn_protos(client.get(), protos, sizeof protos);
  }
  BIO* server_bio = nullptr;
  BIO* client_bio = nullptr;
  REQUIRE(BIO_new_bio_pair(&server_bio, 0, &client_bio, 0) == 1);
  SSL_set_bio(server.get(), server_bio, server_bio);
  SSL_set_bio(client.get(), client_bio, client_bio);
  SSL_set_accept_state(server.get());
  SSL_set_connect_state(client.get());
  Handshake result;
  for (int round = 0; round < 20; ++round) {
    const int c = SSL_do_handshake(client.get());
    const int s = SSL_do_handshake(server.get());
    if (c == 1 && s == 1) {
      result.ok = true;
      break;
    }
    const int ce = c == 1 ? SSL_ERROR_NONE : SSL_get_error(client.get(), c);
    const int se = s == 1 ? SSL_ERROR_NONE : SSL_get_error(server.get(), s);
    const auto stuck = [](int e) {
      return e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
    };
    if (stuck(ce) || stuck(se)) break;
  }
  ERR_clear_error();
  result.verify_error = occ::upstream_verify_error(client.get());
  result.peer_end_point = occ::peer_end_point(client.get());
  if (const char* sni = SSL_get_servername(server.get(), TLSEXT_NAMETYPE_host_name)) result.server_name = sni;
  const unsigned char* chosen = nullptr;
  unsigned chosen_length = 0;
  SSL_get0_alpn_selected(server.get(), &chosen, &chosen_length);
  if (chosen) result.alpn.assign(reinterpret_cast<const char*>(chosen), chosen_length);
  return result;
}

occ::TlsContextsPtr loaded(const occ::TlsConfig& config) {
  auto result = occ::load_tls(config);
  INFO(result.error);
  REQUIRE(result.contexts);
  return result.contexts;
}

}  // namespace

TEST_CASE("tls and auth sections", "[config][tls]") {
  const auto c = occ::parse_config(R"(upstream: db:5432
admin_dsn: host=db dbname=app user=occ_admin
tls:
  cert_file: certs/proxy.pem
  key_file: /secure/proxy.key
  client_mode: require
  upstream_mode: verify-full
  upstream_ca_file: certs/ca.pem
auth:
  mode: terminate
  query: SELECT usename, passwd FROM my.lookup($1)
  cache_ttl: 5m
)",
                                   cfg);
  CHECK(c.tls.cert_file == "/etc/occ/certs/proxy.pem");
  CHECK(c.tls.key_file == "/secure/proxy.key");
  CHECK(c.tls.client_mode == occ::ClientTlsMode::require);
  CHECK(c.tls.upstream_mode == occ::UpstreamTlsMode::verify_full);
  CHECK(c.tls.upstream_ca_file == "/etc/occ/certs/ca.pem");
  CHECK(c.auth.mode == occ::AuthMode::terminate);
  CHECK(c.auth.query == "SELECT usename, passwd FROM my.lookup($1)");
  CHECK(c.auth.cache_ttl == 300'000ms);
}

TEST_CASE("tls and auth defaults", "[config][tls]") {
  const auto none = occ::parse_config("upstream: db:5432\n", cfg);
  CHECK(none.tls.cert_file.empty());
  CHECK(none.tls.client_mode == occ::ClientTlsMode::disable);
  CHECK(none.tls.upstream_mode == occ::UpstreamTlsMode::disable);
  CHECK(none.auth.mode == occ::AuthMode::passthrough);
  CHECK(none.auth.query == "SELECT rolname, rolpassword FROM occ.auth_lookup($1)");
  CHECK(none.auth.cache_ttl == 60s);

  // A certificate without a client_mode is offered to clients that ask.
  const auto cert_only = occ::parse_config("upstream: db:5432\ntls: {cert_file: a.pem, key_file: a.key}\n", cfg);
  CHECK(cert_only.tls.client_mode == occ::ClientTlsMode::allow);
  CHECK(cert_only.tls.upstream_mode == occ::UpstreamTlsMode::disable);

  // terminate without TLS on either hop: SCRAM without channel binding.
  const auto plain_terminate =
      occ::parse_config("upstream: db:5432\nadmin_dsn: dbname=app\nauth: {mode: terminate, cache_ttl: 0s}\n", cfg);
  CHECK(plain_terminate.auth.mode == occ::AuthMode::terminate);
  CHECK(plain_terminate.auth.cache_ttl == 0ms);
  CHECK(plain_terminate.tls.client_mode == occ::ClientTlsMode::disable);

  const std::pair<const char*, occ::UpstreamTlsMode> modes[] = {
      {"disable", occ::UpstreamTlsMode::disable},
      {"prefer", occ::UpstreamTlsMode::prefer},
      {"require", occ::UpstreamTlsMode::require},
  };
  for (const auto& [text, mode] : modes) {
    const auto c = occ::parse_config(std::string("upstream: db:5432\ntls:\n  upstream_mode: ") + text + "\n", cfg);
    CHECK(c.tls.upstream_mode == mode);
    CHECK(std::string(occ::to_string(mode)) == text);
  }
  CHECK(std::string(occ::to_string(occ::UpstreamTlsMode::verify_ca)) == "verify-ca");
  CHECK(std::string(occ::to_string(occ::ClientTlsMode::allow)) == "allow");
}

TEST_CASE("tls and auth errors name file, line and key", "[config][tls]") {
  struct Row {
    const char* yaml;
    const char* message;
  };
  const Row rows[] = {
      {"upstream: db:5432\ntls:\n  cert: a.pem\n",
       "/etc/occ/occproxy.yaml:3: tls.cert: unknown key; expected one of: cert_file, key_file, client_mode, "
       "upstream_mode, upstream_ca_file"},
      {"upstream: db:5432\ntls: [a.pem]\n", "/etc/occ/occproxy.yaml:2: tls: expected a mapping of keys, got a list"},
      {"upstream: db:5432\ntls:\n  cert_file: \"\"\n",
       "/etc/occ/occproxy.yaml:3: tls.cert_file: is empty; give a file path or remove the key"},
      {"upstream: db:5432\ntls:\n  client_mode: on\n",
       "/etc/occ/occproxy.yaml:3: tls.client_mode: expected disable, allow or require, got \"on\""},
      {"upstream: db:5432\ntls:\n  client_mode: require\n",
       "/etc/occ/occproxy.yaml:3: tls.client_mode: require needs tls.cert_file and tls.key_file"},
      {"upstream: db:5432\ntls:\n  client_mode: allow\n  cert_file: a.pem\n",
       "/etc/occ/occproxy.yaml:4: tls.cert_file: needs tls.key_file, the certificate's private key"},
      {"upstream: db:5432\ntls:\n  key_file: a.key\n",
       "/etc/occ/occproxy.yaml:3: tls.key_file: needs tls.cert_file, the certificate it belongs to"},
      {"upstream: db:5432\ntls:\n  upstream_mode: verify_full\n",
       "/etc/occ/occproxy.yaml:3: tls.upstream_mode: expected disable, prefer, require, verify-ca or verify-full, got "
       "\"verify_full\""},
      {"upstream: db:5432\ntls:\n  upstream_mode: verify-full\n",
       "/etc/occ/occproxy.yaml:3: tls.upstream_mode: verify-full needs tls.upstream_ca_file, the CA certificates that "
       "the server's certificate must chain to"},
      {"upstream: db:5432\ntls:\n  upstream_mode: verify-ca\n",
       "/etc/occ/occproxy.yaml:3: tls.upstream_mode: verify-ca needs tls.upstream_ca_file, the CA certificates that "
       "the server's certificate must chain to"},
      {"upstream: db:5432\ntls:\n  upstream_mode: require\n  upstream_ca_file: ca.pem\n",
       "/etc/occ/occproxy.yaml:4: tls.upstream_ca_file: is only used by upstream_mode verify-ca or verify-full, but "
       "upstream_mode is require"},
      {"upstream: db:5432\ntls:\n  upstream_ca_file: ca.pem\n",
       "/etc/occ/occproxy.yaml:3: tls.upstream_ca_file: is only used by upstream_mode verify-ca or verify-full, but "
       "upstream_mode is disable"},
      {"upstream: db:5432\nauth:\n  mode: md5\n",
       "/etc/occ/occproxy.yaml:3: auth.mode: expected passthrough or terminate, got \"md5\""},
      {"upstream: db:5432\nauth:\n  mode: terminate\n",
       "/etc/occ/occproxy.yaml:3: auth.mode: terminate needs admin_dsn: the proxy looks up each role's password "
       "verifier through it"},
      {"upstream: db:5432\nauth:\n  query: SELECT rolname, rolpassword FROM pg_authid\n",
       "/etc/occ/occproxy.yaml:3: auth.query: must take the role name as $1 and return (rolname, rolpassword)"},
      {"upstream: db:5432\nauth:\n  cache_ttl: 60\n",
       "/etc/occ/occproxy.yaml:3: auth.cache_ttl: bad duration \"60\": expected a whole number and a unit: ms, s, m or "
       "h (e.g. 500ms, 2s, 5m, 1h)"},
      {"upstream: db:5432\nauth:\n  ttl: 60s\n",
       "/etc/occ/occproxy.yaml:3: auth.ttl: unknown key; expected one of: mode, query, cache_ttl"},
  };
  for (const auto& row : rows) {
    INFO(row.yaml);
    CHECK(config_error(row.yaml) == row.message);
  }
}

TEST_CASE("contexts load from the configured files, or say which file is wrong", "[tls]") {
  Pki pki;
  using occ::UpstreamTlsMode;

  SECTION("nothing asked, nothing built") {
    const auto contexts = loaded(occ::TlsConfig{});
    CHECK_FALSE(contexts->for_clients);
    CHECK_FALSE(contexts->for_upstream);
    CHECK(contexts->client_end_point.empty());
  }
  SECTION("both sides") {
    const auto contexts = loaded(pki.config(UpstreamTlsMode::verify_full));
    CHECK(contexts->for_clients);
    CHECK(contexts->for_upstream);
    CHECK(contexts->client_end_point.size() == 32);
  }

  auto error_of = [](const occ::TlsConfig& config) {
    auto result = occ::load_tls(config);
    CHECK_FALSE(result.contexts);
    return result.error;
  };
  SECTION("file errors") {
    auto key = ec_key();
    pki.write_key(key.get(), "other.key");
    pki.write_key(key.get(), "encrypted.key", EVP_aes_128_cbc());
    pki.write_text("not a certificate\n", "garbage.pem");

    auto with = [&](const std::string& cert, const std::string& key_file) {
      auto c = pki.config(UpstreamTlsMode::disable);
      c.cert_file = pki.path(cert);
      c.key_file = pki.path(key_file);
      return c;
    };
    CHECK(error_of(with("missing.pem", "server.key")) ==
          "tls.cert_file " + pki.path("missing.pem") + ": cannot read it: No such file or directory");
    CHECK(error_of(with("", "server.key")) ==
          "tls.cert_file " + pki.path("") + ": cannot read it: it is a folder, not a file");
    CHECK(error_of(with("server.pem", "missing.key")) ==
          "tls.key_file " + pki.path("missing.key") + ": cannot read it: No such file or directory");
    CHECK(error_of(with("garbage.pem", "server.key")) ==
          "tls.cert_file " + pki.path("garbage.pem") + ": no PEM certificate in it (no start line)");
    CHECK(error_of(with("server.pem", "garbage.pem")) ==
          "tls.key_file " + pki.path("garbage.pem") + ": no PEM private key in it");
    CHECK(error_of(with("server.pem", "encrypted.key")) ==
          "tls.key_file " + pki.path("encrypted.key") +
              ": the key is encrypted; give it without a passphrase, readable only by the proxy's user");
    CHECK(error_of(with("server.pem", "other.key")) ==
          "tls.key_file " + pki.path("other.key") + ": is not the private key of the certificate in tls.cert_file " +
              pki.path("server.pem"));

    auto upstream = pki.config(UpstreamTlsMode::verify_ca, "garbage.pem");
    CHECK(error_of(upstream) == "tls.upstream_ca_file " + pki.path("garbage.pem") +
                                    ": no PEM CA certificate in it (no certificate or crl found)");
    upstream.upstream_ca_file = pki.path("missing.pem");
    CHECK(error_of(upstream) ==
          "tls.upstream_ca_file " + pki.path("missing.pem") + ": cannot read it: No such file or directory");
  }
  SECTION("a reload reads the files again") {
    const auto before = loaded(pki.config(UpstreamTlsMode::disable));
    auto key = ec_key();
    auto renewed = pki.issue(key.get(), EVP_sha384());
    pki.write_cert(renewed.get(), "server.pem");
    pki.write_key(key.get(), "server.key");
    const auto after = loaded(pki.config(UpstreamTlsMode::disable));
    CHECK(after->for_clients != before->for_clients);
    CHECK(after->client_end_point == der_hash(renewed.get(), EVP_sha384()));
    CHECK(after->client_end_point != before->client_end_point);
    // A broken file on reload leaves the caller's contexts as they were: load_tls only reports.
    pki.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "server.pem");
    CHECK_FALSE(occ::load_tls(pki.config(UpstreamTlsMode::disable)).contexts);
    CHECK(after->client_end_point == der_hash(renewed.get(), EVP_sha384()));
  }
}

TEST_CASE("upstream verification follows libpq's sslmode", "[tls]") {
  Pki pki;
  using occ::UpstreamTlsMode;
  const auto server = loaded(pki.config(UpstreamTlsMode::disable));
  struct Row {
    UpstreamTlsMode mode;
    std::string ca;
    std::string host;
    bool ok;
    std::string verify_error;
    std::string sni;
  };
  const Row rows[] = {
      {UpstreamTlsMode::verify_full, "ca.pem", "localhost", true, "", "localhost"},
      {UpstreamTlsMode::verify_full, "ca.pem", "127.0.0.1", true, "", ""},
      {UpstreamTlsMode::verify_full, "ca.pem", "db.example.com", false, "hostname mismatch", "db.example.com"},
      {UpstreamTlsMode::verify_full, "ca.pem", "127.0.0.2", false, "IP address mismatch", ""},
      {UpstreamTlsMode::verify_full, "other_ca.pem", "localhost", false, "unable to get local issuer certificate",
       "localhost"},
      {UpstreamTlsMode::verify_ca, "ca.pem", "db.example.com", true, "", "db.example.com"},
      {UpstreamTlsMode::verify_ca, "other_ca.pem", "localhost", false, "unable to get local issuer certificate",
       "localhost"},
      {UpstreamTlsMode::require, "", "db.example.com", true, "", "db.example.com"},
      {UpstreamTlsMode::prefer, "", "::1", true, "", ""},
  };
  for (const auto& row : rows) {
    INFO(occ::to_string(row.mode) << " " << row.ca << " " << row.host);
    const auto client = loaded(pki.config(row.mode, row.ca));
    const auto result = handshake(*server, *client, row.mode, row.host);
    CHECK(result.ok == row.ok);
    CHECK(result.verify_error == row.verify_error);
    CHECK(result.server_name == row.sni);
    if (row.ok) CHECK(result.peer_end_point == server->client_end_point);
  }
}

TEST_CASE("ALPN postgresql is accepted when offered", "[tls]") {
  Pki pki;
  const auto server = loaded(pki.config(occ::UpstreamTlsMode::disable));
  const auto client = loaded(pki.config(occ::UpstreamTlsMode::require));
  CHECK(handshake(*server, *client, occ::UpstreamTlsMode::require, "localhost", true).alpn == "postgresql");
  const auto plain = handshake(*server, *client, occ::UpstreamTlsMode::require, "localhost", false);
  CHECK(plain.ok);
  CHECK(plain.alpn.empty());
}

TEST_CASE("tls-server-end-point hashes with the certificate's signature hash (RFC 5929)", "[tls]") {
  Pki pki;
  struct Row {
    const char* name;
    const EVP_MD* signed_with;
    const EVP_MD* hashed_with;  // null: no channel binding
  };
  const Row rows[] = {
      {"sha256", EVP_sha256(), EVP_sha256()},
      {"sha384", EVP_sha384(), EVP_sha384()},
      {"sha512", EVP_sha512(), EVP_sha512()},
      {"sha1 is replaced by sha256", EVP_sha1(), EVP_sha256()},
  };
  for (const auto& row : rows) {
    INFO(row.name);
    auto key = ec_key();
    auto cert = pki.issue(key.get(), row.signed_with);
    const auto expected = der_hash(cert.get(), row.hashed_with);
    CHECK(expected.size() == static_cast<std::size_t>(EVP_MD_get_size(row.hashed_with)));
    CHECK(occ::tls_server_end_point(cert.get()) == expected);
  }
  auto ed_key = ed25519_key();
  auto ed_cert = certificate(ed_key.get(), "ed", nullptr, nullptr, nullptr, nullptr);
  CHECK(occ::tls_server_end_point(ed_cert.get()).empty());
  CHECK(occ::tls_server_end_point(nullptr).empty());
}
