// SCRAM-SHA-256 both ways over OpenSSL's primitives, the server side parsing and failing exactly as PostgreSQL's.
#include "auth/scram.h"

#include <algorithm>
#include <charconv>
#include <cstdio>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

namespace occ {

namespace {

constexpr const char* kProtocolViolation = "08P01";
constexpr const char* kInvalidAuthorization = "28000";
constexpr const char* kFeatureNotSupported = "0A000";
constexpr std::string_view kEndPointHeader = "p=tls-server-end-point,,";
// PostgreSQL's sizes: its nonces are 18 random bytes (24 base64 characters), its salts 16 bytes.
constexpr int kRawNonceLength = 18;
constexpr std::size_t kMockSaltLength = 16;
constexpr int kMockIterations = 4096;

constexpr std::string_view kBase64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string_view bytes_of(const ScramKey& key) { return {reinterpret_cast<const char*>(key.data()), key.size()}; }

ScramKey hmac_sha256(std::string_view key, std::string_view data) {
  ScramKey out{};
  unsigned length = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
           data.size(), out.data(), &length) == nullptr ||
      length != out.size()) {
    throw std::runtime_error("HMAC-SHA-256 failed in OpenSSL");
  }
  return out;
}

ScramKey hmac_sha256(const ScramKey& key, std::string_view data) { return hmac_sha256(bytes_of(key), data); }

ScramKey sha256(std::string_view data) {
  ScramKey out{};
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data());
  return out;
}

ScramKey salted_password(std::string_view password, std::string_view salt, int iterations) {
  if (iterations < 1) throw std::invalid_argument("SCRAM iteration count must be at least 1");
  ScramKey out{};
  // An empty string_view may carry a null pointer, which OpenSSL reads as "no password".
  static const char empty = '\0';
  if (PKCS5_PBKDF2_HMAC(password.empty() ? &empty : password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()), iterations,
                        EVP_sha256(), static_cast<int>(out.size()), out.data()) != 1) {
    throw std::runtime_error("PBKDF2-HMAC-SHA-256 failed in OpenSSL");
  }
  return out;
}

ScramKey xor_keys(const ScramKey& a, std::string_view b) {
  ScramKey out{};
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = a[i] ^ static_cast<unsigned char>(b[i]);
  return out;
}

bool same_key(const ScramKey& a, std::string_view b) {
  return b.size() == a.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string random_bytes(std::size_t count) {
  std::string out(count, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(count)) != 1) {
    throw std::runtime_error("OpenSSL could not generate random bytes");
  }
  return out;
}

std::string random_nonce() { return base64_encode(random_bytes(kRawNonceLength)); }

// PostgreSQL derives a missing role's salt from a per-cluster secret, so that the same name always
// gets the same salt and probing cannot tell it from a real role; this secret lives per process.
std::string mock_salt(std::string_view user) {
  static const std::string secret = random_bytes(32);
  const ScramKey digest = sha256(std::string(user) + secret);
  return std::string(bytes_of(digest).substr(0, kMockSaltLength));
}

// The backend's renderings of a bad byte or string in error details.
std::string sanitize_char(char c) {
  if (c >= 0x21 && c <= 0x7e) return std::string("'") + c + "'";
  char hex[5];
  std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned char>(c));
  return hex;
}

std::string sanitize_str(std::string_view s) {
  std::string out(s.substr(0, 30));
  for (char& c : out) {
    if (c < 0x21 || c > 0x7e) c = '?';
  }
  return out;
}

// RFC 5802's "printable": visible ASCII except the comma.
bool is_printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x21 && c <= 0x7e && c != ','; });
}

ScramError malformed(std::string detail) {
  return ScramError(kProtocolViolation, "malformed SCRAM message", std::move(detail));
}

void check_length(std::string_view message) {
  if (message.empty()) throw malformed("The message is empty.");
  // The backend reads the message as a C string: a NUL inside would cut it short.
  if (message.find('\0') != std::string_view::npos) throw malformed("Message length does not match input length.");
}

