// The accept loop, the io threads (one io_context each) and the process signals.
#pragma once

#include <functional>

namespace occ {

struct Config;
class PolicyStore;

// Runs the proxy until SIGTERM (graceful) or SIGINT (immediate). `reload` runs on SIGHUP, off
// the io threads. Returns the process exit status.
int run_listener(const Config& config, PolicyStore& policy, std::function<void()> reload);

}  // namespace occ
