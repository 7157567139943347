// JSON written straight into a string, for text the proxy builds on every checked statement or
// tracked row: a nlohmann document costs several times more than the text itself.
#pragma once

#include <string>
#include <string_view>

namespace occ {

// Appends `s` as a JSON string. Bytes are copied as they are: the text travels to the server in
// the client's encoding, which the server converts like the rest of the statement.
inline void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20) {
      out += "\\u00";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += ch;
    }
  }
  out += '"';
}

}  // namespace occ
