#!/usr/bin/env bash
# The benchmark in one command: Drawbridge's pg_tls against PgBouncer (client TLS), stunnel
# (protocol = pgsql), PostgreSQL's own TLS and plaintext, on loopback, bounded to ~35 minutes.
#
#   bench/run.sh            full run: 5 interleaved rounds, idle test at 1k and 10k (~25 minutes)
#   QUICK=1 bench/run.sh    smoke test of the harness: 1 round, short durations (~4 minutes)
#
# Installs the Debian packages it needs when missing, builds build/src/drawbridge (a Release
# build, as users and packages build it) when it is missing or build/ is configured as another
# build type (BUILD=1: rebuild even if it exists; DRAWBRIDGE=/path benchmarks that binary as it
# is), writes bench/results/<date>.md and prints it.
# Other knobs (ROUNDS, KEEP, NOTE, BUDGET_S, ONLY_IDLE, SKIP_IDLE): see bench/bench.py.
#
#   BASELINE=/path/to/drawbridge [BASELINE_REV=7eb5b93] bench/run.sh
#       before/after in one run: adds the target "Drawbridge (baseline)", that binary run exactly
#       as "Drawbridge" runs the current one (same flags, same fly.toml but its port, same
#       certificate), back to back with it in every workload of every round and in the idle test,
#       and a section with the ratios current / baseline (TPS, CPU per transaction, added latency,
#       COPY MB/s, connections/s, idle RSS per connection). Full run about 29 minutes (budget
#       2400 s); writes bench/results/<date>-vs-baseline.md. Unset: the run is as without it.
# Must run as root (installs packages, runs PostgreSQL and PgBouncer as user postgres).
# A benchmark, not a test: it exits 0 whatever the numbers are.
set -euo pipefail
START_DIR=$(pwd)
cd "$(dirname "$0")/.."
ROOT=$(pwd)

if [[ $(id -u) -ne 0 ]]; then
  echo "bench: run as root (it installs packages and runs PostgreSQL as user postgres)" >&2
  exit 2
fi

if [[ -n ${BASELINE:-} ]]; then
  # Relative to where run.sh was started from, not to the repository root it moved to.
  BASELINE=$(cd "$START_DIR" && realpath -e -- "$BASELINE") || { echo "bench: BASELINE: no such file" >&2; exit 2; }
  [[ -f $BASELINE && -x $BASELINE ]] || { echo "bench: BASELINE=$BASELINE is not an executable file" >&2; exit 2; }
  echo "bench: baseline $BASELINE" >&2
  export BASELINE
fi

PACKAGES=(postgresql-15 postgresql-client-15 pgbouncer stunnel4 openssl python3)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bench: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
# The Debian packages may start their own services where systemd runs; the benchmark starts
# its own instances on free loopback ports and never touches those.

BIN=${DRAWBRIDGE:-$ROOT/build/src/drawbridge}
# The build type of build/ (empty when it is not configured yet).
build_type() { sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$ROOT/build/CMakeCache.txt" 2>/dev/null; }
if [[ -z ${DRAWBRIDGE:-} && -x $BIN && $(build_type) != Release ]]; then
  echo "bench: build/ is a '$(build_type)' build; reconfiguring it as Release" >&2
  BUILD=1
fi
if [[ -z ${DRAWBRIDGE:-} && ( ! -x $BIN || ${BUILD:-0} == 1 ) ]]; then
  echo "bench: building $BIN (Release)" >&2
  scripts/setup.sh >&2
  # Release, as users and packages build it (and as an independent harness builds it); warnings
  # are not errors here: a benchmark of the sources should not stop on a new compiler's warning.
  cmake -S "$ROOT" -B "$ROOT/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDRAWBRIDGE_WERROR=OFF >/dev/null
  ninja -C "$ROOT/build" drawbridge >&2
elif [[ -z ${DRAWBRIDGE:-} && -f $ROOT/build/build.ninja ]] && ninja -C "$ROOT/build" -n drawbridge 2>/dev/null | grep -q 'Linking CXX executable src/drawbridge'; then
  echo "bench: note: $BIN is older than the sources (BUILD=1 rebuilds it); benchmarking it as it is" >&2
fi
export DRAWBRIDGE=$BIN

# Each process may hold 10,000+ descriptors in the idle-connection test.
ulimit -n "$(ulimit -Hn)"

exec /usr/bin/python3 "$ROOT/bench/bench.py"
