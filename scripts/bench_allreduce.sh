#!/usr/bin/env bash
# bench_allreduce.sh: dtrain's TCP ring all-reduce against Gloo in one session, interleaved
# per setting (docs/net_bench.md; method in docs/net_bench_method.md).
#
#   bench_allreduce.sh [--out DIR] [--reps R] [--ns "2 3 4"] [--skip-loopback] [--skip-capped]
#                      [--rate 1gbit]
#   bench_allreduce.sh --tables [DIR]   # markdown tables from DIR/{loopback,capped}.csv
#
# (a) raw loopback, sizes 16 B .. 256 MiB (x16): Gloo ring, then dtrain identity with the
#     default transport settings, then dtrain identity with the tuning variants below;
# (b) every rank in its own namespace behind a tbf cap (scripts/netns.sh up, needs root),
#     sizes 1 MiB .. 64 MiB (x4): Gloo, dtrain identity, minmax:bits=8 (int8), fp4.
# Each (N, phase) cycles through the implementations R times (default 2), so Gloo and dtrain
# always run a minute apart under the same background load.
# Writes DIR/loopback.csv, DIR/capped.csv (the drivers' CSV lines behind "link,rep,") and
# DIR/*.log (rank 0's full tables, with the lossy codecs' error lines), DIR default
# docs/net_bench. Binaries: the newest build*/bench/net_tcp/{dtrain_gloo_allreduce,
# dtrain_tcp_allreduce}, or DTRAIN_GLOO_BIN / DTRAIN_TCP_BIN.
# Exit status: 0 when every run succeeded; a failed run is reported and the sweep goes on.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
out=$root/docs/net_bench
reps=2
ns_list="2 3 4"
do_loop=1
do_cap=1
rate=1gbit
# Markdown tables (one per link and N; rows per size and implementation; "× Gloo busbw"
# is Gloo's time over dtrain's in the same repetition) from the saved CSV files.
tables() {
  python3 - "$@" <<'PY'
import collections, csv, sys

def size_name(b):
    for s, u in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if b >= s and b % s == 0:
            return f"{b // s} {u}"
    return f"{b} B"

def fmt_time(r):
    us = float(r["time_us"])
    return f"{us:.0f}" if us >= 100 else f"{us:.1f}"

for path in sys.argv[1:]:
    rows = list(csv.DictReader(open(path)))
    if not rows:
        continue
    link = rows[0]["link"]
    cells = collections.defaultdict(dict)  # (N, impl, size) -> rep -> row
    impls = []
    for r in rows:
        key = "gloo" if r["impl"] == "gloo" else r["algo"]
        if key not in impls:
            impls.append(key)
        cells[(int(r["N"]), key, int(r["size_bytes"]))][r["rep"]] = r
    reps = sorted({r["rep"] for r in rows})
    for n in sorted({k[0] for k in cells}):
        print(f"\n**{link}, N = {n}** (each cell: " + " / ".join(f"rep {x}" for x in reps) + ")\n")
        print("| size | count | impl | time (µs) | algbw (GB/s) | busbw (GB/s) | × Gloo busbw | #wrong | cores |")
        print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
        for s in sorted({k[2] for k in cells if k[0] == n}):
            gloo = cells.get((n, "gloo", s), {})
            for im in impls:
                cell = cells.get((n, im, s))
                if not cell:
                    continue
                def join(f):
                    return " / ".join(f(cell[x]) if x in cell else "–" for x in reps)
                def ratio(x):
                    # Same size and N, so busbw_d / busbw_g = t_g / t_d (unrounded).
                    if x not in cell or x not in gloo or float(cell[x]["time_us"]) <= 0:
                        return "–"
                    return f"{float(gloo[x]['time_us']) / float(cell[x]['time_us']):.2f}"
                rat = "" if im == "gloo" else " / ".join(ratio(x) for x in reps)
                name = "Gloo ring" if im == "gloo" else "dtrain " + im
                print(f"| {size_name(s)} | {s // 4} | {name} | {join(fmt_time)} | "
                      f"{join(lambda r: format(float(r['algbw_GBs']), '.3f'))} | "
                      f"{join(lambda r: format(float(r['busbw_GBs']), '.3f'))} | {rat} | "
                      f"{join(lambda r: r['wrong'])} | {join(lambda r: r['cores'])} |")
PY
}
if [[ ${1:-} == --tables ]]; then
  dir=${2:-$out}
  files=()
  for f in "$dir/loopback.csv" "$dir/capped.csv"; do [[ -f $f ]] && files+=("$f"); done
  tables "${files[@]}"
  exit
fi

while [[ $# -gt 0 ]]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --ns) ns_list=$2; shift 2 ;;
    --skip-loopback) do_loop=0; shift ;;
    --skip-capped) do_cap=0; shift ;;
    --rate) rate=$2; shift 2 ;;
    *) sed -n '2,20p' "$0" >&2; exit 2 ;;
  esac
done

