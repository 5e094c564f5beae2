// libFuzzer target for the shared-state decoders (docs/formats/shared_state_messages.md):
// decode_manifest, decode_hello and decode_outcome on arbitrary bytes. A manifest that
// decodes must re-encode to exactly the same bytes (the format has one encoding per
// manifest); on error the output must be left alone; the control decoders must agree
// with the fixed 16-byte layout.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "dtrain/core/bytes.h"
#include "dtrain/net/shared_state.h"

namespace {

using namespace dtrain;
using namespace dtrain::net;

[[noreturn]] void fail(const char* what, const status& st = {}) {
  std::fprintf(stderr, "shared_state_fuzz: contract violated: %s (%s)\n", what, st.to_string().c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> msg(reinterpret_cast<const std::byte*>(data), size);

  manifest m;
  m.revision = 0xABCD;  // sentinel: must survive an error
  const status st = decode_manifest(msg, m);
  if (st.ok()) {
    std::vector<std::byte> again(encoded_manifest_bytes(m));
    auto w = encode_manifest(m, again);
    if (!w.ok()) fail("a decoded manifest does not re-encode", w.status());
    if (*w != size || std::memcmp(again.data(), data, size) != 0) fail("re-encoding differs from the input");
    for (const auto& e : m.tensors)
      if (e.chunks.size() != chunk_count(e.bytes, m.chunk_bytes)) fail("chunk list length");
  } else {
    if (st.code() != status_code::data_loss && st.code() != status_code::unimplemented) fail("unexpected code", st);
    if (m.revision != 0xABCD || !m.tensors.empty()) fail("output changed on error", st);
  }

  auto h = decode_hello(msg, std::uint64_t{1} << 30);
  if (h.ok()) {
    if (size != control_bytes) fail("hello of the wrong size accepted");
    std::array<std::byte, control_bytes> again{};
    encode_hello(again, *h);
    if (std::memcmp(again.data(), data, size) != 0) fail("hello re-encoding differs");
  }
  auto o = decode_outcome(msg);
  if (o.ok()) {
    if (size != control_bytes) fail("outcome of the wrong size accepted");
    std::array<std::byte, control_bytes> again{};
    encode_outcome(again, *o);
    if (std::memcmp(again.data(), data, size) != 0) fail("outcome re-encoding differs");
  }
  return 0;
}