// Walks one SCRAM message attribute by attribute; past the end it reads '\0', as the backend's
// C-string walk does, so its error details come out the same.
class AttributeReader {
 public:
  explicit AttributeReader(std::string_view text) : text_(text) {}

  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void skip() { ++pos_; }
  bool at_end() const { return pos_ >= text_.size(); }
  std::size_t pos() const { return pos_; }
  std::string_view rest() const { return at_end() ? std::string_view() : text_.substr(pos_); }

  // "attr=value" for this attribute, up to and including the next comma.
  std::string_view value(char attr) {
    if (peek() != attr) {
      throw malformed("Expected attribute \"" + std::string(1, attr) + "\" but found \"" + sanitize_char(peek()) +
                      "\".");
    }
    skip();
    return after_name(attr);
  }

  // Any "attr=value"; returns the attribute letter and the value.
  std::pair<char, std::string_view> any() {
    const char attr = peek();
    if (attr == '\0') throw malformed("Attribute expected, but found end of string.");
    if (!((attr >= 'A' && attr <= 'Z') || (attr >= 'a' && attr <= 'z'))) {
      throw malformed("Attribute expected, but found invalid character \"" + sanitize_char(attr) + "\".");
    }
    skip();
    return {attr, after_name(attr)};
  }

 private:
  std::string_view after_name(char attr) {
    if (peek() != '=') throw malformed("Expected character \"=\" for attribute \"" + std::string(1, attr) + "\".");
    skip();
    const std::size_t begin = pos_;
    const std::size_t comma = text_.find(',', begin);
    if (comma == std::string_view::npos) {
      pos_ = text_.size();
      return text_.substr(begin);
    }
    pos_ = comma + 1;
    return text_.substr(begin, comma - begin);
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

std::optional<ScramKey> decode_key(std::string_view text) {
  auto bytes = base64_decode(text);
  if (!bytes || bytes->size() != ScramKey().size()) return std::nullopt;
  ScramKey key{};
  std::copy(bytes->begin(), bytes->end(), key.begin());
  return key;
}

std::optional<int> positive_int(std::string_view text) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < 1) return std::nullopt;
  return value;
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t n = static_cast<unsigned char>(bytes[i]) << 16 | static_cast<unsigned char>(bytes[i + 1]) << 8 |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += kBase64Alphabet[n >> 18 & 63];
    out += kBase64Alphabet[n >> 12 & 63];
    out += kBase64Alphabet[n >> 6 & 63];
    out += kBase64Alphabet[n & 63];
  }
  const std::size_t left = bytes.size() - i;
  if (left > 0) {
    uint32_t n = static_cast<unsigned char>(bytes[i]) << 16;
    if (left == 2) n |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += kBase64Alphabet[n >> 18 & 63];
    out += kBase64Alphabet[n >> 12 & 63];
    out += left == 2 ? kBase64Alphabet[n >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::size_t padding = 0;
  if (!text.empty() && text.back() == '=') padding = text.size() >= 2 && text[text.size() - 2] == '=' ? 2 : 1;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  uint32_t n = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    uint32_t sextet = 0;
    if (i >= text.size() - padding) {
      sextet = 0;  // '=' may only close the text, which the padding count ensures
    } else {
      const auto at = kBase64Alphabet.find(text[i]);
      if (at == std::string_view::npos) return std::nullopt;
      sextet = static_cast<uint32_t>(at);
    }
    n = n << 6 | sextet;
    if (i % 4 == 3) {
      out += static_cast<char>(n >> 16 & 0xff);
      out += static_cast<char>(n >> 8 & 0xff);
      out += static_cast<char>(n & 0xff);
      n = 0;
    }
  }
  out.resize(out.size() - padding);
  return out;
}

