#!/usr/bin/env bash
# Configures and builds into build/ (or $BUILD_DIR), warnings as errors.
# BUILD_DIR=build-asan SANITIZE=1 scripts/build.sh builds the ASan/UBSan configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
SANITIZE=${SANITIZE:-0}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDRAWBRIDGE_WERROR=ON \
  -DDRAWBRIDGE_SANITIZE=$([[ $SANITIZE == 1 ]] && echo ON || echo OFF) >/dev/null
ninja -C "$BUILD_DIR"
