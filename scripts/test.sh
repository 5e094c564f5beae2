#!/usr/bin/env bash
# README test command: install dependencies, build everything, run the whole test suite.
#   bash scripts/test.sh              # normal build (build/)
#   bash scripts/test.sh --sanitize   # ASan + UBSan build (build-asan/), CUDA off
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh

dir=build
flags=(-DCMAKE_BUILD_TYPE=Release)
if [ "${1:-}" = "--sanitize" ]; then
  dir=build-asan
  # CUDA code cannot run under ASan; benchmarks and examples add nothing here.
  flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DDTRAIN_SANITIZE=ON -DDTRAIN_CUDA=OFF
         -DDTRAIN_BUILD_BENCH=OFF -DDTRAIN_BUILD_EXAMPLES=OFF)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
cmake -S . -B "$dir" -G Ninja -DDTRAIN_WERROR=ON "${flags[@]}"
cmake --build "$dir" -j "$(nproc)"
ctest --test-dir "$dir" --output-on-failure -j 1