std::optional<ScramVerifier> parse_scram_verifier(std::string_view text) {
  constexpr std::string_view scheme = "SCRAM-SHA-256$";
  if (!text.starts_with(scheme)) return std::nullopt;
  text.remove_prefix(scheme.size());
  const auto colon = text.find(':');
  const auto dollar = text.find('$');
  if (colon == std::string_view::npos || dollar == std::string_view::npos || dollar < colon) return std::nullopt;
  const auto keys = text.substr(dollar + 1);
  const auto key_colon = keys.find(':');
  if (key_colon == std::string_view::npos) return std::nullopt;

  ScramVerifier v;
  const auto iterations = positive_int(text.substr(0, colon));
  auto salt = base64_decode(text.substr(colon + 1, dollar - colon - 1));
  const auto stored = decode_key(keys.substr(0, key_colon));
  const auto server = decode_key(keys.substr(key_colon + 1));
  if (!iterations || !salt || salt->empty() || !stored || !server) return std::nullopt;
  v.iterations = *iterations;
  v.salt = std::move(*salt);
  v.stored_key = *stored;
  v.server_key = *server;
  return v;
}

std::string to_string(const ScramVerifier& v) {
  return "SCRAM-SHA-256$" + std::to_string(v.iterations) + ":" + base64_encode(v.salt) + "$" +
         base64_encode(bytes_of(v.stored_key)) + ":" + base64_encode(bytes_of(v.server_key));
}

ScramKey scram_client_key(std::string_view password, std::string_view salt, int iterations) {
  return hmac_sha256(salted_password(password, salt, iterations), "Client Key");
}

ScramVerifier scram_verifier(std::string_view password, std::string_view salt, int iterations) {
  const ScramKey salted = salted_password(password, salt, iterations);
  ScramVerifier v;
  v.iterations = iterations;
  v.salt = std::string(salt);
  v.stored_key = sha256(bytes_of(hmac_sha256(salted, "Client Key")));
  v.server_key = hmac_sha256(salted, "Server Key");
  return v;
}

std::string password_failed_message(std::string_view user) {
  return "password authentication failed for user \"" + std::string(user) + "\"";
}

// ---- server -----------------------------------------------------------------------------------

ScramServer::ScramServer(std::string user, std::optional<ScramVerifier> verifier, std::string end_point,
                         std::string nonce)
    : user_(std::move(user)),
      doomed_(!verifier),
      end_point_(std::move(end_point)),
      server_nonce_(nonce.empty() ? random_nonce() : std::move(nonce)) {
  if (verifier) {
    verifier_ = std::move(*verifier);
  } else {
    verifier_.iterations = kMockIterations;
    verifier_.salt = mock_salt(user_);
  }
}

std::vector<std::string> ScramServer::mechanisms() const {
  if (end_point_.empty()) return {std::string(kScramSha256)};
  return {std::string(kScramSha256Plus), std::string(kScramSha256)};
}

std::string ScramServer::client_first(std::string_view mechanism, std::string_view message) {
  if (step_ != Step::client_first) throw std::logic_error("ScramServer: client-first-message after the first");
  if (mechanism == kScramSha256Plus && !end_point_.empty()) {
    channel_binding_ = true;
  } else if (mechanism == kScramSha256) {
    channel_binding_ = false;
  } else {
    throw ScramError(kProtocolViolation, "client selected an invalid SASL authentication mechanism");
  }
  check_length(message);

  AttributeReader in(message);
  cbind_flag_ = in.peek();
  switch (cbind_flag_) {
    case 'n':
    case 'y':
      if (channel_binding_) {
        throw malformed(
            "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.");
      }
      if (cbind_flag_ == 'y' && !end_point_.empty()) {
        throw ScramError(kInvalidAuthorization, "SCRAM channel binding negotiation error",
                         "The client supports SCRAM channel binding but thinks the server does not.  "
                         "However, this server does support channel binding.");
      }
      in.skip();
      if (in.peek() != ',')
        throw malformed("Comma expected, but found character \"" + sanitize_char(in.peek()) + "\".");
      in.skip();
      break;
    case 'p': {
      if (!channel_binding_) {
        throw malformed(
            "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel "
            "binding data.");
      }
      const auto type = in.value('p');
      if (type != "tls-server-end-point") {
        throw ScramError(kProtocolViolation, "unsupported SCRAM channel-binding type \"" + sanitize_str(type) + "\"");
      }
      break;
    }
    default: throw malformed("Unexpected channel-binding flag \"" + sanitize_char(cbind_flag_) + "\".");
  }
  if (in.peek() == 'a') {
    throw ScramError(kFeatureNotSupported, "client uses authorization identity, but it is not supported");
  }
  if (in.peek() != ',') {
    throw malformed("Unexpected attribute \"" + sanitize_char(in.peek()) + "\" in client-first-message.");
  }
  in.skip();
  client_first_bare_ = std::string(in.rest());
  if (in.peek() == 'm') throw ScramError(kFeatureNotSupported, "client requires an unsupported SCRAM extension");
  // The user name here is ignored, as by PostgreSQL: the startup packet's is the one that counts.
  in.value('n');
  client_nonce_ = std::string(in.value('r'));
  if (!is_printable(client_nonce_)) throw ScramError(kProtocolViolation, "non-printable characters in SCRAM nonce");
  while (!in.at_end()) in.any();

  server_first_ = "r=" + client_nonce_ + server_nonce_ + ",s=" + base64_encode(verifier_.salt) +
                  ",i=" + std::to_string(verifier_.iterations);
  step_ = Step::client_final;
  return server_first_;
}

