// libFuzzer target for the shard layer's decoders and parsers: open_manifest
// (docs/formats/shard_manifest.md), the streaming decoder's add_chunk and add_chunks
// (docs/shard.md "Decoding"), delta frames, and the `latest` and resume files. Input: [mode byte][payload].
//   mode bit 0 clear: open_manifest(payload) as received;
//   mode bit 0 set:   the payload is a manifest body; the fuzzer writes its own key into
//                     the origin field and appends its own signature, so the checks behind
//                     the signature (consistency, Merkle root) see arbitrary bytes too;
//   mode bit 1 set:   the payload also drives a decoder of a fixed RS(3,2) checkpoint as
//                     records [u8 chunk index][u8 flags][u16 LE length][bytes]; flag bit 0
//                     sends the true chunk instead of the bytes, bit 1 flips one byte of it,
//                     bit 2 queues the record for a batch (add_chunks, flushed at 4 records
//                     and at the end) instead of adding it at once;
//   mode bit 2 set:   the same records drive a decoder of a fixed delta-coded RS(3,2)
//                     checkpoint (format 2, docs/shard.md "Delta coding") and its base;
//   mode bit 3 set:   the payload is [u16 LE chunk length L][zstd frame]: delta_decode_chunk
//                     with the cap L against a fixed base; a frame that decodes is then
//                     put in a signed one-chunk delta manifest and fed to a decoder;
//   mode bit 4 set:   parse_latest(payload) (the `latest` and client `stable` files,
//                     docs/formats/shard_layout.md);
//   mode bit 5 set:   parse_resume(payload) (docs/formats/shard_resume.md).
// The signing mode (bit 0) signs with the context of the format the payload's bytes 4..5 name.
// Aborts on a contract violation:
//   - open_manifest fails only with data_loss, unimplemented or permission_denied; a
//     manifest it opens passes check_manifest, and when the fuzzer signed it, it signs
//     back (sign_manifest) to the very same bytes and only structure or consistency
//     errors (data_loss, unimplemented) are possible;
//   - add_chunk accepts bytes only when they are the true chunk; a rejected chunk is
//     data_loss (or out_of_range for an index past the end) and is not held; whenever
//     the decoder says complete, the output equals the checkpoint (delta-coded too);
//     add_chunks returns one status per record under the same acceptance rules;
//   - delta_decode_chunk fails only with data_loss; a frame it decodes is accepted by a
//     decoder whose manifest states the decoded bytes' digest, which then writes exactly
//     those bytes, and rejected (data_loss) when the plain digest is any other;
//   - parse_latest fails only with data_loss, parse_resume with data_loss or (a newer
//     format version) unimplemented, and what they accept
//     formats back (format_latest, encode_resume) to exactly the input bytes.
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
#include "dtrain/shard/delta.h"
#include "dtrain/shard/encoder.h"
#include "dtrain/shard/layout.h"
#include "dtrain/shard/manifest.h"
#include "dtrain/shard/resume.h"
#include "fuzz_contract.h"

namespace {

using namespace dtrain;
using namespace dtrain::shard;

[[noreturn]] void fail(const char* what, const status& st = {}) {
  dtrain::fuzz::contract_violated("shard_manifest_fuzz", what, st);
}

const crypto::identity& fuzz_key() { return dtrain::fuzz::fixed_identity<crypto::identity>(0x5a); }

struct fixture {
  std::vector<std::byte> data;
  encoded_checkpoint enc;
};

// A delta-coded RS(3,2) checkpoint of 1000 bytes against a 900-byte base; chunk 2 is
// changed beyond recognition (travels raw).
struct delta_fixture {
  std::vector<std::byte> base;
  std::vector<std::byte> data;
  encoded_checkpoint enc;
};

const delta_fixture& delta_checkpoint() {
  static const delta_fixture f = [] {
    delta_fixture x;
    x.base.resize(900);
    for (std::size_t i = 0; i < x.base.size(); ++i) x.base[i] = static_cast<std::byte>((i * 131 + 17) ^ (i >> 3));
    x.data.resize(1000);
    for (std::size_t i = 0; i < x.data.size(); ++i)
      x.data[i] = (i < x.base.size() ? x.base[i] : std::byte{0}) ^ static_cast<std::byte>(i % 37 == 0 ? 1 : 0);
    for (std::size_t i = 256; i < 384; ++i) x.data[i] = static_cast<std::byte>((i * i * 2654435761u) >> 13);
    encode_options opts;
    opts.chunk_size = 128;
    opts.k = 3;
    opts.m = 2;
    opts.version = 9;
    opts.delta_base = delta_reference{8, x.base};
    x.enc = encode(x.data, opts).value();
    return x;
  }();
  return f;
}

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
    const std::uint16_t format = bytes.size() >= 6 ? load_le<std::uint16_t>(bytes.data() + 4) : 1;
    const std::string_view context = manifest_signing_context_for(format);
    std::vector<std::byte> msg(context.size());
    std::memcpy(msg.data(), context.data(), msg.size());
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

void fuzz_decoder(std::span<const std::byte> payload, bool delta) {
  const fixture& plain_f = checkpoint();
  const delta_fixture& delta_f = delta_checkpoint();
  struct view {
    const std::vector<std::byte>& data;
    const encoded_checkpoint& enc;
  } f = delta ? view{delta_f.data, delta_f.enc} : view{plain_f.data, plain_f.enc};
  std::vector<std::byte> out(f.data.size());
  auto dec = (delta ? decoder::create(f.enc.man, out, delta_f.base) : decoder::create(f.enc.man, out)).value();
  struct queued {
    std::size_t index;
    std::vector<std::byte> bytes;
    bool is_true;
  };
  std::vector<queued> batch;
  const auto check = [&](const status& st, bool is_true) {
    if (st.ok() && !is_true) fail("add_chunk accepted bytes that are not the chunk");
    if (!st.ok()) {
      if (is_true) fail("add_chunk rejected the true chunk", st);
      if (st.code() != status_code::data_loss && st.code() != status_code::out_of_range)
        fail("add_chunk failed with an undocumented code", st);
    }
  };
  const auto flush = [&] {
    std::vector<decoder::chunk_input> in;
    for (const auto& q : batch) in.push_back({q.index, q.bytes});
    const auto st = dec.add_chunks(in);
    if (st.size() != batch.size()) fail("add_chunks returned the wrong number of statuses");
    for (std::size_t i = 0; i < batch.size(); ++i) check(st[i], batch[i].is_true);
    batch.clear();
    if (dec.complete() && out != f.data) fail("complete, but the output differs from the checkpoint");
  };
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
    if ((flags & 4) != 0) {
      batch.push_back({index, std::move(chunk), is_true});
      if (batch.size() == 4) flush();
      continue;
    }
    const status st = dec.add_chunk(index, chunk);
    check(st, is_true);
    if (!st.ok() && !held && dec.has_chunk(index)) fail("a rejected chunk is held");
    if (dec.complete() && out != f.data) fail("complete, but the output differs from the checkpoint");
  }
  flush();
}

