#!/usr/bin/env bash
# Fetches PostgreSQL's own regression suite (src/test/regress) of PostgreSQL 15
# into build-pgsrc/regress, for tests/e2e/test_pg_regress.py. Debian's archive keeps the
# upstream tarball beside the packages built from it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest="$repo/build-pgsrc"

# The installed server's own version if the archive has its tarball, else the version of
# bookworm's main archive (the registry here serves no sources from the security archive). The
# suite is run against the same server directly and through the proxy, and only those two runs are
# compared, so a point release between suite and server changes nothing that matters.
installed=$(dpkg-query -W -f='${Version}' postgresql-15)
installed=${installed%%-*}  # 15.20-0+deb12u1 -> 15.20
if [[ -f "$dest/regress/VERSION" ]]; then
  exit 0
fi

main=http://deb.debian.org/debian
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fetch() {  # fetch UPSTREAM_VERSION: the tarball from the main pool, into $work
  curl -fsL --retry 2 -o "$work/postgresql.tar.bz2" "$main/pool/main/p/postgresql-15/postgresql-15_$1.orig.tar.bz2"
}
upstream=$installed
if ! fetch "$upstream"; then
  upstream=$(curl -fsSL --retry 2 "$main/dists/bookworm/main/source/Sources.xz" | xz -dc |
    sed -n 's/.* postgresql-15_\([0-9.]*\)\.orig\.tar\.bz2$/\1/p' | head -n1)
  [[ -n "$upstream" ]] && fetch "$upstream" || {
    echo "fetch-pg-regress: no PostgreSQL 15 source tarball found in $main" >&2
    exit 1
  }
fi
tar -xjf "$work/postgresql.tar.bz2" -C "$work" "postgresql-$upstream/src/test/regress"
rm -rf "$dest/regress"
mkdir -p "$dest"
mv "$work/postgresql-$upstream/src/test/regress" "$dest/regress"
echo "$upstream" >"$dest/regress/VERSION"
echo "fetch-pg-regress: PostgreSQL $upstream regression suite (server $installed) in $dest/regress"
