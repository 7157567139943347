#!/usr/bin/env bash
# Installs what is missing, builds occproxy, runs the unit tests and then the end-to-end suite.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2

# A failing unit suite fails the run, but the end-to-end suite still runs so one CI run shows both.
unit_status=0
build/unit_tests || unit_status=$?

# The registry is the one thing here that can hiccup: one retry before giving up.
(cd tests/e2e/node && { npm ci --no-audit --no-fund --loglevel=error || npm ci --no-audit --no-fund --loglevel=error; })

e2e_status=0
/usr/bin/python3 -m pytest tests/e2e -q -p no:cacheprovider || e2e_status=$?
if ((unit_status != 0)); then
  exit "$unit_status"
fi
exit "$e2e_status"
