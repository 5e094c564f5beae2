#!/usr/bin/env bash
# The swarm's churn soak for longer than CI runs it (CI: 60 s, tests swarm_churn_soak):
# a random peer is killed (SIGKILL) or started every 0.5-2 s while 4 peers train with
# DiLoCo over TCP. Passes when nothing hung (an outer step at least every 30 s), no peer
# failed, and every completed outer step was bit-identical on all members.
#   bash scripts/bench_soak.sh [seconds=600] [extra dtrain-swarm flags...]
# Per-peer logs land in build/soak-logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target dtrain_swarm >/dev/null
rm -rf build/soak-logs && mkdir -p build/soak-logs
./build/examples/dtrain-swarm --peers 4 --churn --churn-min 0.5 --churn-max 2 --max-seconds "$seconds" \
  --outer-steps 100000000 --log-dir build/soak-logs "$@"
