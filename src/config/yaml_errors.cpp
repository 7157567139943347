// Strict YAML access for the config and rules loaders: types, ranges and keys checked, file:line on every error.
#include "config/yaml_errors.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "config/duration.h"

namespace occ {

namespace {

std::string quoted(std::string_view text) {
  std::string out = "\"";
  out += text;
  out += '"';
  return out;
}

template <class Words>
std::string join(const Words& words, std::string_view last_separator) {
  std::string out;
  std::size_t i = 0;
  for (auto w : words) {
    if (i > 0) out += (i + 1 == words.size()) ? last_separator : std::string_view(", ");
    out += w;
    ++i;
  }
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

const char* kind_name(const YAML::Node& node) {
  if (node.IsMap()) return "a mapping";
  if (node.IsSequence()) return "a list";
  if (node.IsNull()) return "nothing";
  return "a value";
}

}  // namespace

std::string located(const std::string& file, const YAML::Node& node, std::string_view message) {
  std::string out = file;
  const YAML::Mark mark = node.Mark();
  // A missing document has no position; its first line is where the reader should look.
  out += ':';
  out += std::to_string(mark.is_null() ? 1 : mark.line + 1);
  out += ": ";
  out += message;
  return out;
}

std::string read_text_file(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw YamlError("cannot read " + std::string(what) + " " + path + ": " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw YamlError("cannot read " + std::string(what) + " " + path + ": read error");
  return text.str();
}

YamlReader::YamlReader(std::string file_name, const std::string& text) : file_(std::move(file_name)) {
  try {
    root_ = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw YamlError(file_ + ":" + std::to_string(e.mark.is_null() ? 1 : e.mark.line + 1) +
                    ": invalid YAML: " + e.msg);
  }
}

void YamlReader::fail(const YAML::Node& at, std::string_view key, std::string_view problem) const {
  std::string message;
  if (!key.empty()) {
    message += key;
    message += ": ";
  }
  message += problem;
  throw YamlError(located(file_, at, message));
}

std::vector<YamlReader::Entry> YamlReader::entries(const YAML::Node& map, std::string_view path,
                                                   const std::vector<std::string_view>& known) const {
  std::vector<Entry> out;
  if (map.IsNull() && path.empty()) return out;  // an empty file is an empty mapping
  if (!map.IsMap()) {
    fail(map, path, std::string("expected a mapping of keys, got ") + kind_name(map));
  }
  std::unordered_map<std::string, int> first_line;
  for (auto it = map.begin(); it != map.end(); ++it) {
    Entry e;
    e.key_node = it->first;
    e.value = it->second;
    if (!e.key_node.IsScalar()) fail(e.key_node, path, "keys must be plain names");
    e.key = e.key_node.Scalar();
    e.path = path.empty() ? e.key : std::string(path) + "." + e.key;
    if (std::find(known.begin(), known.end(), e.key) == known.end()) {
      std::string problem = "unknown key";
      auto best = std::min_element(known.begin(), known.end(), [&](std::string_view a, std::string_view b) {
        return edit_distance(e.key, a) < edit_distance(e.key, b);
      });
      if (best != known.end() && edit_distance(e.key, *best) <= 2) {
        problem += " (did you mean " + std::string(*best) + "?)";
      } else {
        problem += "; expected one of: " + join(known, ", ");
      }
      fail(e.key_node, e.path, problem);
    }
    auto [seen, inserted] = first_line.emplace(e.key, e.key_node.Mark().line + 1);
    if (!inserted) fail(e.key_node, e.path, "given twice (first on line " + std::to_string(seen->second) + ")");
    if (e.value.IsNull()) fail(e.key_node, e.path, "has no value");
    out.push_back(std::move(e));
  }
  return out;
}

std::string YamlReader::string(const Entry& e) const {
  if (!e.value.IsScalar()) fail(e.key_node, e.path, std::string("expected a string, got ") + kind_name(e.value));
  return e.value.Scalar();
}

bool YamlReader::boolean(const Entry& e) const {
  if (e.value.IsScalar()) {
    const std::string& s = e.value.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
    fail(e.key_node, e.path, "expected true or false, got " + quoted(s));
  }
  fail(e.key_node, e.path, std::string("expected true or false, got ") + kind_name(e.value));
}

uint64_t YamlReader::unsigned_integer(const Entry& e, uint64_t min, uint64_t max) const {
  const std::string range = "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
  if (!e.value.IsScalar()) fail(e.key_node, e.path, "expected " + range + ", got " + kind_name(e.value));
  const std::string& s = e.value.Scalar();
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  const bool digits_only = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits_only || ec != std::errc() || end != s.data() + s.size() || n < min || n > max) {
    fail(e.key_node, e.path, "expected " + range + ", got " + quoted(s));
  }
  return n;
}

std::chrono::milliseconds YamlReader::duration(const Entry& e, bool allow_zero) const {
  if (!e.value.IsScalar()) fail(e.key_node, e.path, std::string("expected a duration, got ") + kind_name(e.value));
  const std::string& s = e.value.Scalar();
  auto d = parse_duration(s);
  if (!d) {
    fail(e.key_node, e.path,
         "bad duration " + quoted(s) + ": expected a whole number and a unit: ms, s, m or h (e.g. 500ms, 2s, 5m, 1h)");
  }
  if (!allow_zero && d->count() == 0) fail(e.key_node, e.path, "must be longer than zero");
  return *d;
}

const YAML::Node& YamlReader::list(const Entry& e) const {
  if (!e.value.IsSequence()) fail(e.key_node, e.path, std::string("expected a list, got ") + kind_name(e.value));
  return e.value;
}

std::vector<std::string> YamlReader::string_list(const Entry& e) const {
  list(e);
  std::vector<std::string> out;
  for (const auto& item : e.value) {
    if (!item.IsScalar()) {
      fail(item.IsNull() ? e.key_node : item, e.path,
           std::string("list items must be strings, got ") + kind_name(item));
    }
    out.push_back(item.Scalar());
  }
  return out;
}

std::string YamlReader::choice(const Entry& e, std::initializer_list<std::string_view> choices) const {
  const std::string expected = "expected " + join(choices, " or ");
  if (!e.value.IsScalar()) fail(e.key_node, e.path, expected + ", got " + kind_name(e.value));
  const std::string& s = e.value.Scalar();
  if (std::find(choices.begin(), choices.end(), s) == choices.end()) fail(e.key_node, e.path, expected + ", got " + quoted(s));
  return s;
}

}  // namespace occ
