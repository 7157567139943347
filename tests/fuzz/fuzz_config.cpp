// libFuzzer target: the main config loader; any text loads or is refused with a ConfigError at file:line.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const occ::Config config = occ::parse_config(text, "/etc/occproxy/fuzz.yaml");
    // Limits are checked at load: a config that loads is one the listener can run with.
    if (config.max_client_connections == 0 || config.max_message_length < 8192 || config.startup_timeout.count() <= 0 ||
        config.upstream.port == 0 || config.listen.port == 0) {
      std::fprintf(stderr, "fuzz_config: a config with an impossible limit loaded\n");
      std::abort();
    }
  } catch (const occ::ConfigError& e) {
    if (std::string(e.what()).rfind("/etc/occproxy/fuzz.yaml:", 0) != 0) {
      std::fprintf(stderr, "fuzz_config: error without file:line: %s\n", e.what());
      std::abort();
    }
  }
  return 0;
}
