#!/usr/bin/env bash
# Runs the libFuzzer + ASan/UBSan targets of tests/fuzz/: codec payload decoding for
# `seconds` less a third, optimizer-state blobs and codec specs for half of it each, then
# the collectives' wire formats (net_collective_fuzz for a third, net_message_fuzz for a
# sixth: 30 s of the default 60), TOPLOC proofs and envelopes for the sixth taken
# from codec decoding, and shard manifests and chunk decoding for another sixth taken
# from codec decoding (the total stays what it was).
# Usage: scripts/fuzz.sh [seconds]   (default 60). Configures a clang build in build-fuzz
# (override with BUILD_DIR=...), seeds scratch corpora from tests/fuzz/corpus,
# tests/fuzz/net_corpus, tests/fuzz/toploc_corpus and tests/fuzz/shard_corpus plus fresh
# payloads of every registered codec and messages of honest collective runs, and exits non-zero if a fuzzer finds a crash, leak, sanitizer
# report or contract violation; the crashing input lands in tests/fuzz/crashes/
# (reproduce: build-fuzz/tests/fuzz/<target> <file>).
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build-fuzz}"
crashes="$root/tests/fuzz/crashes"
work="$build/fuzz-work"

CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
  -DDTRAIN_FUZZ=ON -DDTRAIN_SANITIZE=ON -DDTRAIN_BUILD_TESTS=ON -DDTRAIN_BUILD_BENCH=OFF \
  -DDTRAIN_BUILD_EXAMPLES=OFF -DDTRAIN_CUDA=OFF -DDTRAIN_INSTALL=OFF >/dev/null
ninja -C "$build" -j"${JOBS:-$(nproc)}" codec_decode_fuzz codec_fuzz_make_corpus optim_state_fuzz codec_spec_fuzz \
  net_message_fuzz net_collective_fuzz net_fuzz_make_corpus shared_state_fuzz tcp_frame_fuzz membership_message_fuzz \
  toploc_proof_fuzz shard_manifest_fuzz

rm -rf "$work"
mkdir -p "$work/corpus" "$crashes"
if compgen -G "$root/tests/fuzz/corpus/*" >/dev/null; then
  cp "$root"/tests/fuzz/corpus/* "$work/corpus/"
fi
"$build/tests/fuzz/codec_fuzz_make_corpus" "$work/corpus"

# run NAME SECONDS CORPUS: one fuzzer for a bounded time; any finding fails the script.
run() {
  local status=0
  "$build/tests/fuzz/$1" "$3" -max_total_time="$2" -max_len=65536 -rss_limit_mb=2048 -timeout=25 \
    -artifact_prefix="$crashes/$1-" -print_final_stats=1 || status=$?
  if [ "$status" -ne 0 ]; then
    echo "fuzz.sh: $1 failed (exit $status); see $crashes/" >&2
    exit "$status"
  fi
}
mkdir -p "$work/optim" "$work/spec" "$work/netcoll" "$work/netmsg" "$work/state" "$work/tcp" "$work/memb" "$work/toploc" \
  "$work/shard"
cp "$root"/tests/fuzz/shard_corpus/* "$work/shard/"
cp "$root"/tests/fuzz/toploc_corpus/* "$work/toploc/"
cp "$root"/tests/fuzz/tcp_corpus/* "$work/tcp/"
cp "$root"/tests/fuzz/spec_corpus/* "$work/spec/"
cp "$root"/tests/fuzz/net_corpus/* "$work/netcoll/"
"$build/tests/fuzz/net_fuzz_make_corpus" "$work/netcoll" "$work/netmsg"
half=$(( (seconds + 1) / 2 ))
net_coll=$(( (seconds + 2) / 3 ))
net_msg=$(( (seconds + 5) / 6 ))
codec=$(( seconds - 2 * net_msg > 0 ? seconds - 2 * net_msg : 1 ))
run codec_decode_fuzz "$codec" "$work/corpus"
run optim_state_fuzz "$half" "$work/optim"
run codec_spec_fuzz "$half" "$work/spec"
run net_collective_fuzz "$net_coll" "$work/netcoll"
run net_message_fuzz "$net_msg" "$work/netmsg"
# Issue 4's decoders: TCP frames (a live transport fed a fuzzed peer) for a third,
# shared-state manifests and membership messages for a sixth each.
run tcp_frame_fuzz "$net_coll" "$work/tcp"
run shared_state_fuzz "$net_msg" "$work/state"
run membership_message_fuzz "$net_msg" "$work/memb"
# Issue 5: TOPLOC proof parsers and signed envelopes, a sixth (taken from codec decoding).
run toploc_proof_fuzz "$net_msg" "$work/toploc"
# Issue 6: shard manifests and the verifying chunk decoder, a sixth (taken from codec decoding).
run shard_manifest_fuzz "$net_msg" "$work/shard"
echo "fuzz.sh: no finding in ${codec}s + 2 x ${half}s + 2 x ${net_coll}s + 5 x ${net_msg}s"
