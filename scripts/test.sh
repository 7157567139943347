#!/usr/bin/env bash
# Installs what is missing, builds occproxy, runs the unit tests, the end-to-end suite and the fuzz
# regressions; with OCCPROXY_SANITIZE_SUITE=1 (CI) also fuzzes a while and reruns both suites on an
# ASan + UBSan build.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

bash scripts/install-deps.sh
bash scripts/fetch-pg-regress.sh
bash scripts/check-layers.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2

# A failing stage fails the run, but the later stages still run so one CI run shows them all.
unit_status=0
build/unit_tests || unit_status=$?

# The registry is the one thing here that can hiccup: one retry before giving up.
(cd tests/e2e/node && { npm ci --no-audit --no-fund --loglevel=error || npm ci --no-audit --no-fund --loglevel=error; })

e2e_status=0
/usr/bin/python3 -m pytest tests/e2e -q -p no:cacheprovider || e2e_status=$?

# Every input a fuzzer ever crashed on is in tests/fuzz/corpus: each runs once. CI fuzzes on top.
fuzz_status=0
if [[ "${OCCPROXY_SANITIZE_SUITE:-0}" == 1 ]]; then
  FUZZ_SECONDS=${FUZZ_SECONDS:-30} bash scripts/fuzz.sh fuzz || fuzz_status=$?
else
  bash scripts/fuzz.sh replay || fuzz_status=$?
fi

# Sanitizer reports go to files, one per process, besides failing that process: a proxy's own log
# goes away with its test, and leaks are only reported when a process exits.
sanitized_suites() (
  cmake -S . -B build-asan -DOCCPROXY_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build-asan -j2
  reports=$(mktemp -d)
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$reports/asan"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1:log_path=$reports/ubsan"
  status=0
  build-asan/unit_tests || status=$?
  OCCPROXY_BIN="$repo/build-asan/occproxy" OCCPROXY_SANITIZED=1 /usr/bin/python3 -m pytest tests/e2e -q -p no:cacheprovider \
    || status=$?
  if compgen -G "$reports/*" >/dev/null; then
    for report in "$reports"/*; do
      echo "=== sanitizer report $report" >&2
      cat "$report" >&2
    done
    ((status != 0)) || status=1
  fi
  rm -rf "$reports"
  exit "$status"
)

sanitize_status=0
if [[ "${OCCPROXY_SANITIZE_SUITE:-0}" == 1 ]]; then
  sanitized_suites || sanitize_status=$?
fi

for status in "$unit_status" "$e2e_status" "$fuzz_status" "$sanitize_status"; do
  if ((status != 0)); then
    exit "$status"
  fi
done
exit 0
