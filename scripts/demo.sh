#!/usr/bin/env bash
# README main-job command: install dependencies, build, and run the flagship example
# (examples/diloco_sim: DDP vs DiLoCo vs compressed and gossip DiLoCo on the tiny GPT).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)" --target dtrain_diloco_sim
./build/examples/dtrain_diloco_sim "$@"
