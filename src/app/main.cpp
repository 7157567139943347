// occproxy's command line: run the proxy, migrate, check, or (with no config) the demo.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "audit/audit_log.h"
#include "audit/invariants.h"
#include "auth/auth_lookup.h"
#include "config/config.h"
#include "app/demo.h"
#include "net/listener.h"
#include "audit/log_file.h"
#include "session/policy_store.h"
#include "net/tls_context.h"
#include "admin/catalog.h"
#include "admin/migrate.h"
#include "config/rules.h"
#include "stats/counters.h"
#include "http/http_server.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitProblem = 1;  // the catalog check failed, or the proxy could not run
constexpr int kExitUsage = 2;    // bad command line, config or rules

constexpr const char* kUsage = R"(occproxy: optimistic concurrency control for PostgreSQL, as a proxy

Usage:
  occproxy                          start a demo: a throwaway PostgreSQL on loopback with a
                                    demo schema and rules, and the proxy in front of it
  occproxy --config FILE            run the proxy
  occproxy migrate --config FILE    install the occ schema, version columns and triggers
  occproxy check --config FILE      validate config and rules against the live catalog
  occproxy --help | --version

Signals: SIGHUP reloads the rules and reopens the log files, SIGTERM shuts down
gracefully, SIGINT at once.
)";

bool tls_configured(const occ::Config& config) {
  return config.tls.client_mode != occ::ClientTlsMode::disable || config.tls.upstream_mode != occ::UpstreamTlsMode::disable;
}

// The rules file named by the config: nullopt, with the mistake reported, when it is bad.
std::optional<occ::Rules> read_rules(const occ::Config& config, bool to_stderr) {
  std::string problem;
  try {
    occ::Rules rules = occ::load_rules(config.rules_path);
    if (rules.invariants.empty() || !config.admin_dsn.empty()) return rules;
    problem = config.rules_path + ": invariants: they run on admin_dsn, which " + config.path + " does not set";
  } catch (const occ::RulesError& e) {
    problem = e.what();
  }
  if (to_stderr)
    std::cerr << problem << "\n";
  else
    spdlog::error("rules not loaded: {}", problem);
  return std::nullopt;
}

// Makes every protected table's per-table series exist before anything is counted on it.
void register_tables(const occ::Rules& rules) {
  for (const occ::TablePolicy& t : rules.tables) occ::stats::register_table(t.qualified_name());
}

// With TLS on both hops a relayed SCRAM exchange cannot use channel binding (README, TLS and authentication).
bool passthrough_over_two_tls_hops(const occ::Config& config) {
  return config.auth.mode == occ::AuthMode::passthrough && config.tls.client_mode != occ::ClientTlsMode::disable &&
         config.tls.upstream_mode != occ::UpstreamTlsMode::disable;
}

// Runs auth.query once (for a role that need not exist) to prove admin_dsn and the query work;
// on success `lookup` is the proxy's. Returns the problem, empty when there is none.
std::string auth_query_problem(const occ::Config& config, std::shared_ptr<occ::AuthLookup>& lookup) {
  auto made = std::make_shared<occ::AuthLookup>(config.admin_dsn, config.auth.query, config.auth.cache_ttl);
  try {
    made->fetch("");
  } catch (const std::exception& e) {
    return std::string("auth.query cannot run: ") + e.what();
  }
  lookup = std::move(made);
  return {};
}

// The rules checked against the live catalog: nullopt, with the report logged, on any problem.
std::optional<occ::Policy> checked_policy(const occ::Config& config, occ::Rules rules) {
  auto report = occ::check_catalog(config, rules);
  if (!report.ok) {
    spdlog::error("rules not loaded, the catalog check failed:\n{}", report.text());
    return std::nullopt;
  }
  rules.views = std::move(report.views);
  occ::Policy policy;
  policy.rules = std::make_shared<const occ::Rules>(std::move(rules));
  policy.relations = std::move(report.relations);
  return policy;
}

