#!/usr/bin/env bash
# The quickstart's fleet variant: three `drawbridge serve` nodes on this host sharing one
# control plane in a local 3-member etcd cluster and the app's public port (SO_REUSEPORT).
#   a throwaway PostgreSQL 15 on loopback (the private side), etcd (three members on loopback),
#   a fleet secret, three nodes started at once (they agree on one CA), then the seed's flow
#   with each step through another node: apps create (n1), machines add (n2), ips allocate-v4
#   (n3), config save, the pg_tls services section, deploy (n1); `nodes list`; psql with
#   verify-full through the shared port, several times, and which node accepted each; then etcd
#   stopped altogether: psql still served, a write refused naming the store, status degraded;
#   etcd back and a write seen by every node.
# Stays up for you to try it when run from a terminal; Enter or Ctrl-C stops everything.
# Ports: EDGE_PORT (public, shared by the nodes, default 15432), PG_PORT (private Postgres,
# default 15433), API_PORT (admin API of n1; n2 and n3 get the next two, default 14281),
# ETCD_PORT (client port of member 1; members take ETCD_PORT, +2, +4 and peer ports +1, +3,
# +5; default 12379). DNS is off (see scripts/quickstart.sh for the built-in DNS).
# DRAWBRIDGE_BIN=path runs that binary instead of setting up and building build/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
EDGE_PORT=${EDGE_PORT:-15432}
PG_PORT=${PG_PORT:-15433}
API_PORT=${API_PORT:-14281}
ETCD_PORT=${ETCD_PORT:-12379}
APP=mydb
NODES=(n1 n2 n3)

if [[ -n ${DRAWBRIDGE_BIN:-} ]]; then
  DRAWBRIDGE=$(realpath "$DRAWBRIDGE_BIN")  # a binary built elsewhere: no setup, no build
else
  scripts/setup.sh
  scripts/build.sh >/dev/null
  DRAWBRIDGE="$ROOT/build/src/drawbridge"
fi
echo "quickstart-fleet: using $DRAWBRIDGE"

