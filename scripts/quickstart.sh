#!/usr/bin/env bash
# The main job: from a fresh Debian 12 machine to the seed's whole flow ("External
# Connections" for Fly Postgres) with `drawbridge` instead of `fly`:
#   a throwaway PostgreSQL 15 on loopback (the private side), the daemon with its embedded
#   defaults, then apps create, machines add, ips list, ips allocate-v4 / -v6, config save,
#   the seed's pg_tls services section, deploy --image, services list, image show, and psql
#   "sslmode=require host=..." over TLS 1.3 to the v4 and the v6 address (and verify-full with
#   the built-in CA).
# Stays up for you to try it when run from a terminal; Enter or Ctrl-C stops everything.
# Ports: EDGE_PORT (public, default 15432; 5432 is usually taken by Debian's own cluster),
# PG_PORT (private Postgres, default 15433), API_PORT (admin API, default 14280), DNS_PORT
# (the built-in authoritative DNS, default 15353).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
EDGE_PORT=${EDGE_PORT:-15432}
PG_PORT=${PG_PORT:-15433}
API_PORT=${API_PORT:-14280}
DNS_PORT=${DNS_PORT:-15353}
APP=mydb

scripts/setup.sh
scripts/build.sh >/dev/null
DRAWBRIDGE="$ROOT/build/src/drawbridge"
echo "quickstart: built $DRAWBRIDGE"

WORK=$(mktemp -d /tmp/drawbridge-quickstart.XXXXXX)
chmod 755 "$WORK"
PG_BIN=/usr/lib/postgresql/15/bin
DAEMON_PID=""
cleanup() {
  if [[ -n $DAEMON_PID ]]; then kill -TERM "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null || true; fi
  if [[ -f $WORK/pg/postmaster.pid ]]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
fly() { step "drawbridge $*"; "$DRAWBRIDGE" --data-dir "$WORK/data" "$@"; }

# 1. The private side: PostgreSQL 15 on loopback with password (SCRAM) authentication.
PASSWORD=quickstart-$(openssl rand -hex 6)
echo "$PASSWORD" > "$WORK/pwfile"
chown postgres "$WORK" "$WORK/pwfile" && chmod 600 "$WORK/pwfile"
runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/pg" -U postgres --pwfile="$WORK/pwfile" \
  --auth-host=scram-sha-256 --auth-local=trust >/dev/null
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w \
  -o "-p $PG_PORT -k $WORK -c listen_addresses=127.0.0.1" start >/dev/null
psql -q -h "$WORK" -p "$PG_PORT" -U postgres -c "CREATE DATABASE app"
echo "quickstart: PostgreSQL 15 on 127.0.0.1:$PG_PORT (the private network)"

# 2. The daemon with its embedded defaults (pools 127.0.10.0/24 and a ULA /64, domain
#    drawbridge.test, its own CA); only the data directory and the ports are chosen here.
"$DRAWBRIDGE" serve --data-dir "$WORK/data" --api-port "$API_PORT" --dns-port "$DNS_PORT" \
  --drain-timeout-ms 2000 \
  2> "$WORK/daemon.log" &
DAEMON_PID=$!
for _ in $(seq 1 100); do grep -q "drawbridge: ready" "$WORK/daemon.log" && break; sleep 0.1; done
grep -q "drawbridge: ready" "$WORK/daemon.log" || { cat "$WORK/daemon.log"; exit 1; }
grep -E "pool|data dir|DNS" "$WORK/daemon.log" | sed 's/^[^ ]* [a-z]* /quickstart: daemon: /'

# 3. The seed, step by step.
cd "$WORK"
fly apps create "$APP"
fly machines add 127.0.0.1 --app "$APP"
fly ips list --app "$APP"
step "drawbridge ips allocate-v4 --app $APP   # not interactive: flyctl refuses without --yes"
"$DRAWBRIDGE" --data-dir "$WORK/data" ips allocate-v4 --app "$APP" </dev/null || true
fly ips allocate-v4 --yes --app "$APP"
fly ips allocate-v6 --app "$APP"
fly ips list --app "$APP"
fly config save --app "$APP"

# "Replace that with the following": the seed's services section, on our ports.
step "edit fly.toml: replace the services section with the pg_tls one"
python3 - "$PG_PORT" "$EDGE_PORT" <<'PY'
import re, sys
pg_port, edge_port = sys.argv[1], sys.argv[2]
text = open("fly.toml").read()
head = re.split(r"^\[\[services\]\]", text, maxsplit=1, flags=re.M)[0]
open("fly.toml", "w").write(head + f"""[[services]]
  internal_port = {pg_port} # Postgres instance
  protocol = "tcp"

  [[services.ports]]
    handlers = ["pg_tls"]
    port = {edge_port}
""")
PY
cat fly.toml
fly config validate
fly deploy . --image flyio/postgres:15
fly services list

V4=$("$DRAWBRIDGE" --data-dir "$WORK/data" ips list --app "$APP" --json | python3 -c 'import json,sys; print(next(i["address"] for i in json.load(sys.stdin) if i["type"]=="v4"))')
V6=$("$DRAWBRIDGE" --data-dir "$WORK/data" ips list --app "$APP" --json | python3 -c 'import json,sys; print(next(i["address"] for i in json.load(sys.stdin) if i["type"]=="v6"))')
export PGPASSWORD=$PASSWORD
for ADDR in "$V4" "$V6"; do
  step "psql \"sslmode=require host=$ADDR port=$EDGE_PORT dbname=app user=postgres\""
  psql "sslmode=require host=$ADDR port=$EDGE_PORT dbname=app user=postgres" -c '\conninfo' -c 'SELECT version()'
done
fly image show --app "$APP"

# The public name: the built-in DNS answers for <app>.drawbridge.test (this machine's resolver
# does not delegate the test zone to it, so the address is passed as hostaddr), and the
# certificate verifies against the built-in CA.
step "dig @127.0.0.1 -p $DNS_PORT $APP.drawbridge.test A / AAAA"
dig +short @127.0.0.1 -p "$DNS_PORT" "$APP.drawbridge.test" A
dig +short @127.0.0.1 -p "$DNS_PORT" "$APP.drawbridge.test" AAAA
RESOLVED=$(dig +short @127.0.0.1 -p "$DNS_PORT" "$APP.drawbridge.test" A | head -1)
"$DRAWBRIDGE" --data-dir "$WORK/data" certs ca > "$WORK/ca.crt"
CONN="sslmode=verify-full sslrootcert=$WORK/ca.crt host=$APP.drawbridge.test hostaddr=$RESOLVED port=$EDGE_PORT dbname=app user=postgres"
step "psql \"$CONN\""
psql "$CONN" -c '\conninfo'
fly pg connection-string --app "$APP" --internal "postgres://postgres:secret@$APP.internal:$PG_PORT/app"

echo
echo "quickstart: the edge's log:"
grep " conn " "$WORK/daemon.log" | sed 's/^/  /' || true

if [[ -t 0 ]]; then
  echo
  echo "Try it yourself (password: $PASSWORD):"
  echo "  psql \"sslmode=require host=$V4 port=$EDGE_PORT dbname=app user=postgres\""
  echo "  $DRAWBRIDGE --data-dir $WORK/data status"
  echo "Press Enter or Ctrl-C to stop."
  read -r || true
fi
