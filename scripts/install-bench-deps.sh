#!/usr/bin/env bash
# Installs what `make bench` drives on a fresh Debian machine: a PostgreSQL
# server (initdb, pg_ctl, postgres), pgbench, and the `postgres` OS user the
# bench runs PostgreSQL as when it runs as root (initdb refuses root).
# Goal: `make bench` works on a new machine with no manual set-up.
# Method: look for each program on PATH and in /usr/lib/postgresql/*/bin (as
# borealis-bench does); install Debian's packages only if one is missing.
set -euo pipefail

have() {
  command -v "$1" >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}

need=()
for program in initdb pg_ctl postgres; do
  have "$program" || { need+=(postgresql); break; }
done
have pgbench || need+=(postgresql-contrib)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
id -u postgres >/dev/null 2>&1 || need+=(postgresql)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
echo "installing: ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
