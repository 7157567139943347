// MD5 challenge-response over the stored hash with OpenSSL's MD5 digest.
#include "auth/md5_auth.h"

#include <algorithm>
#include <stdexcept>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

namespace occ {

namespace {

std::string md5_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned length = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &length, EVP_md5(), nullptr) != 1 || length != 16) {
    throw std::runtime_error("MD5 is not available in this OpenSSL");
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(32);
  for (unsigned i = 0; i < length; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

}  // namespace

bool is_md5_hash(std::string_view stored) {
  return stored.size() == 35 && stored.starts_with("md5") && std::all_of(stored.begin() + 3, stored.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string md5_hash(std::string_view user, std::string_view password) {
  return "md5" + md5_hex(std::string(password) + std::string(user));
}

std::string md5_salt() {
  std::string salt(4, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(salt.data()), 4) != 1) {
    throw std::runtime_error("OpenSSL could not generate random bytes");
  }
  return salt;
}

std::string md5_response(std::string_view stored, std::string_view salt) {
  if (!is_md5_hash(stored)) throw std::invalid_argument("not an md5 password hash");
  if (salt.size() != 4) throw std::invalid_argument("the md5 salt must be 4 bytes, got " + std::to_string(salt.size()));
  return "md5" + md5_hex(std::string(stored.substr(3)) + std::string(salt));
}

bool md5_response_matches(std::string_view stored, std::string_view salt, std::string_view response) {
  const std::string expected = md5_response(stored, salt);
  return response.size() == expected.size() && CRYPTO_memcmp(response.data(), expected.data(), expected.size()) == 0;
}

}  // namespace occ
