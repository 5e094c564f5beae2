#!/usr/bin/env bash
# README main-job command: install dependencies, build, and run the flagship example
# (examples/swarm, dtrain-swarm): a coordinator and four peer processes train the tiny GPT
# with DiLoCo over TCP while random peers are killed and restarted (--churn); a summary
# reports loss, bytes, recoveries and compute utilization. Arguments replace the defaults,
# e.g. `bash scripts/demo.sh --peers 6 --codec fp4`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)" --target dtrain_swarm
if [ "$#" -eq 0 ]; then
  set -- --churn
fi
./build/examples/dtrain-swarm "$@"
