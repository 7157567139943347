#include "session/bind_values.h"

#include <cctype>

namespace occ {

namespace {

constexpr char kHex[] = "0123456789abcdef";

void append_hex(std::string& out, unsigned char byte) {
  out.push_back(kHex[byte >> 4]);
  out.push_back(kHex[byte & 15]);
}

}  // namespace

std::optional<std::string> audit_param_text(const pg::Bind& bind, std::size_t i) {
  const auto& v = bind.params[i];
  if (!v) return std::nullopt;
  if (pg::format_code(bind.param_formats, i) == 0) return std::string(*v);
  std::string hex = "\\x";
  for (unsigned char c : *v) append_hex(hex, c);
  return hex;
}

nlohmann::json mine_value(const std::string& sql_text, const std::vector<std::optional<std::string>>* params,
                          StringSyntax syntax) {
  if (params && sql_text.size() > 1 && sql_text[0] == '$') {
    std::size_t n = 0;
    for (std::size_t i = 1; i < sql_text.size() && std::isdigit(static_cast<unsigned char>(sql_text[i])); ++i)
      n = n * 10 + static_cast<std::size_t>(sql_text[i] - '0');
    if (n >= 1 && n <= params->size()) {
      const auto& p = (*params)[n - 1];
      return p ? nlohmann::json(*p) : nlohmann::json(nullptr);
    }
  }
  if (auto value = constant_value(sql_text, syntax)) return *value;
  if (sql_text == "NULL" || sql_text == "null") return nullptr;
  return sql_text;
}

std::optional<std::string> key_text(const pg::Bind& bind, std::size_t i, const std::vector<int32_t>& types) {
  if (i >= bind.params.size() || !bind.params[i]) return std::nullopt;
  std::string_view v = *bind.params[i];
  if (pg::format_code(bind.param_formats, i) == 0) return std::string(v);
  const int32_t type = i < types.size() ? types[i] : 0;
  auto big_endian = [&](std::size_t n) {
    uint64_t u = 0;
    for (std::size_t k = 0; k < n; ++k) u = (u << 8) | static_cast<unsigned char>(v[k]);
    int64_t value = n == 2 ? static_cast<int16_t>(u) : n == 4 ? static_cast<int32_t>(u) : static_cast<int64_t>(u);
    return std::to_string(value);
  };
  constexpr int32_t kInt2 = 21, kInt4 = 23, kInt8 = 20, kUuid = 2950, kText = 25, kVarchar = 1043, kBpchar = 1042;
  if (type == kText || type == kVarchar || type == kBpchar) return std::string(v);
  if ((type == kInt2 && v.size() == 2) || (type == kInt4 && v.size() == 4) || (type == kInt8 && v.size() == 8) ||
      (type == 0 && (v.size() == 2 || v.size() == 4 || v.size() == 8)))
    return big_endian(v.size());
  if ((type == kUuid || type == 0) && v.size() == 16) {
    std::string out;
    for (std::size_t k = 0; k < 16; ++k) {
      if (k == 4 || k == 6 || k == 8 || k == 10) out.push_back('-');
      append_hex(out, static_cast<unsigned char>(v[k]));
    }
    return out;
  }
  return std::nullopt;
}

}  // namespace occ
