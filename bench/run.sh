#!/usr/bin/env bash
# Benchmarks pgbench directly, through occproxy and through PgBouncer, interleaved, and prints median
# TPS and the server's and the proxy's CPU time per transaction.
#
# Environment (all optional):
#   ROUNDS=3 DURATION=10 CLIENTS=4 JOBS=2 SCALE=10   the pgbench run shape
#   WORKLOADS="select_simple ..."                    which workload_* functions to run, in order
#   TARGETS="direct occproxy pgbouncer"              which targets (pgbouncer is skipped if not installed)
#   BENCH_OCC=1                                      also run an occproxy with rules protecting
#                                                    pgbench_accounts (target occproxy_occ) and the
#                                                    read-then-update workloads (extended, prepared,
#                                                    and their checked forms sent directly)
#   BENCH_TRACKING=1                                 read tracking: select-only and read-then-update
#                                                    scripts (simple and prepared) on the protected
#                                                    pgbench_accounts; targets default to direct,
#                                                    occproxy (no rules) and occproxy_occ
#   OCCPROXY_BIN=build/occproxy  PG_BINDIR=/usr/lib/postgresql/15/bin  KEEP=1 (keep the temp dir)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bench_dir="$repo/bench"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-4}
JOBS=${JOBS:-2}
SCALE=${SCALE:-10}
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
OCCPROXY_BIN=${OCCPROXY_BIN:-$repo/build/occproxy}
if [[ "${BENCH_TRACKING:-0}" == 1 ]]; then
  WORKLOADS=${WORKLOADS:-track_select_simple track_select_prepared track_read_update_simple track_read_update_prepared \
    track_read_update_checked_simple track_read_update_checked_prepared}
  TARGETS=${TARGETS:-direct occproxy occproxy_occ}
  [[ " $TARGETS " == *" occproxy_occ "* ]] || TARGETS+=" occproxy_occ"
fi
WORKLOADS=${WORKLOADS:-select_simple select_extended select_prepared tpcb connect_select}
TARGETS=${TARGETS:-direct occproxy pgbouncer}
if [[ "${BENCH_OCC:-0}" == 1 ]]; then
  [[ " $TARGETS " == *" occproxy_occ "* ]] || TARGETS+=" occproxy_occ"
  for workload in occ_read_update occ_read_update_prepared occ_read_update_checked occ_read_update_checked_prepared; do
    [[ " $WORKLOADS " == *" $workload "* ]] || WORKLOADS+=" $workload"
  done
fi

# --- workloads: each prints the pgbench arguments of one run ------------------------------------
# To add one, write workload_NAME (and optionally prepare_NAME, run once after pgbench -i, with
# psql_direct at hand; plain_of_NAME for a checked form, which runs on direct only: the workload
# whose statements it sends as occproxy_occ would) and name it in WORKLOADS.
workload_select_simple() { echo "-S -M simple"; }
workload_select_extended() { echo "-S -M extended"; }
workload_select_prepared() { echo "-S -M prepared"; }
workload_tpcb() { echo "-M simple"; }
workload_connect_select() { echo "-S -M simple -C"; }
# Read a row, then update it: through occproxy_occ the SELECT teaches the proxy the row's version
# and the UPDATE is rewritten to check it.
workload_occ_read_update_simple() { echo "-M simple -f $bench_dir/occ_read_update.sql"; }
workload_occ_read_update() { echo "-M extended -f $bench_dir/occ_read_update.sql"; }
workload_occ_read_update_prepared() { echo "-M prepared -f $bench_dir/occ_read_update.sql"; }
# Read tracking (BENCH_TRACKING=1): neither script names the version; through occproxy_occ every
# SELECT gets the key and version appended (and stripped) and every UPDATE is checked.
# A custom script's :scale is 1 unless -s names it: every account, as the built-in scripts read.
workload_track_select_simple() { echo "-M simple -s $SCALE -f $bench_dir/track_select.sql"; }
workload_track_select_prepared() { echo "-M prepared -s $SCALE -f $bench_dir/track_select.sql"; }
workload_track_read_update_simple() { echo "-M simple -s $SCALE -f $bench_dir/track_read_update.sql"; }
workload_track_read_update_prepared() { echo "-M prepared -s $SCALE -f $bench_dir/track_read_update.sql"; }
# What occproxy_occ sends to the server for the workload named by plain_of_NAME, sent directly:
# the server's CPU for it, against that workload's on direct, is the check's own cost, which no
# proxy can avoid.
workload_occ_read_update_checked() { echo "-M extended -f $bench_dir/occ_read_update_checked.sql"; }
workload_occ_read_update_checked_prepared() { echo "-M prepared -f $bench_dir/occ_read_update_checked.sql"; }
workload_track_read_update_checked_simple() { echo "-M simple -s $SCALE -f $bench_dir/track_read_update_checked.sql"; }
workload_track_read_update_checked_prepared() { echo "-M prepared -s $SCALE -f $bench_dir/track_read_update_checked.sql"; }
plain_of_occ_read_update_checked() { echo occ_read_update; }
plain_of_occ_read_update_checked_prepared() { echo occ_read_update_prepared; }
plain_of_track_read_update_checked_simple() { echo track_read_update_simple; }
plain_of_track_read_update_checked_prepared() { echo track_read_update_prepared; }

