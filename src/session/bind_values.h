// A Bind's parameter values as text: the audit's "mine" and the read set's keys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sql/literal.h"
#include "wire/messages.h"

namespace occ {

// Parameter i as the audit shows it: text as sent, binary as \x hex; nullopt for NULL.
std::optional<std::string> audit_param_text(const pg::Bind& bind, std::size_t i);

// The value a write's SET item gave a column, as the audit shows it: a bound parameter's value
// (`params`: the portal's audit_param_text values, null outside the extended protocol), a
// constant's value as the server read it, or the SQL text of any other expression.
nlohmann::json mine_value(const std::string& sql_text, const std::vector<std::optional<std::string>>* params,
                          StringSyntax syntax);

// Parameter i in the text form the server prints (what the read set is keyed by). Binary integers
// and uuids are decoded, by the statement's parameter types when the server described them, else
// by size; NULL, a missing parameter or an undecodable value yields nullopt.
std::optional<std::string> key_text(const pg::Bind& bind, std::size_t i, const std::vector<int32_t>& types);

}  // namespace occ
