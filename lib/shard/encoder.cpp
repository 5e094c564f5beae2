// One-shot checkpoint encoding: chunk plan, chunk hashes, RS parity, Merkle root
// (docs/shard.md "Encoding").
#include "dtrain/shard/encoder.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "dtrain/shard/erasure.h"
#include "dtrain/shard/merkle.h"
#include "encode_detail.h"

namespace dtrain::shard {
namespace {

result<encoded_checkpoint> encode_plan(std::span<const std::byte> bytes, std::span<const chunk_span> plan,
                                       std::vector<tensor_entry> tensors, const encode_options& opts) {
  DTRAIN_RETURN_IF_ERROR(encode_detail::check_options(opts, "encode"));

  encoded_checkpoint out;
  out.man = encode_detail::manifest_header(bytes.size(), opts, std::move(tensors));
  manifest& man = out.man;

  out.data_chunks.reserve(plan.size());
  man.chunks.reserve(plan.size());
  for (const chunk_span& c : plan) {
    out.data_chunks.push_back(bytes.subspan(static_cast<std::size_t>(c.offset), static_cast<std::size_t>(c.length)));
  }
  {
    // All digests in one call: BLAKE2b hashes four chunks at a time (hash_chunks).
    std::vector<chunk_digest> digests(plan.size());
    hash_chunks(opts.algo, out.data_chunks, digests);
    for (std::size_t i = 0; i < plan.size(); ++i) man.chunks.push_back({plan[i].offset, plan[i].length, digests[i]});
  }
  if (opts.delta_base) {
    man.delta = delta_codec::xor_zstd;
    man.delta_base = opts.delta_base->version;
    out.coded_chunks.resize(plan.size());
    man.delta_chunks.resize(plan.size());
    for (std::size_t i = 0; i < plan.size(); ++i) {
      auto coded = delta_encode_chunk(out.data_chunks[i], opts.delta_base->bytes, plan[i].offset, opts.zstd_level);
      if (!coded.ok()) return std::move(coded).status();
      delta_chunk_entry& d = man.delta_chunks[i];
      if (coded->has_value()) {
        out.coded_chunks[i] = std::move(**coded);
        d.encoding = chunk_encoding::xor_zstd;
        d.wire_length = out.coded_chunks[i].size();
        d.wire_digest = hash_chunk(opts.algo, out.coded_chunks[i]);  // lengths differ: one at a time
      } else {
        d.encoding = chunk_encoding::raw;
        d.wire_length = man.chunks[i].length;
        d.wire_digest = man.chunks[i].digest;
      }
    }
  }
  // Stripes over the lengths that travel: parity protects the bytes a receiver fetches.
  std::vector<std::uint64_t> lengths(plan.size());
  for (std::size_t i = 0; i < plan.size(); ++i) lengths[i] = man.chunk_length(i);
  auto layout = plan_stripes(lengths, opts.k, opts.m);
  if (!layout.ok()) return std::move(layout).status();
  man.k = static_cast<std::uint8_t>(layout->k);
  man.m = static_cast<std::uint8_t>(layout->m);

  if (layout->m > 0) {
    auto code = rs_code::create(layout->k, layout->m);
    if (!code.ok()) return std::move(code).status();
    const std::size_t k = layout->k;
    const std::size_t m = layout->m;
    out.parity_chunks.resize(layout->parity_chunks());
    man.parity.reserve(layout->parity_chunks());
    // Chunks shorter than their stripe are coded zero-padded: copy them into scratch.
    std::vector<std::byte> scratch;
    std::vector<std::span<const std::byte>> data(k);
    std::vector<std::span<std::byte>> parity(m);
    for (std::size_t s = 0; s < layout->stripes(); ++s) {
      const std::size_t len = static_cast<std::size_t>(layout->stripe_length[s]);
      const std::size_t first = layout->stripe_first(s);
      const std::size_t count = layout->stripe_data_count(s);
      std::size_t short_chunks = k - count;
      for (std::size_t i = 0; i < count; ++i) short_chunks += out.chunk(first + i).size() < len ? 1 : 0;
      scratch.assign(short_chunks * len, std::byte{0});
      std::size_t used = 0;
      for (std::size_t i = 0; i < k; ++i) {
        if (i < count && out.chunk(first + i).size() == len) {
          data[i] = out.chunk(first + i);
          continue;
        }
        std::byte* dst = scratch.data() + used * len;
        if (i < count && !out.chunk(first + i).empty())
          std::memcpy(dst, out.chunk(first + i).data(), out.chunk(first + i).size());
        data[i] = std::span<const std::byte>(dst, len);
        ++used;
      }
      for (std::size_t j = 0; j < m; ++j) {
        auto& buf = out.parity_chunks[s * m + j];
        buf.resize(len);
        parity[j] = buf;
      }
      DTRAIN_RETURN_IF_ERROR(code->encode(data, parity));
      std::vector<std::span<const std::byte>> views(parity.begin(), parity.end());
      std::vector<chunk_digest> digests(m);
      hash_chunks(opts.algo, views, digests);
      for (std::size_t j = 0; j < m; ++j) man.parity.push_back({s, len, digests[j]});
    }
  }
  man.merkle_root = manifest_merkle_root(man);
  if (auto st = check_manifest(man); !st.ok()) return invalid_argument("encode: " + st.message());
  return out;
}

}  // namespace

result<encoded_checkpoint> encode(std::span<const std::byte> bytes, const encode_options& opts) {
  auto plan = plan_file_chunks(bytes.size(), opts.chunk_size);
  if (!plan.ok()) return std::move(plan).status();
  return encode_plan(bytes, *plan, {}, opts);
}

result<encoded_checkpoint> encode_tensors(std::span<const tensor_desc> tensors, std::span<const std::byte> bytes,
                                          const encode_options& opts) {
  auto offsets = tensor_offsets(tensors);
  if (!offsets.ok()) return std::move(offsets).status();
  if (offsets->back() != bytes.size())
    return invalid_argument("encode_tensors: the tensors' sizes sum to " + std::to_string(offsets->back()) +
                            " bytes, the input holds " + std::to_string(bytes.size()));
  auto plan = plan_tensor_chunks(tensors, opts.chunk_size);
  if (!plan.ok()) return std::move(plan).status();
  return encode_plan(bytes, *plan, encode_detail::tensor_table(tensors, *offsets), opts);
}

}  // namespace dtrain::shard