std::optional<std::string> ScramServer::client_final(std::string_view message) {
  if (step_ != Step::client_final) throw std::logic_error("ScramServer: client-final-message out of turn");
  check_length(message);

  AttributeReader in(message);
  const auto binding = in.value('c');
  if (channel_binding_) {
    if (binding != base64_encode(std::string(kEndPointHeader) + end_point_)) {
      throw ScramError(kInvalidAuthorization, "SCRAM channel binding check failed");
    }
  } else if (!(binding == "biws" && cbind_flag_ == 'n') && !(binding == "eSws" && cbind_flag_ == 'y')) {
    // "biws" and "eSws" are "n,," and "y,,": the flag must repeat the client-first-message's.
    throw ScramError(kProtocolViolation, "unexpected SCRAM channel-binding attribute in client-final-message");
  }
  const auto final_nonce = in.value('r');
  std::size_t proof_at = 0;
  std::string_view proof_text;
  for (;;) {
    proof_at = in.pos();
    const auto [attr, value] = in.any();
    if (attr == 'p') {
      proof_text = value;
      break;
    }
  }
  const auto proof = base64_decode(proof_text);
  if (!proof || proof->size() != ScramKey().size()) throw malformed("Malformed proof in client-final-message.");
  if (!in.at_end()) throw malformed("Garbage found at the end of client-final-message.");
  if (final_nonce != client_nonce_ + server_nonce_) {
    throw ScramError(kProtocolViolation, "invalid SCRAM response", "Nonce does not match.");
  }
  step_ = Step::done;

  // The message up to the comma before "p=".
  const std::string auth_message =
      client_first_bare_ + "," + server_first_ + "," + std::string(message.substr(0, proof_at - 1));
  // ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage), so the proof yields the key; its hash
  // must be the StoredKey. Computed for a mock verifier too, so that timing tells nothing.
  const ScramKey client_key = xor_keys(hmac_sha256(verifier_.stored_key, auth_message), *proof);
  if (!same_key(verifier_.stored_key, bytes_of(sha256(bytes_of(client_key)))) || doomed_) return std::nullopt;
  client_key_ = client_key;
  return "v=" + base64_encode(bytes_of(hmac_sha256(verifier_.server_key, auth_message)));
}

// ---- client -----------------------------------------------------------------------------------

ScramClient::ScramClient(ScramVerifier verifier, ScramKey client_key, bool tls, std::string end_point,
                         std::string nonce)
    : verifier_(std::move(verifier)),
      client_key_(client_key),
      tls_(tls),
      end_point_(std::move(end_point)),
      nonce_(nonce.empty() ? random_nonce() : std::move(nonce)) {}

