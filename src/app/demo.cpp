// The demo: initdb + postgres in a temp dir (as an unprivileged user when run as root), a demo
// schema, rules and migrations, then the proxy in front of it.
#include "app/demo.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <libpq-fe.h>

#include "config/config.h"
#include "admin/migrate.h"
#include "config/rules.h"

namespace occ {

namespace fs = std::filesystem;

namespace {

constexpr const char* kDemoSchema = R"sql(
CREATE TABLE IF NOT EXISTS subscriptions (
  id bigint PRIMARY KEY,
  customer text NOT NULL,
  plan_id int NOT NULL,
  status text NOT NULL,
  notes text
);
CREATE TABLE IF NOT EXISTS invoices (
  id bigint PRIMARY KEY,
  subscription_id bigint REFERENCES subscriptions(id),
  amount_cents bigint NOT NULL,
  paid boolean NOT NULL DEFAULT false
);
INSERT INTO subscriptions VALUES
  (42, 'ACME Corp', 7, 'active', 'renews in March'),
  (43, 'Globex', 7, 'trial', NULL),
  (44, 'Initech', 3, 'cancelled', 'moved to competitor')
ON CONFLICT DO NOTHING;
INSERT INTO invoices VALUES (1, 42, 19900, true), (2, 42, 19900, false), (3, 43, 0, false)
ON CONFLICT DO NOTHING;
)sql";

constexpr const char* kDemoRules = R"yaml(defaults:
  app_managed_version: enforce
  force:
    allowed_roles: [postgres]
tables:
  - table: public.subscriptions
    key: [id]
    track_writer: true
  - table: public.invoices
    key: [id]
    on_conflict: merge
)yaml";

std::string find_bindir() {
  for (const char* dir : {"/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"})
    if (fs::exists(fs::path(dir) / "initdb")) return dir;
  return {};
}

uint16_t free_port(uint16_t preferred) {
  for (uint16_t candidate : {preferred, uint16_t(0)}) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(candidate);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      socklen_t len = sizeof addr;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
      ::close(fd);
      return ntohs(addr.sin_port);
    }
    ::close(fd);
  }
  return 0;
}

// Runs a PostgreSQL program, as `run_as` when we are root (the server refuses to run as root).
pid_t spawn(const std::vector<std::string>& argv, const passwd* run_as, const fs::path& log) {
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  if (run_as) {
    if (::setgid(run_as->pw_gid) != 0 || ::setuid(run_as->pw_uid) != 0) _exit(127);
  }
  FILE* out = std::fopen(log.c_str(), "a");
  if (out) {
    ::dup2(fileno(out), STDOUT_FILENO);
    ::dup2(fileno(out), STDERR_FILENO);
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execv(args[0], args.data());
  _exit(127);
}

bool wait_ok(pid_t pid) {
  int status = 0;
  return ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool run_sql(const std::string& dsn, const char* sql, std::string& error) {
  PGconn* conn = PQconnectdb(dsn.c_str());
  bool ok = PQstatus(conn) == CONNECTION_OK;
  if (ok) {
    PGresult* res = PQexec(conn, sql);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok) error = PQresultErrorMessage(res);
    PQclear(res);
  } else {
    error = PQerrorMessage(conn);
  }
  PQfinish(conn);
  return ok;
}

}  // namespace

