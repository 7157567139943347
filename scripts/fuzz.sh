#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) in build-fuzz and fuzzes each for FUZZ_SECONDS;
# `fuzz.sh replay` only runs the checked-in corpus once, as a regression test. Fails on any crash.
#
#   scripts/fuzz.sh [fuzz|replay] [target...]     targets: wire sql config rules (default: all)
#   FUZZ_SECONDS=60   fuzzing time per target      FUZZ_BUILD_DIR=build-fuzz
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

mode=fuzz
if (($# > 0)) && [[ "$1" == fuzz || "$1" == replay ]]; then
  mode=$1
  shift
fi
targets=("$@")
((${#targets[@]} > 0)) || targets=(wire sql config rules)
seconds=${FUZZ_SECONDS:-60}
build=${FUZZ_BUILD_DIR:-$repo/build-fuzz}

for t in "${targets[@]}"; do
  if [[ ! -d "tests/fuzz/corpus/$t" ]]; then
    echo "fuzz: unknown target '$t' (no tests/fuzz/corpus/$t)" >&2
    exit 2
  fi
done
for tool in clang-14 clang++-14; do
  command -v "$tool" >/dev/null || { echo "fuzz: $tool not found: run scripts/install-deps.sh" >&2; exit 2; }
done

CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -DOCCPROXY_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${targets[@]/#/fuzz_}"

# Leaks count as crashes; UBSan already aborts (-fno-sanitize-recover).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

status=0
for t in "${targets[@]}"; do
  binary="$build/tests/fuzz/fuzz_$t"
  seeds="tests/fuzz/corpus/$t"
  dict=()
  [[ -f "tests/fuzz/$t.dict" ]] && dict=(-dict="tests/fuzz/$t.dict")
  log="$build/fuzz_$t.log"
  if [[ "$mode" == replay ]]; then
    # Each checked-in input on its own, so that every one that fails is named.
    failed=0
    total=0
    for input in "$seeds"/*; do
      total=$((total + 1))
      if ! "$binary" -runs=1 -artifact_prefix="$build/" "$input" >"$log" 2>&1; then
        echo "fuzz: $t: $input fails:" >&2
        grep -E '^(fuzz_|==[0-9]+==ERROR|SUMMARY)|runtime error' "$log" >&2 || tail -n 20 "$log" >&2
        failed=$((failed + 1))
      fi
    done
    echo "fuzz: $t: replayed $total inputs, $failed failing"
    ((failed == 0)) || status=1
    continue
  fi
  # New inputs go to a working corpus that persists between runs; the checked-in seeds stay as they are.
  work="$build/corpus/$t"
  artifacts="$build/artifacts/$t"
  mkdir -p "$work" "$artifacts"
  if "$binary" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 -print_funcs=0 -print_pcs=0 \
      -artifact_prefix="$artifacts/" "${dict[@]}" "$work" "$seeds" >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz: $t: ${execs:-?} executions in ${seconds}s, corpus $(find "$work" -type f | wc -l) inputs, no crash"
  else
    echo "fuzz: $t: CRASH; see $log" >&2
    grep -E '^(fuzz_|==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)' "$log" >&2 || tail -n 40 "$log" >&2
    echo "fuzz: minimise it with: $binary -minimize_crash=1 -max_total_time=60 -exact_artifact_path=min <artifact>" >&2
    echo "fuzz: then add the result to $seeds/ so scripts/test.sh replays it" >&2
    status=1
  fi
done
exit "$status"
