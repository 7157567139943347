// Shared by the config and rules loaders: every YAML mistake names file and line.
#pragma once

#include <string>
#include <string_view>

#include <yaml-cpp/yaml.h>

namespace occ {

// "file:line: message" (line is 1-based, from the node's mark).
std::string located(const std::string& file, const YAML::Node& node, std::string_view message);

}  // namespace occ
