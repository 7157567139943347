// `occproxy` with no config: a throwaway PostgreSQL on loopback with a demo schema and rules,
// and the proxy in front of it, so a newcomer can provoke a conflict at once.
#pragma once

#include <functional>

namespace occ {

struct Config;

// Sets up the demo database, then calls `run_proxy` with a config pointing at it; cleans up
// when the proxy returns. Returns the exit status.
int run_demo(const std::function<int(const Config&)>& run_proxy);

}  // namespace occ
