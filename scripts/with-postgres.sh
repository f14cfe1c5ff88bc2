#!/usr/bin/env bash
# Run a command with a PostgreSQL server of its own: initdb into a temporary
# directory, postgres on a free loopback port (as the `postgres` user when
# run as root: PostgreSQL refuses root), PADNET_LEDGER_URL set to a fresh
# database, the server stopped afterwards. Used by `make bench`.
set -euo pipefail
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bindir/postgres" ] || { echo "with-postgres: PostgreSQL is not installed (scripts/ensure-tools.sh)" >&2; exit 1; }
dir=$(mktemp -d /tmp/padnet-pg.XXXXXX)
chmod 755 "$dir"
as=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$dir"
  as=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${as[@]}" "$bindir/initdb" -D "$dir/data" -U padnet --auth=trust -E UTF8 --no-locale >/dev/null
"${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -o "-p $port -c listen_addresses=127.0.0.1 -k $dir" start >/dev/null
stop() {
  "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT
"$bindir/createdb" -h 127.0.0.1 -p "$port" -U padnet ledger
export PADNET_LEDGER_URL="postgres://padnet@127.0.0.1:$port/ledger"
"$@"
