#!/usr/bin/env bash
# Configures and builds into build/ (or $BUILD_DIR), warnings as errors.
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
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDRAWBRIDGE_WERROR=ON \
  -DDRAWBRIDGE_SANITIZE=$MODE >/dev/null
ninja -C "$BUILD_DIR" "$@"