int run_proxy(const occ::Config& config) {
  try {
    occ::configure_main_log(config);
  } catch (const std::runtime_error& e) {
    std::cerr << config.path << ": log.file: " << e.what() << "\n";
    return kExitProblem;
  }
  occ::Policy initial;
  if (!config.rules_path.empty()) {
    auto rules = read_rules(config, true);
    if (!rules) return kExitUsage;
    auto policy = checked_policy(config, std::move(*rules));
    if (!policy) return kExitProblem;
    initial = std::move(*policy);
    spdlog::info("{} protected tables from {}", initial.rules->tables.size(), config.rules_path);
  } else {
    spdlog::warn("no rules file configured: relaying only, no table is protected");
  }
  if (config.auth.mode == occ::AuthMode::terminate) {
    std::string problem = auth_query_problem(config, initial.auth);
    if (!problem.empty()) {
      spdlog::error("auth.mode terminate: {}", problem);
      return kExitProblem;
    }
    spdlog::info("auth.mode terminate: the proxy checks client passwords against auth.query's verifiers");
  }
  if (tls_configured(config)) {
    auto tls = occ::load_tls(config.tls);
    if (!tls.contexts) {
      std::cerr << config.path << ": tls: " << tls.error << "\n";
      return kExitUsage;
    }
    initial.tls = std::move(tls.contexts);
    spdlog::info("TLS: clients {}, upstream {}", occ::to_string(config.tls.client_mode),
                 occ::to_string(config.tls.upstream_mode));
    if (passthrough_over_two_tls_hops(config))
      spdlog::warn("TLS on both hops with auth.mode: passthrough: clients that use SCRAM channel binding "
                   "(libpq's default over TLS) are refused with a clear error; they need channel_binding=disable");
  }
  if (initial.rules) register_tables(*initial.rules);
  if (!config.admin_dsn.empty()) {
    occ::invariants::start(config.admin_dsn);
    if (initial.rules) occ::invariants::set(initial.rules->invariants);
  }
  occ::PolicyStore store;
  store.set(std::make_shared<const occ::Policy>(std::move(initial)));

  try {
    occ::audit::start(config);
  } catch (const std::runtime_error& e) {
    spdlog::critical("{}", e.what());
    occ::invariants::stop();
    return kExitProblem;
  }
  occ::stats::HttpServerOptions http_options{config.stats.listen, config.stats.token,
                                             occ::stats::upstream_probe(config.upstream)};
  http_options.max_client_connections = config.max_client_connections;
  occ::stats::HttpServer http(std::move(http_options));
  try {
    http.start();
  } catch (const std::exception& e) {
    spdlog::critical("cannot start the stats endpoint on {}:{}: {}", config.stats.listen.host,
                     config.stats.listen.port, e.what());
    occ::audit::stop();
    occ::invariants::stop();
    return kExitProblem;
  }

  // Rules and certificates are reloaded independently: a part that fails keeps its old version.
  // The log files are reopened first, so that what the reload logs lands in the new files.
  auto reload = [&config, &store] {
    for (const std::string& problem : {occ::reopen_main_log(), occ::audit::reopen_file()})
      if (!problem.empty()) spdlog::error("SIGHUP: {}; still writing to the file open before", problem);
    occ::Policy next = *store.get();
    bool ok = true;
    if (!config.rules_path.empty()) {
      auto rules = read_rules(config, false);
      auto checked = rules ? checked_policy(config, std::move(*rules)) : std::nullopt;
      if (checked) {
        next.rules = std::move(checked->rules);
        next.relations = std::move(checked->relations);
        register_tables(*next.rules);
        occ::invariants::set(next.rules->invariants);
        spdlog::info("SIGHUP: rules reloaded from {}", config.rules_path);
      } else {
        ok = false;
        spdlog::error("SIGHUP: reload failed, the previous rules stay in force");
      }
    }
    if (tls_configured(config)) {
      auto tls = occ::load_tls(config.tls);
      if (tls.contexts) {
        next.tls = std::move(tls.contexts);
        spdlog::info("SIGHUP: TLS certificates reloaded");
      } else {
        ok = false;
        spdlog::error("SIGHUP: TLS not reloaded ({}), the previous certificates stay in force", tls.error);
      }
    }
    store.set(std::make_shared<const occ::Policy>(std::move(next)));
    occ::stats::add(ok ? occ::stats::Counter::rules_reload_ok : occ::stats::Counter::rules_reload_failed);
  };
  int status = occ::run_listener(config, store, reload);
  http.stop();
  occ::invariants::stop();
  occ::audit::stop();
  return status;
}

