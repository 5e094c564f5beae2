#!/usr/bin/env bash
# README main-job command: install dependencies, build, and run the flagship example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)" --target dtrain_codec_demo
./build/examples/dtrain_codec_demo "$@"