WORK=$(mktemp -d /tmp/drawbridge-quickstart-fleet.XXXXXX)
chmod 755 "$WORK"
PG_BIN=/usr/lib/postgresql/15/bin
ETCD_PIDS=()
NODE_PIDS=()
cleanup() {
  local pid
  for pid in "${NODE_PIDS[@]}" "${ETCD_PIDS[@]}"; do
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${NODE_PIDS[@]}" "${ETCD_PIDS[@]}"; do
    [[ -n $pid ]] && wait "$pid" 2>/dev/null || true
  done
  if [[ -f $WORK/pg/postmaster.pid ]]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
# on NODE ARGS...: the CLI against one node (its data dir holds its token and socket).
on() { local n=$1; shift; step "drawbridge $* # on $n"; "$DRAWBRIDGE" --data-dir "$WORK/$n" "$@"; }
quiet_on() { local n=$1; shift; "$DRAWBRIDGE" --data-dir "$WORK/$n" "$@"; }

# 1. The private side: PostgreSQL 15 on loopback with password (SCRAM) authentication.
PASSWORD=quickstart-$(openssl rand -hex 6)
echo "$PASSWORD" > "$WORK/pwfile"
chown postgres "$WORK" "$WORK/pwfile" && chmod 600 "$WORK/pwfile"
runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/pg" -U postgres --pwfile="$WORK/pwfile" \
  --auth-host=scram-sha-256 --auth-local=trust >/dev/null
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w \
  -o "-p $PG_PORT -k $WORK -c listen_addresses=127.0.0.1" start >/dev/null
psql -q -h "$WORK" -p "$PG_PORT" -U postgres -c "CREATE DATABASE app"
echo "quickstart-fleet: PostgreSQL 15 on 127.0.0.1:$PG_PORT (the private network)"

# 2. etcd: three members on loopback, one data dir each, a token of this run.
CLUSTER=""
ENDPOINTS=""
for i in 0 1 2; do
  CLUSTER+="${CLUSTER:+,}e$i=http://127.0.0.1:$((ETCD_PORT + 2 * i + 1))"
  ENDPOINTS+="${ENDPOINTS:+,}127.0.0.1:$((ETCD_PORT + 2 * i))"
done
TOKEN=quickstart-$(openssl rand -hex 6)
start_etcd() {  # start_etcd I STATE
  local i=$1 client=$((ETCD_PORT + 2 * $1)) peer=$((ETCD_PORT + 2 * $1 + 1))
  /usr/bin/etcd --name "e$i" --data-dir "$WORK/etcd$i" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$CLUSTER" --initial-cluster-token "$TOKEN" --initial-cluster-state "$2" \
    --logger zap --log-outputs stderr --log-level warn 2>> "$WORK/etcd$i.log" &
  ETCD_PIDS[$i]=$!
}
etcd_healthy() {
  ETCDCTL_API=3 /usr/bin/etcdctl --endpoints "$ENDPOINTS" --dial-timeout 1s endpoint health \
    >/dev/null 2>&1
}
for i in 0 1 2; do start_etcd "$i" new; done
for _ in $(seq 1 100); do etcd_healthy && break; sleep 0.2; done
etcd_healthy || { cat "$WORK"/etcd*.log; exit 1; }
STORE="etcd://$ENDPOINTS"
echo "quickstart-fleet: etcd 3.4, three members: $STORE"

# 3. The fleet secret: every node of the fleet has the same file; etcd never sees it.
step "openssl rand -base64 32 > fleet.secret && chmod 600 fleet.secret"
openssl rand -base64 32 > "$WORK/fleet.secret" && chmod 600 "$WORK/fleet.secret"

# 4. Three nodes at once, each with its own data dir and admin API port.
for i in 0 1 2; do
  n=${NODES[$i]}
  step "drawbridge serve --store $STORE --node $n --fleet-secret-file fleet.secret --data-dir $n --api-port $((API_PORT + i)) --dns-port 0"
  "$DRAWBRIDGE" serve --store "$STORE" --node "$n" --fleet-secret-file "$WORK/fleet.secret" \
    --data-dir "$WORK/$n" --api-port "$((API_PORT + i))" --dns-port 0 --drain-timeout-ms 2000 \
    2> "$WORK/$n.log" &
  NODE_PIDS[$i]=$!
done
for n in "${NODES[@]}"; do
  for _ in $(seq 1 300); do grep -q "drawbridge: ready" "$WORK/$n.log" && break; sleep 0.1; done
  grep -q "drawbridge: ready" "$WORK/$n.log" || { cat "$WORK/$n.log"; exit 1; }
done
echo "quickstart-fleet: three nodes ready"
on n2 nodes list

# 5. The seed's flow, each step through another node.
cd "$WORK"
on n1 apps create "$APP"
on n2 machines add 127.0.0.1 --app "$APP"
on n3 ips allocate-v4 --yes --app "$APP"
on n1 config save --app "$APP"
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
on n1 deploy . --image flyio/postgres:15
# Each node serves the release once its publisher applied it and it joined the shared port.
for n in "${NODES[@]}"; do
  for _ in $(seq 1 100); do
    quiet_on "$n" status --json | python3 -c '
import json, sys
port = int(sys.argv[1])
sys.exit(0 if any(l["port"] == port and l["state"] == "listening"
                  for l in json.load(sys.stdin).get("listeners", [])) else 1)' "$EDGE_PORT" && break
    sleep 0.1
  done
done
on n3 services list --app "$APP"

# 6. psql with verify-full through the shared port: one CA in the fleet, whichever node.
V4=$(quiet_on n1 ips list --app "$APP" --json | python3 -c 'import json,sys; print(next(i["address"] for i in json.load(sys.stdin) if i["type"]=="v4"))')
quiet_on n2 certs ca > "$WORK/ca.crt"
export PGPASSWORD=$PASSWORD
CONN="sslmode=verify-full sslrootcert=$WORK/ca.crt host=$APP.drawbridge.test hostaddr=$V4 port=$EDGE_PORT dbname=app user=postgres"
step "psql \"$CONN\"   # six times"
psql "$CONN" -c '\conninfo'
for _ in 1 2 3 4 5; do psql "$CONN" -Atc "SELECT 'served: ' || inet_server_port()"; done
accepted() {
  for n in "${NODES[@]}"; do
    printf '  %s: ' "$n"
    quiet_on "$n" status --json | python3 -c 'import json,sys; c=json.load(sys.stdin)["connections"]; print(c["accepted"], "accepted")'
  done
}
echo "quickstart-fleet: connections accepted by each node (the kernel spreads them):"
accepted

# 7. etcd gone altogether: traffic flows on every node's last applied state; writes refused.
step "kill every etcd member"
for i in 0 1 2; do kill -TERM "${ETCD_PIDS[$i]}"; wait "${ETCD_PIDS[$i]}" 2>/dev/null || true; ETCD_PIDS[$i]=""; done
for _ in $(seq 1 50); do
  quiet_on n1 status --json | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("degraded") else 1)' && break
  sleep 0.2
done
on n1 status
step "psql \"$CONN\"   # still served"
psql "$CONN" -Atc "SELECT 'still served while etcd is down'"
step "drawbridge apps create other # on n2: refused at once, nothing written"
quiet_on n2 apps create other || true

# 8. etcd back: the nodes catch up.
for i in 0 1 2; do start_etcd "$i" existing; done
for _ in $(seq 1 100); do etcd_healthy && break; sleep 0.2; done
for _ in $(seq 1 50); do
  quiet_on n2 status --json | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("health") == "ok" else 1)' && break
  sleep 0.2
done
on n2 apps create other
on n3 apps list
on n1 nodes list

echo
echo "quickstart-fleet: the nodes' connection logs:"
for n in "${NODES[@]}"; do grep " conn " "$WORK/$n.log" | sed "s/^/  $n: /" || true; done

if [[ -t 0 ]]; then
  echo
  echo "Try it yourself (password: $PASSWORD):"
  echo "  psql \"$CONN\""
  echo "  $DRAWBRIDGE --data-dir $WORK/n2 nodes list"
  echo "  ETCDCTL_API=3 etcdctl --endpoints $ENDPOINTS get --prefix /drawbridge/ --keys-only"
  echo "Press Enter or Ctrl-C to stop."
  read -r || true
fi
