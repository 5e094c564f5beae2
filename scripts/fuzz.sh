#!/usr/bin/env bash
# Fuzzes codec payload decoding with libFuzzer + ASan/UBSan (tests/fuzz/codec_decode_fuzz.cpp).
# Usage: scripts/fuzz.sh [seconds]   (default 60). Configures a clang build in build-fuzz
# (override with BUILD_DIR=...), seeds a scratch corpus from tests/fuzz/corpus plus fresh
# payloads of every registered codec, and exits non-zero if the fuzzer finds a crash,
# leak, sanitizer report or contract violation; the crashing input lands in
# tests/fuzz/crashes/ (reproduce: build-fuzz/tests/fuzz/codec_decode_fuzz <file>).
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build-fuzz}"
crashes="$root/tests/fuzz/crashes"
work="$build/fuzz-work"

CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
  -DDTRAIN_FUZZ=ON -DDTRAIN_SANITIZE=ON -DDTRAIN_BUILD_TESTS=ON -DDTRAIN_BUILD_BENCH=OFF \
  -DDTRAIN_BUILD_EXAMPLES=OFF -DDTRAIN_CUDA=OFF -DDTRAIN_INSTALL=OFF >/dev/null
ninja -C "$build" -j"${JOBS:-$(nproc)}" codec_decode_fuzz codec_fuzz_make_corpus optim_state_fuzz codec_spec_fuzz

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
mkdir -p "$work/optim" "$work/spec"
cp "$root"/tests/fuzz/spec_corpus/* "$work/spec/"
run codec_decode_fuzz "$seconds" "$work/corpus"
run optim_state_fuzz $(( (seconds + 1) / 2 )) "$work/optim"
run codec_spec_fuzz $(( (seconds + 1) / 2 )) "$work/spec"
echo "fuzz.sh: no finding in ${seconds}s + 2 x $(( (seconds + 1) / 2 ))s"
