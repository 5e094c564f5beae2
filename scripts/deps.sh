#!/usr/bin/env bash
# Installs dtrain's build and test dependencies from Debian 12 packages (run as root).
# Idempotent: skips apt entirely when everything is already installed.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config python3
      libeigen3-dev libsodium-dev libxxhash-dev catch2 libbenchmark-dev
      clang libclang-rt-14-dev gnuplot-nox
      libasio-dev libgloo-dev iproute2 libisal-dev
      libcurl4-openssl-dev nginx-light curl libzstd-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "dtrain: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
