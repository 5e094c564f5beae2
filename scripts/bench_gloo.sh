#!/usr/bin/env bash
# bench_gloo.sh N [driver args...]: run the Gloo all-reduce sweep with N local ranks on
# loopback, each rank a process meeting the others through a fresh temporary FileStore
# directory, and print rank 0's table (docs/net_bench_method.md).
#
#   DTRAIN_GLOO_BIN   path of dtrain_gloo_allreduce (default: the newest
#                     build*/bench/net_tcp/dtrain_gloo_allreduce)
#   DTRAIN_NETNS=1    run rank i inside namespace dtns<i> (scripts/netns.sh up N first) and
#                     bind it to 10.77.0.(i+1) instead of 127.0.0.1
# Exit status: 0 when every rank succeeded, else the first failing rank's status.
set -euo pipefail

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ || $1 -lt 1 ]]; then
  echo "usage: $0 N [dtrain_gloo_allreduce args...]" >&2
  exit 2
fi
n=$1
shift

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
bin=${DTRAIN_GLOO_BIN:-}
if [[ -z $bin ]]; then
  bin=$(ls -1t "$root"/build*/bench/net_tcp/dtrain_gloo_allreduce 2>/dev/null | head -n1 || true)
fi
if [[ -z $bin || ! -x $bin ]]; then
  echo "dtrain_gloo_allreduce not found; build it or set DTRAIN_GLOO_BIN" >&2
  exit 2
fi

store=$(mktemp -d /tmp/dtrain_gloo_store.XXXXXX)
logs=$(mktemp -d /tmp/dtrain_gloo_logs.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$store" "$logs"
}
trap cleanup EXIT

for ((i = n - 1; i >= 0; i--)); do
  if [[ ${DTRAIN_NETNS:-0} == 1 ]]; then
    ip netns exec "dtns$i" "$bin" --rank "$i" --size "$n" --store "$store" \
      --iface-addr "10.77.0.$((i + 1))" "$@" >"$logs/$i.out" 2>"$logs/$i.err" &
  else
    "$bin" --rank "$i" --size "$n" --store "$store" "$@" >"$logs/$i.out" 2>"$logs/$i.err" &
  fi
  pids+=($!)
done

status=0
for ((k = 0; k < n; k++)); do
  rank=$((n - 1 - k))
  rc=0
  wait "${pids[$k]}" || rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "rank $rank failed (exit $rc):" >&2
    cat "$logs/$rank.err" >&2
    [[ $status -ne 0 ]] || status=$rc
  fi
done
pids=()
cat "$logs/0.out"
exit "$status"
