#!/usr/bin/env bash
# toploc_interop.sh: dtrain's TOPLOC against the reference implementation (PyPI toploc
# 0.1.6) in one session: the reference writes proofs and verdicts for random bf16 hidden
# states, dtrain_toploc_interop compares them byte for byte, then the reference's speed
# per 32x4096 chunk is measured, optionally beside dtrain's benchmark (docs/toploc_bench.md).
#
#   toploc_interop.sh [--build DIR] [--no-time] [--bench] [--reps R]
#   toploc_interop.sh --setup [VENV]     # create the reference's venv (default below)
#
#   --build DIR   dtrain build with -DDTRAIN_BUILD_BENCH=ON (default: the newest build*/
#                 holding bench/dtrain_toploc_interop); outputs are written there:
#                 toploc_interop.bin, toploc_ref_timing.json, toploc_bench.json
#   --no-time     skip the reference's timing
#   --bench       also run dtrain_toploc_bench (--benchmark_repetitions=R, medians)
#   TOPLOC_PYTHON the interpreter with torch and toploc (default .venv-toploc/bin/python in
#                 the repository, which --setup creates; git ignores it)
# Exit status: the checker's (0 when every difference from the reference is explained,
# 1 otherwise), 2 for a usage or setup problem.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
py=${TOPLOC_PYTHON:-$root/.venv-toploc/bin/python}
build=
do_time=1
do_bench=0
reps=3

if [[ ${1:-} == --setup ]]; then
  venv=${2:-$root/.venv-toploc}
  # The wheel is cp311 only. Its C++ extensions link libtorch; they were built on
  # 2025-04-10, when torch 2.6.0 was current, and are only tested with it here.
  python3.11 -m venv "$venv"
  "$venv/bin/pip" install --upgrade pip
  "$venv/bin/pip" install "torch==2.6.0" "toploc==0.1.6"
  "$venv/bin/python" -c 'import torch, toploc; print("torch", torch.__version__, "toploc", toploc.__version__)'
  exit 0
fi

while [[ $# -gt 0 ]]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --no-time) do_time=0; shift ;;
    --bench) do_bench=1; shift ;;
    --reps) reps=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--no-time] [--bench] [--reps R] | --setup [VENV]" >&2; exit 2 ;;
  esac
done

if [[ -z $build ]]; then
  bin=$(ls -1t "$root"/build*/bench/dtrain_toploc_interop 2>/dev/null | head -n1 || true)
  build=${bin%/bench/dtrain_toploc_interop}
fi
if [[ -z $build || ! -x $build/bench/dtrain_toploc_interop ]]; then
  echo "dtrain_toploc_interop not found: configure with -DDTRAIN_BUILD_BENCH=ON, build it, pass --build DIR" >&2
  exit 2
fi
if ! "$py" -c 'import toploc, torch' 2>/dev/null; then
  echo "$py cannot import torch and toploc: run $0 --setup, or set TOPLOC_PYTHON" >&2
  exit 2
fi

echo "== reference proofs and verdicts -> $build/toploc_interop.bin"
"$py" "$here/toploc_interop.py" gen "$build/toploc_interop.bin"
echo "== dtrain against the reference"
rc=0
"$build/bench/dtrain_toploc_interop" "$build/toploc_interop.bin" || rc=$?

if [[ $do_time == 1 ]]; then
  echo
  echo "== the reference's speed -> $build/toploc_ref_timing.json"
  "$py" "$here/toploc_interop.py" time "$build/toploc_ref_timing.json"
fi
if [[ $do_bench == 1 ]]; then
  echo
  echo "== dtrain's speed (median of $reps) -> $build/toploc_bench.json"
  "$build/bench/dtrain_toploc_bench" --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true \
    --benchmark_out="$build/toploc_bench.json" --benchmark_out_format=json | grep -E '_median|^Load|^Run on|^-|^Benchmark'
fi
exit $rc