std::string ScramClient::select_mechanism(const std::vector<std::string>& offered) {
  if (step_ != Step::select) throw std::logic_error("ScramClient: mechanism selected twice");
  auto has = [&offered](std::string_view name) {
    return std::find(offered.begin(), offered.end(), name) != offered.end();
  };
  std::string chosen;
  if (tls_ && has(kScramSha256Plus)) {
    if (end_point_.empty()) {
      throw ScramError(kInvalidAuthorization,
                       "the server offers SCRAM-SHA-256-PLUS, but the hash of its certificate for channel binding "
                       "is unknown");
    }
    gs2_header_ = kEndPointHeader;
    chosen = kScramSha256Plus;
  } else if (has(kScramSha256)) {
    // "y": we could bind but the server did not offer it, which a server that can bind refuses.
    gs2_header_ = tls_ ? "y,," : "n,,";
    chosen = kScramSha256;
  } else {
    std::string list;
    for (const auto& name : offered) list += (list.empty() ? "" : ", ") + name;
    throw ScramError(kInvalidAuthorization,
                     "the server offers no SCRAM-SHA-256 authentication (offered: " + list + ")");
  }
  step_ = Step::client_first;
  return chosen;
}

std::string ScramClient::client_first() {
  if (step_ != Step::client_first) throw std::logic_error("ScramClient: client-first-message out of turn");
  // The user name travels in the startup packet; PostgreSQL ignores this one, and libpq leaves it empty.
  client_first_bare_ = "n=,r=" + nonce_;
  step_ = Step::client_final;
  return gs2_header_ + client_first_bare_;
}

std::string ScramClient::client_final(std::string_view server_first) {
  if (step_ != Step::client_final) throw std::logic_error("ScramClient: client-final-message out of turn");
  AttributeReader in(server_first);
  if (in.peek() == 'm') throw ScramError(kProtocolViolation, "the server requires an unsupported SCRAM extension");
  const auto nonce = in.value('r');
  if (nonce.size() <= nonce_.size() || !nonce.starts_with(nonce_) || !is_printable(nonce)) {
    throw ScramError(kProtocolViolation, "invalid SCRAM response from the server", "Nonce does not match.");
  }
  const auto salt = base64_decode(in.value('s'));
  if (!salt || salt->empty()) throw malformed("Invalid salt in server-first-message.");
  const auto iterations = positive_int(in.value('i'));
  if (!iterations) throw malformed("Invalid iteration count in server-first-message.");
  while (!in.at_end()) in.any();
  if (*salt != verifier_.salt || *iterations != verifier_.iterations) {
    throw ScramStaleVerifier(kInvalidAuthorization,
                             "the server's SCRAM salt or iteration count differ from the verifier looked up: the "
                             "role's password has changed");
  }

  std::string cbind_input = gs2_header_;
  if (gs2_header_ == kEndPointHeader) cbind_input += end_point_;
  const std::string without_proof = "c=" + base64_encode(cbind_input) + ",r=" + std::string(nonce);
  auth_message_ = client_first_bare_ + "," + std::string(server_first) + "," + without_proof;
  const ScramKey proof = xor_keys(hmac_sha256(verifier_.stored_key, auth_message_), bytes_of(client_key_));
  step_ = Step::server_final;
  return without_proof + ",p=" + base64_encode(bytes_of(proof));
}

void ScramClient::server_final(std::string_view message) {
  if (step_ != Step::server_final) throw std::logic_error("ScramClient: server-final-message out of turn");
  AttributeReader in(message);
  if (in.peek() == 'e') {
    throw ScramError(kInvalidAuthorization, "the server refused the SCRAM exchange: " + std::string(in.value('e')));
  }
  const auto signature = base64_decode(in.value('v'));
  if (!signature || signature->size() != ScramKey().size()) {
    throw malformed("Invalid server signature in server-final-message.");
  }
  if (!same_key(hmac_sha256(verifier_.server_key, auth_message_), *signature)) {
    throw ScramError(kInvalidAuthorization,
                     "the server's SCRAM signature is wrong: it does not hold this role's ServerKey");
  }
  step_ = Step::done;
}

}  // namespace occ
