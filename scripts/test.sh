#!/usr/bin/env bash
# Every test: installs dependencies, builds with warnings as errors, then runs unit tests,
# fuzz-corpus replays and the integration tests (real PostgreSQL 15, psql, pgbench, psycopg,
# asyncpg, etcd) with CTest. Then, under ASan/UBSan (unless ASAN=0), the suites that exercise
# parsers and the data plane: the parser and network unit tests, the fuzz replays, and the
# integration suites that feed the daemon hostile or faulty input. Then the suites that exercise
# threads (the relay loop, sessions, the health board and checker, admission, the data-plane,
# health, admission and fleet integration suites) under ThreadSanitizer, unless TSAN=0. The control-plane suites (CLI, names, ports, store, fleet
# operations) run in the normal pass only, which keeps the whole run well under an hour.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j1
if [[ ${ASAN:-1} == 1 ]]; then
  BUILD_DIR=build-asan SANITIZE=1 scripts/build.sh drawbridge pg_test config_test net_pure_test \
    net_test tls_test dns_test api_test fleet_cancel_test health_test admission_test \
    startup_replay backend_replay messages_replay fly_toml_replay dns_replay
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    DRAWBRIDGE_SLOW_TESTS=0 ctest --test-dir build-asan --output-on-failure -j1 \
    -R '^unit[.]|^fuzz_replay_|^integration_(clients|protocol|hostile_clients|lifecycle|faults|admin_abuse|tenancy|secrets_and_input|config_warnings|health|admission)$'
fi
if [[ ${TSAN:-1} == 1 ]]; then
  BUILD_DIR=build-tsan SANITIZE=thread scripts/build.sh drawbridge net_pure_test health_test admission_test
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 DRAWBRIDGE_SLOW_TESTS=0 \
    ctest --test-dir build-tsan --output-on-failure -j1 \
    -R '^unit[.](RelayLoopTest|RelayPoolTest|SessionTest|LiveConnectionsTest|CancelRegistryTest|Board|Checker|AdmissionTest)[.]|^integration_(protocol|lifecycle|faults|hostile_clients|clients|tenancy|fleet|health|admission)$'
fi
echo "test.sh: all tests passed"
