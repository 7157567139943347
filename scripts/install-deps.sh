#!/usr/bin/env bash
# Installs, on Debian 12, whatever occproxy needs to build, run and test that is not there yet.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libboost1.74-dev libpg-query-dev libprotobuf-c-dev libpq-dev libspdlog-dev libyaml-cpp-dev
  nlohmann-json3-dev libssl-dev catch2
  clang-14 libclang-rt-14-dev libfuzzer-14-dev
  postgresql-15 postgresql-client-15 postgresql-server-dev-15 pgbouncer curl bzip2 xz-utils
  python3 python3-pytest python3-psycopg2 python3-psycopg python3-asyncpg python3-yaml python3-pytest-timeout
  libpostgresql-jdbc-java chromium prometheus
  dpkg-dev go-md2man lintian systemd logrotate
)

# Some images bring Node.js or a JDK from elsewhere (a vendor repository, /usr/lib/jvm): a Debian
# package would only fight with it, so the command being there is what counts.
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
command -v javac >/dev/null && command -v java >/dev/null || packages+=(default-jdk-headless)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

if ((EUID != 0)); then
  if command -v sudo >/dev/null; then
    exec sudo bash "$0"
  fi
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run this script as root (or install them) and try again" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"

# Installing postgresql or prometheus would otherwise start system services we do not use
# (the tests and the benchmark run their own throwaway clusters on free ports).
policy=/usr/sbin/policy-rc.d
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
echo "install-deps: done"
