// Shared by the config and rules loaders: every YAML mistake names file and line.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace occ {

// "file:line: message" (line is 1-based, from the node's mark).
std::string located(const std::string& file, const YAML::Node& node, std::string_view message);

// A located YAML mistake; the loaders rethrow it as their own error type.
struct YamlError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The whole text of a file; a missing or unreadable file throws YamlError naming the path.
std::string read_text_file(const std::string& path, std::string_view what);

// Strict typed access to one YAML document. `key` arguments are the dotted path shown in
// messages ("stats.listen", "tables[1].mode"), so every error reads "file:line: key: problem".
class YamlReader {
 public:
  // Parses `text`; a syntax error throws YamlError with the parser's line.
  YamlReader(std::string file_name, const std::string& text);

  const std::string& file() const { return file_; }
  const YAML::Node& root() const { return root_; }

  [[noreturn]] void fail(const YAML::Node& at, std::string_view key, std::string_view problem) const;

  struct Entry {
    std::string key;   // the key as written
    std::string path;  // `key` prefixed with the parent path
    YAML::Node key_node;
    YAML::Node value;
  };
  // The entries of a mapping in file order. Unknown keys (with a suggestion when one of `known` is
  // close) and keys given twice are errors; so is a value that has nothing after the colon.
  std::vector<Entry> entries(const YAML::Node& map, std::string_view path,
                             const std::vector<std::string_view>& known) const;

  std::string string(const Entry& e) const;
  bool boolean(const Entry& e) const;
  uint64_t unsigned_integer(const Entry& e, uint64_t min, uint64_t max) const;
  std::chrono::milliseconds duration(const Entry& e, bool allow_zero) const;
  // The entry's value, which must be a list.
  const YAML::Node& list(const Entry& e) const;
  std::vector<std::string> string_list(const Entry& e) const;
  // One of `choices`; anything else names them all.
  std::string choice(const Entry& e, std::initializer_list<std::string_view> choices) const;

 private:
  std::string file_;
  YAML::Node root_;
};

}  // namespace occ
