#!/usr/bin/env bash
# Configures and builds into build/ (or $BUILD_DIR), warnings as errors, Release by default.
# BUILD_DIR=build-asan SANITIZE=1 scripts/build.sh builds the ASan/UBSan configuration,
# SANITIZE=thread the ThreadSanitizer one. Further arguments name the targets (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
SANITIZE=${SANITIZE:-0}
case $SANITIZE in
  1) MODE=ON ;;
  thread) MODE=thread ;;
  *) MODE=OFF ;;
esac
# Release (-O3, what users, packages and the benchmarks build) unless BUILD_TYPE says otherwise;
# the sanitizer builds keep their debug information for readable reports.
if [[ $MODE == OFF ]]; then BUILD_TYPE=${BUILD_TYPE:-Release}; else BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}; fi
LAUNCHER=()
command -v ccache >/dev/null && LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DDRAWBRIDGE_WERROR=ON \
  -DDRAWBRIDGE_SANITIZE=$MODE "${LAUNCHER[@]}" >/dev/null
ninja -C "$BUILD_DIR" "$@"
