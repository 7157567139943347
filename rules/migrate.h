// `occproxy migrate`: numbered SQL files from migrations/, then per protected table the version
// column and (version_bump: trigger) the bump trigger. Idempotent.
#pragma once

#include <string>
#include <vector>

#include "rules/rules.h"

namespace occ {

struct Config;

struct MigrateResult {
  bool ok = false;
  std::vector<std::string> applied;  // readable lines: what changed; empty when nothing did
  std::string error;
};

MigrateResult run_migrations(const Config& config, const Rules& rules, const std::string& migrations_dir);

}  // namespace occ