int run_demo(const std::function<int(const Config&)>& run_proxy) {
  const std::string bindir = find_bindir();
  if (bindir.empty()) {
    std::cerr << "occproxy demo: PostgreSQL server binaries not found (apt-get install postgresql-15),\n"
                 "or run the proxy with --config FILE.\n";
    return 2;
  }
  char pattern[] = "/tmp/occproxy-demo-XXXXXX";
  if (!::mkdtemp(pattern)) {
    std::perror("occproxy demo: mkdtemp");
    return 1;
  }
  const fs::path dir = pattern;
  const passwd* run_as = nullptr;
  if (::geteuid() == 0) {
    run_as = ::getpwnam("postgres");
    if (!run_as) run_as = ::getpwnam("nobody");
    if (::chown(dir.c_str(), run_as->pw_uid, run_as->pw_gid) != 0) {
      std::perror("occproxy demo: chown");
      return 1;
    }
  }
  const fs::path log = dir / "postgres.log";
  std::cout << "occproxy demo: creating a throwaway PostgreSQL cluster in " << dir.string() << "\n";
  if (!wait_ok(spawn({bindir + "/initdb", "-D", (dir / "data").string(), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--no-sync"},
                     run_as, log))) {
    std::cerr << "occproxy demo: initdb failed, see " << log.string() << "\n";
    return 1;
  }
  const uint16_t pg_port = free_port(0);
  pid_t postgres = spawn({bindir + "/postgres", "-D", (dir / "data").string(), "-p", std::to_string(pg_port), "-k",
                          dir.string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"},
                         run_as, log);
  const std::string admin_dsn = "host=127.0.0.1 port=" + std::to_string(pg_port) + " dbname=postgres user=postgres";
  std::string error;
  bool ready = false;
  for (int i = 0; i < 100 && !ready; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ready = run_sql(admin_dsn, "SELECT 1", error);
  }
  auto stop_postgres = [&] {
    ::kill(postgres, SIGINT);
    ::waitpid(postgres, nullptr, 0);
    fs::remove_all(dir);
  };
  if (!ready || !run_sql(admin_dsn, kDemoSchema, error)) {
    std::cerr << "occproxy demo: PostgreSQL did not start: " << error << " (see " << log.string() << ")\n";
    stop_postgres();
    return 1;
  }

  std::ofstream(dir / "rules.yaml") << kDemoRules;
  Config config;
  config.path = "(demo)";
  config.listen = {"127.0.0.1", free_port(6432)};
  config.upstream = {"127.0.0.1", pg_port};
  config.admin_dsn = admin_dsn;
  config.stats.listen = {"127.0.0.1", free_port(9187)};
  config.rules_path = (dir / "rules.yaml").string();
  config.audit_file = (dir / "audit.jsonl").string();
  auto migrated = run_migrations(config, load_rules(config.rules_path), migrations_dir());
  if (!migrated.ok) {
    std::cerr << "occproxy demo: migrate failed: " << migrated.error << "\n";
    stop_postgres();
    return 1;
  }

  const std::string port = std::to_string(config.listen.port);
  std::cout << "\noccproxy demo is ready.\n"
            << "  Connect through the proxy:  psql 'host=127.0.0.1 port=" << port << " dbname=postgres user=postgres'\n"
            << "  Stats:                      http://127.0.0.1:" << config.stats.listen.port << "/\n"
            << "  Audit log:                  " << config.audit_file << "\n\n"
            << "Provoke a conflict from two psql sessions through the proxy, with SQL that names no version:\n"
            << "  A: SELECT * FROM subscriptions WHERE id = 42;               -- the proxy notes version 1\n"
            << "  B: UPDATE subscriptions SET status = 'paused' WHERE id = 42; -- version becomes 2\n"
            << "  A: UPDATE subscriptions SET notes = 'call back' WHERE id = 42;\n"
            << "     -- ERROR 40001: occ: version conflict on public.subscriptions (id)=(42): expected version 1, ...\n"
            << "     -- DETAIL names who changed status and when, and a conflict id; the three-way diff is at\n"
            << "     -- http://127.0.0.1:" << config.stats.listen.port << "/conflicts/<id>\n"
            << "invoices is set to on_conflict: merge, so changes to different columns both stand:\n"
            << "  A: SELECT * FROM invoices WHERE id = 2;                     -- the proxy notes version 1\n"
            << "  B: UPDATE invoices SET paid = true WHERE id = 2;            -- version becomes 2\n"
            << "  A: UPDATE invoices SET amount_cents = 20900 WHERE id = 2;   -- UPDATE 1: merged, version 3\n"
            << "  A: SELECT * FROM invoices WHERE id = 2;                     -- paid and amount_cents both changed\n"
            << "Stop with Ctrl-C; the demo database is deleted.\n\n";
  int status = run_proxy(config);
  stop_postgres();
  return status;
}

}  // namespace occ
