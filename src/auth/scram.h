// SCRAM-SHA-256 (RFC 5802/7677) from stored verifiers: the proxy as server to clients and as client to the server.
#pragma once

#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace occ {

inline constexpr std::string_view kScramSha256 = "SCRAM-SHA-256";
inline constexpr std::string_view kScramSha256Plus = "SCRAM-SHA-256-PLUS";

using ScramKey = std::array<unsigned char, 32>;

// Standard base64 with padding; decoding refuses anything else (nullopt).
std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);

// What PostgreSQL stores in pg_authid.rolpassword for a SCRAM role:
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (salt and keys in base64).
struct ScramVerifier {
  int iterations = 0;
  std::string salt;  // raw bytes
  ScramKey stored_key{};
  ScramKey server_key{};
};

// nullopt for anything that is not a well-formed SCRAM-SHA-256 verifier (an md5 hash, NULL's "", garbage).
std::optional<ScramVerifier> parse_scram_verifier(std::string_view text);
// The verifier in PostgreSQL's text form.
std::string to_string(const ScramVerifier& verifier);

// The keys a password gives (no SASLprep: passwords are taken as bytes, which is what SASLprep
// leaves of an ASCII password). Used to build verifiers and clients in tests and tools.
ScramKey scram_client_key(std::string_view password, std::string_view salt, int iterations);
ScramVerifier scram_verifier(std::string_view password, std::string_view salt, int iterations);

// A failed exchange, shaped like the server's ErrorResponse (sent as FATAL during authentication).
struct ScramError : std::runtime_error {
  ScramError(std::string sqlstate_, const std::string& message, std::string detail_ = {})
      : std::runtime_error(message), sqlstate(std::move(sqlstate_)), detail(std::move(detail_)) {}
  std::string sqlstate;
  std::string detail;
};

// What a wrong password gets, exactly as from PostgreSQL: FATAL, SQLSTATE 28P01, this message.
inline constexpr std::string_view kPasswordFailedSqlstate = "28P01";
std::string password_failed_message(std::string_view user);

// The proxy as SCRAM server for one client login. Errors mirror PostgreSQL's auth-scram.c.
class ScramServer {
 public:
  // `verifier`: the role's, or nullopt when the role does not exist or has no SCRAM secret; the
  // exchange then runs against a mock salt and fails at the proof like PostgreSQL's, so a client
  // cannot tell a missing role from a wrong password. `end_point`: tls-server-end-point data of the
  // certificate this client sees, empty on a plaintext connection. `nonce`: empty for a random one.
  ScramServer(std::string user, std::optional<ScramVerifier> verifier, std::string end_point, std::string nonce = {});

  // For AuthenticationSASL, in PostgreSQL's order: SCRAM-SHA-256-PLUS first when over TLS.
  std::vector<std::string> mechanisms() const;

  // SASLInitialResponse: the chosen mechanism and the client-first-message. Returns the
  // server-first-message (AuthenticationSASLContinue). Throws ScramError.
  std::string client_first(std::string_view mechanism, std::string_view message);

  // SASLResponse: the client-final-message. Returns the server-final-message (AuthenticationSASLFinal)
  // when the proof is right, nullopt when it is wrong (answer 28P01, password_failed_message).
  // Throws ScramError when the message is malformed or the channel binding does not match.
  std::optional<std::string> client_final(std::string_view message);

  // After a successful client_final: the client's ClientKey, which logs into the server as this role.
  const ScramKey& client_key() const { return client_key_; }
  const std::string& user() const { return user_; }

 private:
  enum class Step { client_first, client_final, done };

  std::string user_;
  ScramVerifier verifier_;
  bool doomed_;
  std::string end_point_;
  std::string server_nonce_;
  Step step_ = Step::client_first;
  bool channel_binding_ = false;
  char cbind_flag_ = 'n';
  std::string client_nonce_;
  std::string client_first_bare_;
  std::string server_first_;
  ScramKey client_key_{};
};

// Thrown by ScramClient when the server's salt or iteration count differ from the verifier the
// ClientKey came from: the role's password changed since the lookup; look it up again.
struct ScramStaleVerifier : ScramError {
  using ScramError::ScramError;
};

// The proxy as SCRAM client logging into the server with a recovered ClientKey. The verifier is
// the role's, as used by the ScramServer that recovered the key: it checks the server's signature.
class ScramClient {
 public:
  // `tls`: the server connection is encrypted. `end_point`: tls-server-end-point data of the server's
  // certificate (empty when unknown). `nonce`: empty for a random one.
  ScramClient(ScramVerifier verifier, ScramKey client_key, bool tls, std::string end_point, std::string nonce = {});

  // From AuthenticationSASL's list: SCRAM-SHA-256-PLUS over TLS when offered, else SCRAM-SHA-256.
  // Throws ScramError when neither is offered or the certificate hash needed for -PLUS is missing.
  std::string select_mechanism(const std::vector<std::string>& offered);
  // The client-first-message (SASLInitialResponse data); after select_mechanism.
  std::string client_first();
  // The client-final-message (SASLResponse) for the server-first-message. Throws ScramError,
  // ScramStaleVerifier when the server's salt or iterations are not the verifier's.
  std::string client_final(std::string_view server_first);
  // Checks the server-final-message (AuthenticationSASLFinal); throws ScramError unless the server
  // proved it knows the ServerKey.
  void server_final(std::string_view message);

 private:
  enum class Step { select, client_first, client_final, server_final, done };

  ScramVerifier verifier_;
  ScramKey client_key_;
  bool tls_;
  std::string end_point_;
  std::string nonce_;
  Step step_ = Step::select;
  std::string gs2_header_;
  std::string client_first_bare_;
  std::string auth_message_;
};

}  // namespace occ