int run_migrate(const occ::Config& config) {
  occ::configure_console_log(config.log_level);
  if (config.rules_path.empty()) {
    std::cerr << config.path << ": `rules` is required for migrate\n";
    return kExitUsage;
  }
  auto rules = read_rules(config, true);
  if (!rules) return kExitUsage;
  auto result = occ::run_migrations(config, *rules, occ::migrations_dir());
  if (!result.ok) {
    std::cerr << "migrate failed: " << result.error << "\n";
    return kExitProblem;
  }
  if (result.applied.empty()) std::cout << "nothing to do: the database is up to date\n";
  for (const auto& line : result.applied) std::cout << line << "\n";
  return kExitOk;
}

int run_check(const occ::Config& config) {
  bool ok = true;
  if (config.rules_path.empty()) {
    std::cout << "no rules configured: nothing to check\n";
  } else {
    auto rules = read_rules(config, true);
    if (!rules) return kExitUsage;
    auto report = occ::check_catalog(config, *rules);
    std::cout << report.text();
    ok = report.ok;
    // A query that fails is a mistake in the rules; rows that violate an invariant are the data's.
    for (const occ::Invariant& inv : rules->invariants) {
      const auto status = occ::invariants::run_now(config.admin_dsn, inv);
      if (!status.last_error.empty()) {
        std::cout << "invariant " << inv.name << ": query failed: " << status.last_error << "\n";
        ok = false;
      } else {
        std::cout << "invariant " << inv.name << ": ok, " << status.violations << " violating rows\n";
      }
    }
  }
  if (tls_configured(config)) {
    auto tls = occ::load_tls(config.tls);
    if (tls.contexts)
      std::cout << "TLS: ok (clients " << occ::to_string(config.tls.client_mode) << ", upstream "
                << occ::to_string(config.tls.upstream_mode) << ")\n";
    else
      std::cout << "TLS: " << tls.error << "\n";
    ok = ok && tls.contexts != nullptr;
    if (passthrough_over_two_tls_hops(config))
      std::cout << "warning: TLS on both hops with auth.mode: passthrough: clients that use SCRAM channel binding "
                   "are refused; they need channel_binding=disable, or set auth.mode: terminate\n";
  }
  if (config.auth.mode == occ::AuthMode::terminate) {
    std::shared_ptr<occ::AuthLookup> lookup;
    const std::string problem = auth_query_problem(config, lookup);
    std::cout << "auth.query: " << (problem.empty() ? "ok" : problem) << "\n";
    ok = ok && problem.empty();
  }
  return ok ? kExitOk : kExitProblem;
}

}  // namespace

int main(int argc, char** argv) {
  std::string_view command = "run";
  std::string config_path;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return kExitOk;
    }
    if (arg == "--version") {
      std::cout << "occproxy " << OCCPROXY_VERSION << "\n";
      return kExitOk;
    }
    if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = std::string(arg.substr(9));
    } else if (i == 1 && (arg == "migrate" || arg == "check" || arg == "run")) {
      command = arg;
    } else {
      std::cerr << "occproxy: unknown argument '" << arg << "'\n\n" << kUsage;
      return kExitUsage;
    }
  }

  if (config_path.empty()) {
    if (command != "run") {
      std::cerr << "occproxy " << command << ": --config FILE is required\n";
      return kExitUsage;
    }
    return occ::run_demo(run_proxy);
  }

  occ::Config config;
  try {
    config = occ::load_config(config_path);
  } catch (const occ::ConfigError& e) {
    std::cerr << e.what() << "\n";
    return kExitUsage;
  }
  if (command == "migrate") return run_migrate(config);
  if (command == "check") return run_check(config);
  return run_proxy(config);
}
