// Loads the main YAML config: every key type-checked, unknown keys refused, relative paths anchored.
#include "proxy/config.h"

#include <algorithm>
#include <charconv>
#include <filesystem>

#include "rules/yaml_errors.h"

namespace occ {

Endpoint parse_endpoint(const std::string& text) {
  const std::string example = " (e.g. 127.0.0.1:6432 or [::1]:6432)";
  std::string host;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos) throw std::invalid_argument("missing ']' after the IPv6 address in \"" + text + "\"");
    host = text.substr(1, close - 1);
    if (close + 1 >= text.size() || text[close + 1] != ':') {
      throw std::invalid_argument("expected [address]:port, got \"" + text + "\"" + example);
    }
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) throw std::invalid_argument("expected host:port, got \"" + text + "\"" + example);
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      throw std::invalid_argument("an IPv6 address needs brackets: \"[" + host + "]:" + port + "\"");
    }
  }
  if (host.empty()) throw std::invalid_argument("no host in \"" + text + "\"" + example);
  if (std::any_of(host.begin(), host.end(), [](unsigned char c) { return c <= ' ' || c == '/'; })) {
    throw std::invalid_argument("bad host \"" + host + "\" in \"" + text + "\"");
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  const bool digits_only = !port.empty() && std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits_only || ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
    throw std::invalid_argument("port must be a number from 1 to 65535, got \"" + port + "\" in \"" + text + "\"");
  }
  return Endpoint{host, static_cast<uint16_t>(value)};
}

namespace {

std::string anchored(const std::string& config_path, const std::string& path) {
  std::filesystem::path p(path);
  if (p.is_relative()) p = std::filesystem::absolute(std::filesystem::path(config_path).parent_path() / p);
  return p.lexically_normal().string();
}

class ConfigParser {
 public:
  ConfigParser(const std::string& text, const std::string& path) : yaml_(path, text) { config_.path = path; }

  Config parse() {
    bool have_upstream = false;
    for (const auto& e : yaml_.entries(yaml_.root(), "",
                                       {"listen", "upstream", "admin_dsn", "rules", "threads", "max_client_connections",
                                        "max_message_length", "startup_timeout", "shutdown_timeout", "stats", "log",
                                        "audit", "read_set", "auth", "tls"})) {
      if (e.key == "listen") {
        config_.listen = endpoint(e);
      } else if (e.key == "upstream") {
        config_.upstream = endpoint(e);
        have_upstream = true;
      } else if (e.key == "admin_dsn") {
        config_.admin_dsn = yaml_.string(e);
      } else if (e.key == "rules") {
        config_.rules_path = path(e);
      } else if (e.key == "threads") {
        config_.threads = static_cast<unsigned>(yaml_.unsigned_integer(e, 0, 1024));
      } else if (e.key == "max_client_connections") {
        config_.max_client_connections = yaml_.unsigned_integer(e, 1, 1'000'000);
      } else if (e.key == "max_message_length") {
        // PostgreSQL itself refuses messages over 1 GiB; below 8 KiB a long startup packet would not fit.
        config_.max_message_length = yaml_.unsigned_integer(e, 8192, 0x3fffffff);
      } else if (e.key == "startup_timeout") {
        config_.startup_timeout = yaml_.duration(e, false);
      } else if (e.key == "shutdown_timeout") {
        config_.shutdown_timeout = yaml_.duration(e, true);
      } else if (e.key == "stats") {
        stats(e);
      } else if (e.key == "log") {
        log(e);
      } else if (e.key == "audit") {
        for (const auto& a : yaml_.entries(e.value, e.path, {"table"})) config_.audit_table = yaml_.boolean(a);
      } else if (e.key == "read_set") {
        for (const auto& r : yaml_.entries(e.value, e.path, {"max_rows"})) {
          config_.read_set_max_rows = yaml_.unsigned_integer(r, 1, 100'000'000);
        }
      } else if (e.key == "auth") {
        auth(e);
      } else {
        yaml_.fail(e.key_node, e.path, "TLS is not supported by this build yet; remove the tls section");
      }
    }
    if (!have_upstream) {
      // A key that is absent has no line of its own: point at the top of the file.
      yaml_.fail(YAML::Node(), "upstream", "missing; set it to the PostgreSQL server's host:port");
    }
    return config_;
  }

 private:
  Endpoint endpoint(const YamlReader::Entry& e) const {
    std::string text = yaml_.string(e);
    try {
      return parse_endpoint(text);
    } catch (const std::invalid_argument& bad) {
      yaml_.fail(e.key_node, e.path, bad.what());
    }
  }

  std::string path(const YamlReader::Entry& e) const {
    std::string text = yaml_.string(e);
    if (text.empty()) yaml_.fail(e.key_node, e.path, "is empty; give a file path or remove the key");
    return anchored(config_.path, text);
  }

  void stats(const YamlReader::Entry& section) {
    for (const auto& e : yaml_.entries(section.value, section.path, {"listen", "token"})) {
      if (e.key == "listen") {
        config_.stats.listen = endpoint(e);
      } else {
        config_.stats.token = yaml_.string(e);
      }
    }
  }

  void log(const YamlReader::Entry& section) {
    for (const auto& e : yaml_.entries(section.value, section.path, {"level", "audit_file"})) {
      if (e.key == "level") {
        config_.log_level = yaml_.choice(e, {"trace", "debug", "info", "warn", "error", "off"});
      } else {
        config_.audit_file = path(e);
      }
    }
  }

  void auth(const YamlReader::Entry& section) {
    for (const auto& e : yaml_.entries(section.value, section.path, {"mode"})) {
      if (yaml_.string(e) == "terminate") {
        yaml_.fail(e.key_node, e.path, "terminate is not supported by this build yet; use passthrough");
      }
      yaml_.choice(e, {"passthrough"});
    }
  }

  YamlReader yaml_;
  Config config_;
};

}  // namespace

Config parse_config(const std::string& yaml_text, const std::string& path) {
  try {
    return ConfigParser(yaml_text, path).parse();
  } catch (const YamlError& e) {
    throw ConfigError(e.what());
  }
}

Config load_config(const std::string& path) {
  std::string text;
  try {
    text = read_text_file(path, "config file");
  } catch (const YamlError& e) {
    throw ConfigError(e.what());
  }
  return parse_config(text, path);
}

}  // namespace occ
