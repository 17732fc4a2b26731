#!/usr/bin/env bash
# Every test: installs dependencies, builds with warnings as errors, then runs unit tests,
# fuzz-corpus replays and the integration tests (real PostgreSQL 15, psql, pgbench, psycopg,
# asyncpg) with CTest. Then the same again under ASan/UBSan, unless ASAN=0; then the suites that
# exercise threads (the relay loop, sessions, the data-plane integration suites) under
# ThreadSanitizer, unless TSAN=0.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j1
if [[ ${ASAN:-1} == 1 ]]; then
  BUILD_DIR=build-asan SANITIZE=1 scripts/build.sh
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    DRAWBRIDGE_SLOW_TESTS=0 ctest --test-dir build-asan --output-on-failure -j1
fi
if [[ ${TSAN:-1} == 1 ]]; then
  BUILD_DIR=build-tsan SANITIZE=thread scripts/build.sh drawbridge net_pure_test
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 DRAWBRIDGE_SLOW_TESTS=0 \
    ctest --test-dir build-tsan --output-on-failure -j1 \
    -R '^unit[.](RelayLoopTest|SessionTest|LiveConnectionsTest|CancelRegistryTest)[.]|^integration_(protocol|lifecycle|faults|hostile_clients|clients|tenancy|fleet)$'
fi
echo "test.sh: all tests passed"
