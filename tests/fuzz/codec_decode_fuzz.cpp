// libFuzzer target for payload decoding. Input byte 0 picks the mode: bit 0 set means the
// rest is re-sealed (fresh checksum) before decoding, so mutations get past the frame
// checksum into each codec's parameter and body validation; bits 1-2 pick the weight.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "dtrain/codec/payload.h"
#include "dtrain/codec/registry.h"
#include "fuzz_contract.h"

namespace {

using namespace dtrain;
using namespace dtrain::codec;

// Larger counts are legal but would only measure the allocator.
constexpr std::uint64_t max_count = std::uint64_t{1} << 20;
constexpr float sentinel = 7.0f;

[[noreturn]] void fail(const char* what) {
  dtrain::fuzz::contract_violated("codec_decode_fuzz", what);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

bool untouched(const std::vector<float>& v, float fill) {
  for (float x : v)
    if (std::memcmp(&x, &fill, sizeof x) != 0) return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t mode = data[0];
  std::vector<std::byte> payload(size - 1);
  if (size > 1) std::memcpy(payload.data(), data + 1, size - 1);
  if ((mode & 1) && payload.size() >= payload_header_bytes) seal_payload(payload);
  constexpr std::array<float, 4> weights = {1.0f, -1.0f, 0.5f, 0.0f};
  const float w = weights[(mode >> 1) & 3];

  auto count = payload_count(payload);
  if (!count.ok()) {
    std::vector<float> none;
    if (decode_any(payload, none).ok()) fail("decode_any accepted a payload payload_count rejects");
    return 0;
  }
  if (*count > max_count) return 0;
  const std::size_t n = static_cast<std::size_t>(*count);

  std::vector<float> any(n, sentinel);
  const status st_any = decode_any(payload, any);
  if (!st_any.ok() && !untouched(any, sentinel)) fail("decode_any wrote its output on error");

  auto dec = make_decoder(payload);
  if (!dec.ok()) {
    if (st_any.ok()) fail("decode_any succeeded where make_decoder failed");
    return 0;
  }
  const dtrain::codec::codec& c = **dec;

  std::vector<float> out(n, sentinel);
  const status st = c.decode(payload, out);
  if (st.ok() != st_any.ok()) fail("decode and decode_any disagree");
  if (!st.ok() && !untouched(out, sentinel)) fail("decode wrote its output on error");
  if (st.ok() && !same_bits(out, any)) fail("decode and decode_any differ");

  std::vector<float> acc(n, 0.5f);
  const status st_acc = c.decode_accumulate(payload, acc, w);
  if (st_acc.ok() != st.ok()) fail("decode and decode_accumulate disagree");
  if (!st_acc.ok() && !untouched(acc, 0.5f)) fail("decode_accumulate wrote its output on error");
  if (st_acc.ok()) {
    std::vector<float> ref(n, 0.5f);
    for (std::size_t i = 0; i < n; ++i) ref[i] += w * out[i];
    if (!same_bits(acc, ref)) fail("decode_accumulate != acc + w * decode");
  }

  // A wrong output size is an error, never an out-of-bounds access.
  std::vector<float> wrong(n + 1, sentinel);
  if (c.decode(payload, wrong).ok()) fail("decode accepted an output span of the wrong size");
  if (!untouched(wrong, sentinel)) fail("decode wrote a wrong-size output");

  // The decoder's spec() rebuilds a codec that decodes the payload the same way.
  auto again = make_codec(c.spec());
  if (!again.ok()) fail("make_codec(decoder.spec()) failed");
  std::vector<float> out2(n, sentinel);
  const status st2 = (*again)->decode(payload, out2);
  if (st2.ok() != st.ok() || (st.ok() && !same_bits(out, out2)))
    fail("a codec rebuilt from the decoder's spec decodes differently");
  return 0;
}
