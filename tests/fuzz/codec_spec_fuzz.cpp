// libFuzzer target for codec spec parsing (make_codec). Any string must yield a codec or
// an error, never a crash; a codec it yields must round-trip its own spec() and encode
// and decode a small buffer.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "dtrain/codec/registry.h"
#include "fuzz_contract.h"

namespace {
[[noreturn]] void fail(const char* what) {
  dtrain::fuzz::contract_violated("codec_spec_fuzz", what);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string spec(reinterpret_cast<const char*>(data), size);
  auto c = dtrain::codec::make_codec(spec);
  if (!c.ok()) return 0;
  auto again = dtrain::codec::make_codec((*c)->spec());
  if (!again.ok() || (*again)->spec() != (*c)->spec()) fail("spec() does not round-trip");
  // Shaped codecs (PowerSGD) reject other sizes with an error; that is fine.
  const std::size_t n = 16;
  if ((*c)->max_encoded_bytes(n) > (std::size_t{1} << 20)) return 0;
  std::vector<float> x(n), y(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(i) * 0.25f - 1.0f;
  std::vector<std::byte> buf((*c)->max_encoded_bytes(n));
  auto w = (*c)->encode(x, buf);
  if (!w.ok()) return 0;
  if (!(*c)->decode(std::span(buf).first(*w), y).ok()) fail("a codec cannot decode its own payload");
  return 0;
}