die() {
  echo "bench: $*" >&2
  exit 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
  local port=$1 what=$2
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  die "$what did not listen on port $port"
}

# PostgreSQL and PgBouncer refuse to run as root: a dedicated OS user owns them then.
run_owner=()
if ((EUID == 0)); then
  id occtest >/dev/null 2>&1 || useradd -m occtest
  run_owner=(runuser -u occtest --)
fi

[[ " $TARGETS " != *" occproxy"* || -x "$OCCPROXY_BIN" ]] || die "no occproxy binary at $OCCPROXY_BIN (cmake -S . -B build && cmake --build build -j2)"
command -v pgbench >/dev/null || die "pgbench is not installed (scripts/install-deps.sh)"
if [[ " $TARGETS " == *" pgbouncer "* ]] && ! command -v pgbouncer >/dev/null; then
  echo "bench: pgbouncer is not installed, skipping that target" >&2
  TARGETS=${TARGETS//pgbouncer/}
fi

work=$(mktemp -d /tmp/occ-bench-XXXXXX)
chmod 755 "$work"
if ((${#run_owner[@]})); then chown occtest "$work"; fi
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -f "$work/pgbouncer.pid" ]]; then kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null || true; fi
  if [[ -d "$work/data" ]]; then
    "${run_owner[@]}" "$PG_BINDIR/pg_ctl" stop -D "$work/data" -m immediate >/dev/null 2>&1 || true
  fi
  if [[ "${KEEP:-0}" == 1 ]]; then echo "bench: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- the cluster (trust auth: the benchmark measures relaying, not SCRAM's hashing) --------------
pg_port=$(free_port)
"${run_owner[@]}" "$PG_BINDIR/initdb" -D "$work/data" -U postgres --auth=trust -E UTF8 --locale=C \
  --no-sync >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log"; die "initdb failed"; }
cat >>"$work/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$work'
max_connections = 200
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 4GB
EOF
"${run_owner[@]}" "$PG_BINDIR/pg_ctl" start -D "$work/data" -l "$work/postgres.log" -w -t 60 >/dev/null

psql_direct() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres "$@"; }

# --- occproxy (without rules it is the pure relay) ------------------------------------------------
# Writes $work/NAME.yaml and sets config_port.
write_occproxy_config() {
  local name=$1 rules=${2:-}
  config_port=$(free_port)
  {
    echo "listen: 127.0.0.1:$config_port"
    echo "upstream: 127.0.0.1:$pg_port"
    echo "admin_dsn: \"host=127.0.0.1 port=$pg_port dbname=bench user=postgres\""
    echo "stats:"
    echo "  listen: 127.0.0.1:$(free_port)"
    echo "log:"
    echo "  level: warn"
    echo "  audit_file: $work/$name-audit.jsonl"
    echo "threads: $JOBS"
    if [[ -n "$rules" ]]; then echo "rules: $rules"; fi
  } >"$work/$name.yaml"
}

# Sets started_port and started_pid.
start_occproxy() {
  local name=$1 rules=${2:-}
  write_occproxy_config "$name" "$rules"
  "$OCCPROXY_BIN" --config "$work/$name.yaml" >"$work/$name.log" 2>&1 &
  started_pid=$!
  pids+=($!)
  wait_port "$config_port" "$name"
  started_port=$config_port
}

# --- PgBouncer in session mode; sets started_port -------------------------------------------------
start_pgbouncer() {
  started_port=$(free_port)
  echo '"postgres" ""' >"$work/userlist.txt"
  cat >"$work/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$pg_port dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $started_port
unix_socket_dir =
auth_type = trust
auth_file = $work/userlist.txt
pool_mode = session
max_client_conn = 500
default_pool_size = 100
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
EOF
  if ((${#run_owner[@]})); then chown occtest "$work/pgbouncer.ini" "$work/userlist.txt"; fi
  "${run_owner[@]}" pgbouncer -d "$work/pgbouncer.ini" >>"$work/pgbouncer.out" 2>&1 \
    || { cat "$work/pgbouncer.out"; die "pgbouncer did not start"; }
  wait_port "$started_port" pgbouncer
}

psql_direct -d postgres -c "CREATE DATABASE bench"
echo "bench: pgbench -i -s $SCALE" >&2
pgbench -i -q -s "$SCALE" -h 127.0.0.1 -p "$pg_port" -U postgres bench >"$work/init.log" 2>&1 \
  || { cat "$work/init.log"; die "pgbench -i failed"; }

# pid_of: the proxies (occproxy and PgBouncer), whose CPU time per transaction the table reports.
# On a shared or small machine it is steadier than TPS, which also moves with whatever else
# competes for the cores.
declare -A port_of pid_of
port_of[direct]=$pg_port
for target in $TARGETS; do
  case "$target" in
    direct) ;;
    occproxy)
      start_occproxy occproxy
      port_of[occproxy]=$started_port
      pid_of[occproxy]=$started_pid
      ;;
    pgbouncer)
      start_pgbouncer
      port_of[pgbouncer]=$started_port
      pid_of[pgbouncer]=$(cat "$work/pgbouncer.pid")
      ;;
    occproxy_occ)
      printf 'tables:\n  - table: public.pgbench_accounts\n    key: [aid]\n' >"$work/rules.yaml"
      write_occproxy_config occproxy_occ "$work/rules.yaml"
      "$OCCPROXY_BIN" migrate --config "$work/occproxy_occ.yaml" >"$work/migrate.log" 2>&1 \
        || { cat "$work/migrate.log"; die "occproxy migrate failed"; }
      start_occproxy occproxy_occ "$work/rules.yaml"
      port_of[occproxy_occ]=$started_port
      pid_of[occproxy_occ]=$started_pid
      ;;
    *) die "unknown target $target" ;;
  esac