newest() { ls -1t "$root"/build*/bench/net_tcp/"$1" 2>/dev/null | head -n1 || true; }
gloo_bin=${DTRAIN_GLOO_BIN:-$(newest dtrain_gloo_allreduce)}
tcp_bin=${DTRAIN_TCP_BIN:-$(newest dtrain_tcp_allreduce)}
for b in "$gloo_bin" "$tcp_bin"; do
  if [[ -z $b || ! -x $b ]]; then
    echo "driver binary missing (gloo: '$gloo_bin', dtrain: '$tcp_bin'); build both" >&2
    exit 2
  fi
done
mkdir -p "$out"

# Tuning variants of dtrain on loopback (extra driver flags), run after the default.
loop_variants=("--stripe-bytes 256K" "--streams 2" "--segment-floats 4M")

pids=()
work=$(mktemp -d /tmp/dtrain_allreduce_bench.XXXXXX)
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
  if [[ $do_cap == 1 && ${netns_up:-0} == 1 ]]; then "$here/netns.sh" down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

status=0
# run_ranks LINK REP LOG BIN N ARGS...: N ranks of BIN; rank 0's output appended to LOG and
# its CSV lines to $out/LINK.csv as "LINK,REP,<fields>".
run_ranks() {
  local link=$1 rep=$2 log=$3 bin=$4 n=$5
  shift 5
  local store
  store=$(mktemp -d "$work/store.XXXXXX")
  pids=()
  for ((i = n - 1; i >= 0; i--)); do
    if [[ $link == capped ]]; then
      ip netns exec "dtns$i" "$bin" --rank "$i" --size "$n" --store "$store" \
        --iface-addr "10.77.0.$((i + 1))" "$@" >"$work/$i.out" 2>"$work/$i.err" &
    else
      "$bin" --rank "$i" --size "$n" --store "$store" "$@" >"$work/$i.out" 2>"$work/$i.err" &
    fi
    pids+=($!)
  done
  local rc_all=0
  for ((k = 0; k < n; k++)); do
    local rank=$((n - 1 - k)) rc=0
    wait "${pids[$k]}" || rc=$?
    if [[ $rc -ne 0 ]]; then
      echo "!! $link N=$n $(basename "$bin") $* : rank $rank exit $rc" >&2
      sed 's/^/   /' "$work/$rank.err" >&2
      rc_all=$rc
    fi
  done
  pids=()
  {
    echo "## $(date +%T) link=$link rep=$rep N=$n load=$(cut -d' ' -f1-3 /proc/loadavg) $(basename "$bin") $*"
    cat "$work/0.out"
  } >>"$log"
  grep '^CSV,' "$work/0.out" | sed "s/^CSV,/$link,$rep,/" >>"$out/$link.csv"
  grep -E '^ +[0-9]' "$work/0.out" | sed "s/^/   [$link N=$n $(basename "$bin" | sed 's/dtrain_//') $*] /" >&2
  [[ $rc_all -eq 0 ]] || status=1
}

header="link,rep,impl,algo,N,size_bytes,count,type,time_us,algbw_GBs,busbw_GBs,wrong,min_us,max_us,cores"
t_start=$(date +%s)
{
  echo "# bench_allreduce.sh $(date -Is) on $(uname -n): $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  echo "# kernel $(uname -r); load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/session.txt" >&2

if [[ $do_loop == 1 ]]; then
  echo "$header" >"$out/loopback.csv"
  : >"$out/loopback.log"
  sizes=(--min-bytes 16 --max-bytes 256M --factor 16)
  for n in $ns_list; do
    for ((rep = 1; rep <= reps; rep++)); do
      run_ranks loopback "$rep" "$out/loopback.log" "$gloo_bin" "$n" "${sizes[@]}"
      run_ranks loopback "$rep" "$out/loopback.log" "$tcp_bin" "$n" "${sizes[@]}" --codec identity
      for v in "${loop_variants[@]}"; do
        # shellcheck disable=SC2086  # v holds several words on purpose
        run_ranks loopback "$rep" "$out/loopback.log" "$tcp_bin" "$n" --min-bytes 1M --max-bytes 256M \
          --factor 16 --codec identity $v
      done
    done
  done
fi

if [[ $do_cap == 1 ]]; then
  echo "$header" >"$out/capped.csv"
  : >"$out/capped.log"
  max_n=0
  for n in $ns_list; do ((n > max_n)) && max_n=$n; done
  "$here/netns.sh" up "$max_n" --rate "$rate" >/dev/null
  netns_up=1
  sizes=(--min-bytes 1M --max-bytes 64M --factor 4)
  for n in $ns_list; do
    for ((rep = 1; rep <= reps; rep++)); do
      run_ranks capped "$rep" "$out/capped.log" "$gloo_bin" "$n" "${sizes[@]}"
      for c in identity minmax:bits=8 fp4; do
        run_ranks capped "$rep" "$out/capped.log" "$tcp_bin" "$n" "${sizes[@]}" --codec "$c"
      done
    done
  done
  "$here/netns.sh" down >/dev/null
  netns_up=0
fi

{
  echo "# finished $(date -Is), $(($(date +%s) - t_start)) s; load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$out/session.txt" >&2
exit "$status"
