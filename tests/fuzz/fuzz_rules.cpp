// libFuzzer target: the rules loader; any text loads or is refused with a RulesError at file:line.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "config/rules.h"

namespace {

void check(bool ok, const char* what, const std::string& detail = {}) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_rules: %s %s\n", what, detail.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const occ::Rules rules = occ::parse_rules(text, "fuzz_rules.yaml");
    // What loads is what the rewriter relies on: named tables with a key, no duplicates, a
    // version column outside the key, an error SQLSTATE.
    for (const auto& t : rules.tables) {
      check(!t.schema.empty() && !t.name.empty() && !t.key.empty() && !t.version_column.empty(), "incomplete table",
            t.qualified_name());
      check(rules.find(t.schema, t.name) == &t, "table listed twice", t.qualified_name());
      for (const auto& k : t.key) check(!k.empty() && k != t.version_column, "bad key column", t.qualified_name());
      check(t.conflict_sqlstate.size() == 5 && t.conflict_sqlstate.rfind("00", 0) != 0, "bad SQLSTATE",
            t.conflict_sqlstate);
      check(t.read_ttl.count() > 0, "read_ttl not positive", t.qualified_name());
    }
  } catch (const occ::RulesError& e) {
    check(std::string(e.what()).rfind("fuzz_rules.yaml:", 0) == 0, "error without file:line:", e.what());
  }
  return 0;
}
