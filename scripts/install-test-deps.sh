#!/usr/bin/env bash
# Installs what the tests drive on a fresh Debian machine:
# - the psql client, pgbench and the PostgreSQL server (Debian ships pgbench
#   with the server package; the SQL logic tests also run against it);
# - pgjdbc (Debian's libpostgresql-jdbc-java) for integration/tests/drivers.rs;
# - psycopg 3 and SQLAlchemy 2 in a virtual environment,
#   integration/clients/python/.venv, pinned by requirements.txt there;
# - node-postgres in integration/clients/node/node_modules, pinned by the
#   package-lock.json there.
# Goal: `make test` works on a new machine with no manual set-up.
# Idempotent and quick when everything is present: each part is skipped when
# its stamp matches the pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
# The server package: pgbench, and initdb/postgres for the SQL logic tests
# PostgreSQL runs (integration/tests/slt.rs).
if ! command -v pgbench >/dev/null 2>&1 || ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  need+=(postgresql)
fi
[ -f /usr/share/java/postgresql.jar ] || need+=(libpostgresql-jdbc-java)

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

# Python clients: rebuilt when requirements.txt changes.
python_dir=integration/clients/python
venv="$python_dir/.venv"
stamp="$venv/.requirements.txt"
if ! cmp -s "$python_dir/requirements.txt" "$stamp" 2>/dev/null || [ ! -x "$venv/bin/python" ]; then
  echo "installing Python clients into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$python_dir/requirements.txt"
  cp "$python_dir/requirements.txt" "$stamp"
fi

# Node clients: npm ci installs exactly the lock file; reinstalled when it changes.
node_dir=integration/clients/node
stamp="$node_dir/node_modules/.package-lock.json.installed"
if ! cmp -s "$node_dir/package-lock.json" "$stamp" 2>/dev/null; then
  echo "installing Node clients into $node_dir/node_modules"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$node_dir/package-lock.json" "$stamp"
fi
