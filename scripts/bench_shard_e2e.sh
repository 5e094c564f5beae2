#!/usr/bin/env bash
# bench_shard_e2e.sh: the end-to-end checkpoint distribution benchmark
# (bench/shard/e2e/main.cpp, results in docs/shard_bench.md "End to end"): origin ->
# 2 relays -> 4 client processes on 127.0.0.1, every root served by nginx, beside plain
# curl downloads of the same bytes in the same run. Prints the machine, per-rep lines and
# a Markdown table of medians; the log is also written to <build>/shard_e2e.log.
#
#   bench_shard_e2e.sh [--build DIR] [driver options...]
#     --build DIR   a build with -DDTRAIN_BUILD_BENCH=ON (default: build); the target
#                   dtrain_shard_e2e is built there first
#   driver options (defaults): --sizes 256M,1G --reps 3 --clients 4
#     --configs rs10_4:blake2b,none:blake2b,rs10_4:xxh3,none:xxh3 --chunk-size 4M
#     --parallel 8 --workdir DIR (default: a fresh directory under $TMPDIR or /tmp)
# Needs nginx (/usr/sbin/nginx) and curl (scripts/deps.sh), and about 14 GiB free in the
# work directory for the 1 GiB size (origin, 2 relays, 4 client copies, 4 curl copies).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
build=$root/build
if [[ ${1:-} == --build ]]; then
  build=$2
  shift 2
fi
for tool in /usr/sbin/nginx curl; do
  command -v "$tool" > /dev/null || { echo "bench_shard_e2e.sh: $tool missing (scripts/deps.sh)" >&2; exit 2; }
done
ninja -C "$build" dtrain_shard_e2e
{
  echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm)"
  echo "== cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) threads; $(free -g | awk '/Mem:/{print $2}') GiB RAM"
  echo "== nginx: $(/usr/sbin/nginx -v 2>&1 | sed 's/.*: //'); $(curl --version | head -1 | cut -d' ' -f1-2)"
  echo "== load: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$build/bench/dtrain_shard_e2e" "$@"
  echo "== load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} 2>&1 | tee "$build/shard_e2e.log"
exit "${PIPESTATUS[0]}"
