// Loads the main YAML config: every key type-checked, unknown keys refused, relative paths anchored.
#include "config/config.h"

#include <algorithm>
#include <charconv>
#include <filesystem>

#include "config/yaml_errors.h"

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

const char* to_string(ClientTlsMode mode) {
  switch (mode) {
    case ClientTlsMode::disable: return "disable";
    case ClientTlsMode::allow: return "allow";
    case ClientTlsMode::require: return "require";
  }
  return "?";
}

const char* to_string(UpstreamTlsMode mode) {
  switch (mode) {
    case UpstreamTlsMode::disable: return "disable";
    case UpstreamTlsMode::prefer: return "prefer";
    case UpstreamTlsMode::require: return "require";
    case UpstreamTlsMode::verify_ca: return "verify-ca";
    case UpstreamTlsMode::verify_full: return "verify-full";
  }
  return "?";
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
        tls(e);
      }
    }
    if (!have_upstream) {
      // A key that is absent has no line of its own: point at the top of the file.
      yaml_.fail(YAML::Node(), "upstream", "missing; set it to the PostgreSQL server's host:port");
    }
    if (config_.auth.mode == AuthMode::terminate && config_.admin_dsn.empty()) {
      yaml_.fail(auth_mode_at_, "auth.mode",
                 "terminate needs admin_dsn: the proxy looks up each role's password verifier through it");
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
    for (const auto& e : yaml_.entries(section.value, section.path, {"level", "file", "format", "audit_file"})) {
      if (e.key == "level") {
        config_.log_level = yaml_.choice(e, {"trace", "debug", "info", "warn", "error", "off"});
      } else if (e.key == "file") {
        config_.log_file = path(e);
      } else if (e.key == "format") {
        config_.log_json = yaml_.choice(e, {"text", "json"}) == "json";
      } else {
        config_.audit_file = path(e);
      }
    }
  }

  // terminate does not require TLS on either hop: without it the client still proves its password
  // by SCRAM (just without channel binding), which is what the server itself offers a plaintext
  // client, and the password never crosses either connection.
  void auth(const YamlReader::Entry& section) {
    for (const auto& e : yaml_.entries(section.value, section.path, {"mode", "query", "cache_ttl"})) {
      if (e.key == "mode") {
        auth_mode_at_ = e.key_node;
        const bool terminate = yaml_.choice(e, {"passthrough", "terminate"}) == "terminate";
        config_.auth.mode = terminate ? AuthMode::terminate : AuthMode::passthrough;
      } else if (e.key == "query") {
        config_.auth.query = yaml_.string(e);
        if (config_.auth.query.find("$1") == std::string::npos) {
          yaml_.fail(e.key_node, e.path, "must take the role name as $1 and return (rolname, rolpassword)");
        }
      } else {
        config_.auth.cache_ttl = yaml_.duration(e, true);
      }
    }
  }

  void tls(const YamlReader::Entry& section) {
    YAML::Node cert_at, key_at, client_mode_at, upstream_mode_at, ca_at;
    bool client_mode_given = false;
    for (const auto& e : yaml_.entries(section.value, section.path,
                                       {"cert_file", "key_file", "client_mode", "upstream_mode", "upstream_ca_file"})) {
      if (e.key == "cert_file") {
        cert_at = e.key_node;
        config_.tls.cert_file = path(e);
      } else if (e.key == "key_file") {
        key_at = e.key_node;
        config_.tls.key_file = path(e);
      } else if (e.key == "client_mode") {
        client_mode_at = e.key_node;
        client_mode_given = true;
        const auto mode = yaml_.choice(e, {"disable", "allow", "require"});
        config_.tls.client_mode = mode == "disable" ? ClientTlsMode::disable
                                  : mode == "allow" ? ClientTlsMode::allow
                                                    : ClientTlsMode::require;
      } else if (e.key == "upstream_mode") {
        upstream_mode_at = e.key_node;
        const auto mode = yaml_.choice(e, {"disable", "prefer", "require", "verify-ca", "verify-full"});
        config_.tls.upstream_mode = mode == "disable"     ? UpstreamTlsMode::disable
                                    : mode == "prefer"    ? UpstreamTlsMode::prefer
                                    : mode == "require"   ? UpstreamTlsMode::require
                                    : mode == "verify-ca" ? UpstreamTlsMode::verify_ca
                                                          : UpstreamTlsMode::verify_full;
      } else {
        ca_at = e.key_node;
        config_.tls.upstream_ca_file = path(e);
      }
    }
    auto& tls = config_.tls;
    if (!tls.cert_file.empty() && tls.key_file.empty()) {
      yaml_.fail(cert_at, "tls.cert_file", "needs tls.key_file, the certificate's private key");
    }
    if (tls.cert_file.empty() && !tls.key_file.empty()) {
      yaml_.fail(key_at, "tls.key_file", "needs tls.cert_file, the certificate it belongs to");
    }
    if (!client_mode_given) {
      tls.client_mode = tls.cert_file.empty() ? ClientTlsMode::disable : ClientTlsMode::allow;
    } else if (tls.client_mode != ClientTlsMode::disable && tls.cert_file.empty()) {
      yaml_.fail(client_mode_at, "tls.client_mode",
                 std::string(to_string(tls.client_mode)) + " needs tls.cert_file and tls.key_file");
    }
    const bool verifies =
        tls.upstream_mode == UpstreamTlsMode::verify_ca || tls.upstream_mode == UpstreamTlsMode::verify_full;
    if (verifies && tls.upstream_ca_file.empty()) {
      yaml_.fail(upstream_mode_at, "tls.upstream_mode",
                 std::string(to_string(tls.upstream_mode)) +
                     " needs tls.upstream_ca_file, the CA certificates that the server's certificate must chain to");
    }
    // A CA file that nothing checks against would look like verification without being one.
    if (!verifies && !tls.upstream_ca_file.empty()) {
      yaml_.fail(ca_at, "tls.upstream_ca_file",
                 "is only used by upstream_mode verify-ca or verify-full, but upstream_mode is " +
                     std::string(to_string(tls.upstream_mode)));
    }
  }

  YamlReader yaml_;
  Config config_;
  YAML::Node auth_mode_at_;
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