done

for workload in $WORKLOADS; do
  declare -F "workload_$workload" >/dev/null || die "no function workload_$workload"
  if declare -F "prepare_$workload" >/dev/null; then "prepare_$workload"; fi
done

# utime + stime of a process, all its threads, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# The server's CPU in clock ticks: the postmaster with its reaped children (cutime, cstime) and its
# live ones. A backend that exits between two readings moves from the second sum to the first.
postmaster_pid=$(head -1 "$work/data/postmaster.pid")
server_ticks() {
  local total child
  total=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$postmaster_pid/stat")
  for child in $(pgrep -P "$postmaster_pid"); do
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$child/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
# Waits (at most 2 s) until the backends a run started have exited and been reaped, so that their
# CPU is in the postmaster's cutime. A pooler's server connections stay: they count as live.
settle_server() {
  local before=" $1 " child started
  for _ in $(seq 1 40); do
    started=0
    for child in $(pgrep -P "$postmaster_pid"); do [[ $before == *" $child "* ]] || started=1; done
    ((started)) || return 0
    sleep 0.05
  done
}
per_tx() { echo $(( $1 * 1000000 / clock_ticks / ($2 > 0 ? $2 : 1) )); }
clock_ticks=$(getconf CLK_TCK)

# --- the interleaved runs: each round runs every workload on every target in turn ----------------
results="$work/results.tsv"
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
  for workload in $WORKLOADS; do
    read -r -a args <<<"$("workload_$workload")"
    for target in $TARGETS; do
      if [[ $target != direct ]] && declare -F "plain_of_$workload" >/dev/null; then continue; fi
      out="$work/run-$round-$workload-$target.log"
      pid=${pid_of[$target]:-}
      if [[ -n "$pid" ]]; then ticks_before=$(cpu_ticks "$pid"); fi
      children_before=$(pgrep -P "$postmaster_pid" | tr '\n' ' ')
      server_before=$(server_ticks)
      if ! pgbench -n -T "$DURATION" -c "$CLIENTS" -j "$JOBS" "${args[@]}" \
        -h 127.0.0.1 -p "${port_of[$target]}" -U postgres bench >"$out" 2>&1; then
        echo "bench: round $round $workload $target failed:" >&2
        tail -5 "$out" >&2
        continue
      fi
      tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out")
      latency=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$out")
      failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
      processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
      cpu_us=-
      if [[ -n "$pid" ]]; then cpu_us=$(per_tx $(($(cpu_ticks "$pid") - ticks_before)) "$processed"); fi
      [[ $target == pgbouncer ]] || settle_server "$children_before"
      server_us=$(per_tx $(($(server_ticks) - server_before)) "$processed")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$workload" "$target" "$round" "$tps" "$latency" "${failed:-0}" \
        "$cpu_us" "$server_us" >>"$results"
      printf 'bench: round %s/%s %-16s %-13s %10.1f tps\n' "$round" "$ROUNDS" "$workload" "$target" "$tps" >&2
    done
  done
done

# --- the table -------------------------------------------------------------------------------------
checked_forms=""
for workload in $WORKLOADS; do
  if declare -F "plain_of_$workload" >/dev/null; then checked_forms+=" $workload=$("plain_of_$workload")"; fi
done
python3 - "$results" "$WORKLOADS" "$TARGETS" "$checked_forms" "$(nproc)" <<'EOF'
import statistics
import sys

rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
workloads, targets = sys.argv[2].split(), sys.argv[3].split()
plain_of = dict(pair.split("=") for pair in sys.argv[4].split())
tps, latency, failed, cpu, server = {}, {}, {}, {}, {}
for workload, target, _round, t, lat, fail, cpu_us, server_us in rows:
    tps.setdefault((workload, target), []).append(float(t))
    latency.setdefault((workload, target), []).append(float(lat))
    failed[workload, target] = failed.get((workload, target), 0) + int(fail)
    server.setdefault((workload, target), []).append(int(server_us))
    if cpu_us != "-":
        cpu.setdefault((workload, target), []).append(int(cpu_us))

def median_of(workload, target):
    return statistics.median(tps[workload, target]) if (workload, target) in tps else None


def ratio(value, base):
    return f"{value / base:.3f}" if base else "-"


# "vs relay": against occproxy without rules on the same workload, the cost of OCC and read tracking.
relay = "occproxy" in targets
width = max(18, max(map(len, workloads)) + 2)
print(f"{'workload':<{width}}{'target':<14}{'median tps':>12}{'vs direct':>11}"
      + (f"{'vs relay':>10}" if relay else "") + f"{'latency ms':>12}{'runs':>6}{'failed':>8}"
      + f"{'server cpu us/tx':>18}{'proxy cpu us/tx':>17}")
for workload in workloads:
    for target in targets:
        median = median_of(workload, target)
        if median is None and workload in plain_of:
            continue
        if median is None:
            print(f"{workload:<{width}}{target:<14}{'(no run)':>12}")
            continue
        print(f"{workload:<{width}}{target:<14}{median:>12.1f}{ratio(median, median_of(workload, 'direct')):>11}"
              + (f"{ratio(median, median_of(workload, 'occproxy')):>10}" if relay else "")
              + f"{statistics.median(latency[workload, target]):>12.3f}"
              f"{len(tps[workload, target]):>6}{failed[workload, target]:>8}"
              f"{statistics.median(server[workload, target]):>18.0f}"
              + (f"{statistics.median(cpu[workload, target]):>17.0f}" if (workload, target) in cpu else ""))

# The check's own cost on the server, measured without any proxy, and the best ratio to the relay
# that leaves even a proxy costing nothing: every core busy, a transaction takes cores / tps of CPU.
cores = int(sys.argv[5])
for checked, plain in plain_of.items():
    if (checked, "direct") not in server or (plain, "direct") not in server:
        continue
    added = statistics.median(server[checked, "direct"]) - statistics.median(server[plain, "direct"])
    line = f"{checked}: the check adds {added:.0f} us of server CPU per transaction to {plain} on direct"
    relay_tps = median_of(plain, "occproxy")
    if relay_tps:
        relay_cpu = cores * 1e6 / relay_tps
        line += (f"; the relay takes {relay_cpu:.0f} us of CPU per transaction ({cores} cores / its tps),"
                 f" so no proxy runs {plain} at more than {relay_cpu / (relay_cpu + max(added, 0)):.3f} of it here")
    print(line)
EOF
