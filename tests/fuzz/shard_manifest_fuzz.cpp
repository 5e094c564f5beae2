// libFuzzer target for the shard layer's decoders: open_manifest
// (docs/formats/shard_manifest.md) and the streaming decoder's add_chunk (docs/shard.md
// "Decoding"). Input: [mode byte][payload].
//   mode bit 0 clear: open_manifest(payload) as received;
//   mode bit 0 set:   the payload is a manifest body; the fuzzer writes its own key into
//                     the origin field and appends its own signature, so the checks behind
//                     the signature (consistency, Merkle root) see arbitrary bytes too;
//   mode bit 1 set:   the payload also drives a decoder of a fixed RS(3,2) checkpoint as
//                     records [u8 chunk index][u8 flags][u16 LE length][bytes]; flag bit 0
//                     sends the true chunk instead of the bytes, bit 1 flips one byte of it.
// Aborts on a contract violation:
//   - open_manifest fails only with data_loss, unimplemented or permission_denied; a
//     manifest it opens passes check_manifest, and when the fuzzer signed it, it signs
//     back (sign_manifest) to the very same bytes and only structure or consistency
//     errors (data_loss, unimplemented) are possible;
//   - add_chunk accepts bytes only when they are the true chunk; a rejected chunk is
//     data_loss (or out_of_range for an index past the end) and is not held; whenever
//     the decoder says complete, the output equals the checkpoint.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <span>
#include <vector>

#include "dtrain/core/bytes.h"
#include "dtrain/shard/decoder.h"
#include "dtrain/shard/encoder.h"
#include "dtrain/shard/manifest.h"

namespace {

using namespace dtrain;
using namespace dtrain::shard;

[[noreturn]] void fail(const char* what, const status& st = {}) {
  std::fprintf(stderr, "shard_manifest_fuzz: contract violated: %s (%s)\n", what, st.to_string().c_str());
  std::abort();
}

const crypto::identity& fuzz_key() {
  static const crypto::identity id = [] {
    std::vector<std::byte> seed(32, std::byte{0x5a});
    return crypto::identity::from_seed(seed).value();
  }();
  return id;
}

struct fixture {
  std::vector<std::byte> data;
  encoded_checkpoint enc;
};

const fixture& checkpoint() {
  static const fixture f = [] {
    fixture x;
    x.data.resize(1000);
    for (std::size_t i = 0; i < x.data.size(); ++i) x.data[i] = static_cast<std::byte>(i * 7 + 3);
    encode_options opts;
    opts.chunk_size = 128;
    opts.k = 3;
    opts.m = 2;
    x.enc = encode(x.data, opts).value();
    return x;
  }();
  return f;
}

void fuzz_open(std::span<const std::byte> payload, bool sign) {
  std::vector<std::byte> bytes(payload.begin(), payload.end());
  if (sign) {
    // Origin key at body end - 32 when the body is long enough; then the signature.
    if (bytes.size() >= 32) std::memcpy(bytes.data() + bytes.size() - 32, fuzz_key().id().key.data(), 32);
    std::vector<std::byte> msg(manifest_signing_context.size());
    std::memcpy(msg.data(), manifest_signing_context.data(), msg.size());
    msg.insert(msg.end(), bytes.begin(), bytes.end());
    const auto sig = fuzz_key().sign(msg);
    bytes.insert(bytes.end(), sig.begin(), sig.end());
  }
  auto r = open_manifest(bytes, {});
  if (!r.ok()) {
    const auto c = r.status().code();
    if (c != status_code::data_loss && c != status_code::unimplemented && c != status_code::permission_denied)
      fail("open_manifest failed with an undocumented code", r.status());
    if (sign && c == status_code::permission_denied && bytes.size() >= manifest_header_bytes + manifest_trailer_bytes)
      fail("open_manifest refused the fuzzer's valid signature", r.status());
    return;
  }
  if (!check_manifest(*r).ok()) fail("an opened manifest fails check_manifest", check_manifest(*r));
  if (sign) {
    auto again = sign_manifest(*r, fuzz_key());
    if (!again.ok()) fail("sign_manifest refused an opened manifest", again.status());
    if (*again != bytes) fail("an opened manifest does not sign back to its bytes");
  }
}

void fuzz_decoder(std::span<const std::byte> payload) {
  const fixture& f = checkpoint();
  std::vector<std::byte> out(f.data.size());
  auto dec = decoder::create(f.enc.man, out).value();
  byte_reader r{payload};
  while (r.remaining() >= 4) {
    const std::size_t index = r.get<std::uint8_t>() % (f.enc.man.total_chunks() + 1);
    const std::uint8_t flags = r.get<std::uint8_t>();
    const std::size_t len = r.get<std::uint16_t>();
    std::vector<std::byte> chunk;
    if ((flags & 1) != 0 && index < f.enc.man.total_chunks()) {
      const auto truth = f.enc.chunk(index);
      chunk.assign(truth.begin(), truth.end());
      if ((flags & 2) != 0 && !chunk.empty()) chunk[len % chunk.size()] ^= std::byte{1};
    } else {
      const auto b = r.take(std::min(len, r.remaining()));
      chunk.assign(b.begin(), b.end());
    }
    const bool held = dec.has_chunk(index);
    const bool is_true = index < f.enc.man.total_chunks() && std::span<const std::byte>(chunk).size() ==
                             f.enc.chunk(index).size() &&
                         std::memcmp(chunk.data(), f.enc.chunk(index).data(), chunk.size()) == 0;
    const status st = dec.add_chunk(index, chunk);
    if (st.ok() && !is_true) fail("add_chunk accepted bytes that are not the chunk");
    if (!st.ok()) {
      if (is_true) fail("add_chunk rejected the true chunk", st);
      if (st.code() != status_code::data_loss && st.code() != status_code::out_of_range)
        fail("add_chunk failed with an undocumented code", st);
      if (!held && dec.has_chunk(index)) fail("a rejected chunk is held");
    }
    if (dec.complete() && out != f.data) fail("complete, but the output differs from the checkpoint");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const auto mode = static_cast<std::uint8_t>(data[0]);
  const auto payload = std::as_bytes(std::span(data + 1, size - 1));
  fuzz_open(payload, (mode & 1) != 0);
  if ((mode & 2) != 0) fuzz_decoder(payload);
  return 0;
}
