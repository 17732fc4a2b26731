#!/usr/bin/env bash
# Installs what Drawbridge needs to build and test on Debian 12. Idempotent: installs only
# the packages that are missing. Run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libboost1.74-dev libssl-dev libtomlplusplus-dev libcli11-dev nlohmann-json3-dev
  libspdlog-dev libsqlite3-dev libgtest-dev libgmock-dev
  postgresql-15 postgresql-client-15 openssl dnsutils iproute2 etcd-server etcd-client
  python3 python3-pytest python3-psycopg python3-asyncpg
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Debian's postgresql package starts a cluster on 5432; the tests and the quickstart start
# their own throwaway servers and never touch it.
