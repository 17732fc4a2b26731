#!/usr/bin/env bash
# The main job: from a fresh Debian 12 machine to psql over TLS 1.3 through Drawbridge.
# Installs dependencies, builds, starts a throwaway PostgreSQL 15 on loopback, makes a test CA
# and a certificate for mydb.drawbridge.test, writes the seed's fly.toml (pg_tls on 5432 style),
# starts `drawbridge serve` in front of Postgres and connects with psql over IPv4 and IPv6.
# Stays up for you to try it when run from a terminal; Ctrl-C (or Enter) stops everything.
# Ports: EDGE_PORT (default 15432) and PG_PORT (default 15433), both on loopback/wildcard.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
EDGE_PORT=${EDGE_PORT:-15432}
PG_PORT=${PG_PORT:-15433}

scripts/setup.sh
scripts/build.sh >/dev/null
echo "quickstart: built $ROOT/build/src/drawbridge"

WORK=$(mktemp -d /tmp/drawbridge-quickstart.XXXXXX)
chmod 755 "$WORK"
PG_BIN=/usr/lib/postgresql/15/bin
EDGE_PID=""
cleanup() {
  [[ -n $EDGE_PID ]] && kill -TERM "$EDGE_PID" 2>/dev/null && wait "$EDGE_PID" 2>/dev/null || true
  [[ -f $WORK/pg/postmaster.pid ]] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# 1. A throwaway PostgreSQL 15 on loopback, password (SCRAM) authentication.
PASSWORD=quickstart-$(openssl rand -hex 6)
echo "$PASSWORD" > "$WORK/pwfile"
chown postgres "$WORK" && chmod 600 "$WORK/pwfile" && chown postgres "$WORK/pwfile"
runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/pg" -U postgres --pwfile="$WORK/pwfile" \
  --auth-host=scram-sha-256 --auth-local=trust >/dev/null
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w \
  -o "-p $PG_PORT -k $WORK -c listen_addresses=127.0.0.1,::1" start >/dev/null
psql -q -h "$WORK" -p "$PG_PORT" -U postgres -c "CREATE DATABASE app"
echo "quickstart: PostgreSQL 15 on 127.0.0.1:$PG_PORT (private side)"

# 2. A test CA and a certificate for the app's public name (the built-in CA comes later).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=Drawbridge quickstart CA" \
  -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=mydb.drawbridge.test" \
  -keyout "$WORK/mydb.key" -out "$WORK/mydb.csr" 2>/dev/null
printf 'subjectAltName=DNS:mydb.drawbridge.test,IP:127.0.0.1,IP:::1\n' > "$WORK/san.ext"
openssl x509 -req -in "$WORK/mydb.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 30 -extfile "$WORK/san.ext" -out "$WORK/mydb.crt" 2>/dev/null

# 3. The seed's services section: public port -> Postgres, through the pg_tls handler.
cat > "$WORK/fly.toml" <<TOML
app = "mydb"

[[services]]
  internal_port = $PG_PORT # Postgres instance
  protocol = "tcp"

  [[services.ports]]
    handlers = ["pg_tls"]
    port = $EDGE_PORT
TOML

# 4. The edge.
"$ROOT/build/src/drawbridge" serve -c "$WORK/fly.toml" --machine 127.0.0.1 \
  --cert "$WORK/mydb.crt" --key "$WORK/mydb.key" --drain-timeout-ms 2000 2> "$WORK/edge.log" &
EDGE_PID=$!
for _ in $(seq 1 100); do grep -q "drawbridge: ready" "$WORK/edge.log" && break; sleep 0.1; done
grep -q "drawbridge: ready" "$WORK/edge.log" || { cat "$WORK/edge.log"; exit 1; }
echo "quickstart: drawbridge serving pg_tls on port $EDGE_PORT (IPv4 and IPv6)"

# 5. psql over TLS, as the seed does, to both address families.
export PGPASSWORD=$PASSWORD
for ADDR in 127.0.0.1 ::1; do
  CONN="sslmode=verify-full sslrootcert=$WORK/ca.crt host=mydb.drawbridge.test hostaddr=$ADDR port=$EDGE_PORT dbname=app user=postgres"
  echo
  echo "\$ psql \"$CONN\""
  psql "$CONN" -c '\conninfo' -c 'SELECT version()'
done
echo
echo "quickstart: edge log:"
grep " conn " "$WORK/edge.log" || true

if [[ -t 0 ]]; then
  echo
  echo "Try it yourself (password: $PASSWORD):"
  echo "  psql \"sslmode=require host=127.0.0.1 port=$EDGE_PORT dbname=app user=postgres\""
  echo "Press Enter or Ctrl-C to stop."
  read -r || true
fi