// The fixed base of the frame mode: longer than some caps, shorter than others.
const std::vector<std::byte>& frame_base() {
  static const std::vector<std::byte> b = [] {
    std::vector<std::byte> v(2048);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::byte>(i * 29 + (i >> 5));
    return v;
  }();
  return b;
}

void fuzz_frame(std::span<const std::byte> payload) {
  if (payload.size() < 2) return;
  const std::size_t cap = std::size_t{load_le<std::uint16_t>(payload.data())} % 8192 + 1;
  const auto frame = payload.subspan(2);
  std::vector<std::byte> out(cap);
  const status st = delta_decode_chunk(frame, frame_base(), 0, out);
  if (!st.ok()) {
    if (st.code() != status_code::data_loss) fail("delta_decode_chunk failed with an undocumented code", st);
    return;
  }
  // Wire bytes must be 1..L-1 for a delta-coded chunk; otherwise there is no manifest to build.
  if (frame.empty() || frame.size() >= cap) return;
  manifest man;
  man.version = 2;
  man.delta_base = 1;
  man.delta = delta_codec::xor_zstd;
  man.total_size = cap;
  man.chunk_size = cap;
  man.chunks.push_back({0, cap, hash_chunk(hash_algo::blake2b_256, out)});
  man.delta_chunks.push_back({chunk_encoding::xor_zstd, frame.size(), hash_chunk(hash_algo::blake2b_256, frame)});
  man.merkle_root = manifest_merkle_root(man);
  auto opened = open_manifest(sign_manifest(man, fuzz_key()).value(), {});
  if (!opened.ok()) fail("a one-chunk delta manifest does not open", opened.status());
  std::vector<std::byte> got(cap);
  auto dec = decoder::create(*opened, got, frame_base()).value();
  const status add = dec.add_chunk(0, frame);
  if (!add.ok()) fail("the decoder rejected a frame that decodes to the stated digest", add);
  if (!dec.complete() || got != out) fail("the decoder wrote other bytes than the frame decodes to");
  // Any other plain digest: data_loss, nothing held.
  man.chunks[0].digest[0] ^= std::byte{1};
  std::vector<std::byte> got2(cap);
  auto dec2 = decoder::create(man, got2, frame_base()).value();
  const status bad = dec2.add_chunk(0, frame);
  if (bad.code() != status_code::data_loss || dec2.has_chunk(0)) fail("a wrong plain digest was not data_loss", bad);
}

void fuzz_small_files(std::span<const std::byte> payload, bool latest, bool resume) {
  if (latest) {
    auto v = parse_latest(payload);
    if (!v.ok() && v.status().code() != status_code::data_loss) fail("parse_latest: undocumented code", v.status());
    if (v.ok()) {
      const std::string again = format_latest(*v);
      if (!std::equal(payload.begin(), payload.end(), reinterpret_cast<const std::byte*>(again.data()),
                      reinterpret_cast<const std::byte*>(again.data()) + again.size()))
        fail("parse_latest accepted bytes that format_latest does not write");
    }
  }
  if (resume) {
    auto r = parse_resume(payload);
    if (!r.ok() && r.status().code() != status_code::data_loss && r.status().code() != status_code::unimplemented)
      fail("parse_resume: undocumented code", r.status());
    if (r.ok() && encode_resume(*r) != std::vector<std::byte>(payload.begin(), payload.end()))
      fail("parse_resume accepted bytes that encode_resume does not write");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const auto mode = static_cast<std::uint8_t>(data[0]);
  const auto payload = std::as_bytes(std::span(data + 1, size - 1));
  fuzz_open(payload, (mode & 1) != 0);
  if ((mode & 2) != 0) fuzz_decoder(payload, false);
  if ((mode & 4) != 0) fuzz_decoder(payload, true);
  if ((mode & 8) != 0) fuzz_frame(payload);
  if ((mode & 48) != 0) fuzz_small_files(payload, (mode & 16) != 0, (mode & 32) != 0);
  return 0;
}
