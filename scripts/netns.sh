#!/usr/bin/env bash
# netns.sh: an N-peer emulated LAN/WAN for the all-reduce benchmarks (docs/net_bench_method.md).
#
#   netns.sh up N [--rate RATE] [--burst BYTES] [--latency TIME] [--delay-none | --delay TIME]
#   netns.sh down [N]
#   netns.sh exec I CMD...
#   netns.sh status
#
# `up` creates network namespaces dtns0..dtns(N-1), each with a veth `dtv<i>` addressed
# 10.77.0.(i+1)/24, whose peer `dtb<i>` is enslaved to bridge `dtbr` inside a further
# namespace `dtnsbr`; the root namespace is never touched. With --rate, a tbf qdisc on both
# ends of every veth caps each peer's uplink and downlink to RATE (tc units, e.g. 1gbit,
# 200mbit); burst defaults to 256kb and the tbf queue latency to 50ms. `--delay TIME` puts a
# netem delay under each tbf; netem is not in this kernel, so it fails cleanly here, and
# `--delay-none` (the default) is accepted for explicitness.
# `up` is idempotent: it first removes whatever an earlier `up` left. `down` removes
# dtns0..dtns(N-1) and dtnsbr, or with no N every namespace named dtns<digits> and dtnsbr.
# Only namespaces and devices named dt* that this script creates are touched.
# Needs root (CAP_NET_ADMIN) and iproute2. Exit status 0 on success, 1 on failure, 2 on usage.
set -Eeuo pipefail

usage() {
  sed -n '4,7p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

bridge_ns=dtnsbr

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

down() {
  local names
  if [[ $# -ge 1 ]]; then
    names=$(for ((i = 0; i < $1; i++)); do echo "dtns$i"; done)
  else
    names=$(ip netns list | awk '{print $1}' | grep -E '^dtns[0-9]+$' || true)
  fi
  for ns in $names $bridge_ns; do
    if ns_exists "$ns"; then ip netns del "$ns"; fi
  done
}

# shape DEV_NS DEV: tbf (optionally under netem) on the egress of DEV inside namespace DEV_NS.
shape() {
  local ns=$1 dev=$2
  if [[ -n $delay ]]; then
    ip -n "$ns" link set "$dev" up
    if ! tc -n "$ns" qdisc add dev "$dev" root handle 1: netem delay "$delay" 2>/dev/null; then
      echo "netns.sh: netem is not available in this kernel; use --delay-none" >&2
      return 1
    fi
    tc -n "$ns" qdisc add dev "$dev" parent 1:1 handle 10: tbf rate "$rate" burst "$burst" latency "$latency"
  else
    tc -n "$ns" qdisc add dev "$dev" root tbf rate "$rate" burst "$burst" latency "$latency"
  fi
}

up() {
  local n=$1
  if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1 || n > 250)); then
    echo "netns.sh: N must be 1..250" >&2
    exit 2
  fi
  down
  ip netns add "$bridge_ns"
  ip -n "$bridge_ns" link set lo up
  ip -n "$bridge_ns" link add dtbr type bridge
  ip -n "$bridge_ns" link set dtbr up
  for ((i = 0; i < n; i++)); do
    local ns=dtns$i
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # Created directly inside the two namespaces: the pair never appears in the root one.
    ip link add "dtv$i" netns "$ns" type veth peer name "dtb$i" netns "$bridge_ns"
    ip -n "$ns" addr add "10.77.0.$((i + 1))/24" dev "dtv$i"
    ip -n "$bridge_ns" link set "dtb$i" master dtbr
    if [[ -n $rate ]]; then
      shape "$ns" "dtv$i"          # uplink: peer -> bridge
      shape "$bridge_ns" "dtb$i"   # downlink: bridge -> peer
    fi
    ip -n "$ns" link set "dtv$i" up
    ip -n "$bridge_ns" link set "dtb$i" up
  done
  echo "netns.sh: $n namespaces dtns0..dtns$((n - 1)) on 10.77.0.0/24 (bridge dtbr in $bridge_ns)${rate:+, tbf rate $rate burst $burst latency $latency}${delay:+, netem delay $delay}"
}

status() {
  ip netns list | awk '{print $1}' | grep -E '^dtns([0-9]+|br)$' | sort -V | while read -r ns; do
    echo "== $ns"
    ip -n "$ns" -brief addr show | grep -v '^lo ' || true
    tc -n "$ns" qdisc show | grep -E 'tbf|netem' || true
  done
}

[[ $# -ge 1 ]] || usage
cmd=$1
shift
case $cmd in
  up)
    [[ $# -ge 1 ]] || usage
    n=$1
    shift
    rate="" burst=256kb latency=50ms delay=""
    while [[ $# -gt 0 ]]; do
      case $1 in
        --rate) rate=${2:?}; shift 2 ;;
        --burst) burst=${2:?}; shift 2 ;;
        --latency) latency=${2:?}; shift 2 ;;
        --delay) delay=${2:?}; shift 2 ;;
        --delay-none) delay=""; shift ;;
        *) usage ;;
      esac
    done
    if [[ -n $delay && -z $rate ]]; then
      echo "netns.sh: --delay needs --rate" >&2
      exit 2
    fi
    # A half-built topology is removed before reporting the failure.
    trap 'echo "netns.sh: up failed, cleaning up" >&2; down' ERR
    up "$n"
    trap - ERR
    ;;
  down)
    if [[ $# -ge 1 ]]; then
      [[ $1 =~ ^[0-9]+$ ]] || usage
      down "$1"
    else
      down
    fi
    ;;
  exec)
    [[ $# -ge 2 && $1 =~ ^[0-9]+$ ]] || usage
    i=$1
    shift
    exec ip netns exec "dtns$i" "$@"
    ;;
  status) status ;;
  *) usage ;;
esac
