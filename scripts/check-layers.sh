#!/usr/bin/env bash
# Fails when a file under src/ includes a header of a layer above its own, or when the session core
# includes Asio. The order is src/CMakeLists.txt's, where each library links only the layers below.
set -euo pipefail
cd "$(dirname "$0")/../src"

layers=(config wire stats admin sql audit auth session http net app)
declare -A rank
for i in "${!layers[@]}"; do rank[${layers[$i]}]=$i; done

status=0
for layer in "${layers[@]}"; do
  while IFS=: read -r file line include; do
    used=${include#*\"}
    used=${used%%/*}
    if [[ -z "${rank[$used]+set}" ]]; then
      echo "$file:$line: includes \"$used/...\", which is no layer" >&2
      status=1
    elif ((rank[$used] > rank[$layer])); then
      echo "$file:$line: the $layer layer includes $used, a layer above it" >&2
      status=1
    fi
  done < <(grep -Hn '^#include "' "$layer"/*.h "$layer"/*.cpp 2>/dev/null || true)
done
if grep -Hn '^#include <boost/asio' session/* >&2; then
  echo "the session core must not include Asio" >&2
  status=1
fi
exit "$status"
