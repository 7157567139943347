// MD5 password authentication (AuthenticationMD5Password) from a role's stored hash, never its password.
#pragma once

#include <string>
#include <string_view>

namespace occ {

// "md5" and 32 lowercase hex digits: how PostgreSQL stores an md5 password in pg_authid.
bool is_md5_hash(std::string_view stored);

// PostgreSQL's stored form for `password` of `user`: "md5" + md5hex(password + user).
std::string md5_hash(std::string_view user, std::string_view password);

// Four random bytes for an AuthenticationMD5Password request to a client.
std::string md5_salt();

// The PasswordMessage text (without its NUL) that answers `salt` (4 bytes) for this stored hash:
// "md5" + md5hex(hex digits of the hash + salt). Throws std::invalid_argument for a hash that is
// not is_md5_hash or a salt that is not 4 bytes.
std::string md5_response(std::string_view stored, std::string_view salt);

// Whether a client's PasswordMessage answers `salt` for this stored hash (constant-time compare).
bool md5_response_matches(std::string_view stored, std::string_view salt, std::string_view response);

}  // namespace occ
