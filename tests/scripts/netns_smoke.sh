#!/usr/bin/env bash
# netns_smoke.sh [RATE]: smoke test of scripts/netns.sh (root only; manual, not in ctest).
# Brings up 2 namespaces with a tbf cap (default 1gbit), checks TCP connectivity across the
# bridge, measures one TCP stream dtns0 -> dtns1 for 3 s with a small Python sender/receiver
# and fails if the measured goodput exceeds the cap by more than 5% (a load-noisy machine can
# only make it slower, so this check cannot fail spuriously). Then repeats without a cap for
# reference, checks `up` is idempotent and `down` leaves nothing behind.
# Exit: 0 pass, 1 fail, 77 skipped (not root or no network namespaces).
set -euo pipefail

rate=${1:-1gbit}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
netns=$here/../../scripts/netns.sh

if [[ $(id -u) -ne 0 ]] || ! ip netns list >/dev/null 2>&1; then
  echo "SKIP: needs root and ip netns"
  exit 77
fi
trap '"$netns" down >/dev/null 2>&1 || true' EXIT

# rate_bits RATE: tc rate string -> bits per second (tc units: k/m/g = 1e3/1e6/1e9 bit).
rate_bits() {
  python3 -c '
import re, sys
m = re.fullmatch(r"(\d+(?:\.\d+)?)(|k|m|g)bit", sys.argv[1].lower())
if not m: sys.exit("unsupported rate " + sys.argv[1])
print(int(float(m[1]) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m[2]]))' "$1"
}

# measure SECONDS: one TCP stream 10.77.0.1 -> 10.77.0.2:5201, prints goodput in bit/s.
measure() {
  local secs=$1 out
  out=$(mktemp)
  "$netns" exec 1 python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.2", 5201)); s.listen(1); s.settimeout(20)
c, _ = s.accept(); c.settimeout(20)
buf = bytearray(1 << 20); total = 0; t0 = None
while True:
    n = c.recv_into(buf)
    if n == 0: break
    if t0 is None: t0 = time.monotonic()
    else: total += n     # bytes after the first read, over the time after it
    t1 = time.monotonic()
print(int(total * 8 / (t1 - t0)))' >"$out" &
  local server=$!
  sleep 0.5
  "$netns" exec 0 python3 -c '
import socket, sys, time
c = socket.create_connection(("10.77.0.2", 5201), timeout=10)
block = b"\0" * (1 << 20); end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end: c.sendall(block)
c.close()' "$secs"
  wait "$server"
  cat "$out"
  rm -f "$out"
}

"$netns" up 2 --rate "$rate" >/dev/null
"$netns" up 2 --rate "$rate" >/dev/null   # idempotent: second `up` replaces the first
cap=$(rate_bits "$rate")
got=$(measure 3)
echo "tbf $rate: measured $(python3 -c "print(f'{$got/1e6:.0f} Mbit/s = {$got/$cap:.3f} x cap')")"
if ((got > cap * 105 / 100)); then
  echo "FAIL: goodput above the cap"
  exit 1
fi
if ((got <= 0)); then
  echo "FAIL: nothing received"
  exit 1
fi

"$netns" up 2 >/dev/null
free=$(measure 3)
echo "no cap: measured $(python3 -c "print(f'{$free/1e6:.0f} Mbit/s')")"

"$netns" down
left=$(ip netns list | awk '{print $1}' | grep -cE '^dtns([0-9]+|br)$' || true)
if [[ $left -ne 0 ]]; then
  echo "FAIL: $left namespaces left after down"
  exit 1
fi
echo PASS
