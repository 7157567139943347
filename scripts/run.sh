#!/usr/bin/env bash
# Installs what is missing, builds occproxy and runs it; with no arguments it starts its demo database.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

bash "$repo/scripts/install-deps.sh"
cmake -S "$repo" -B "$repo/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$repo/build" -j2 --target occproxy
exec "$repo/build/occproxy" "$@"
