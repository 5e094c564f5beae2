// lib/shard/encode_detail.h: what the one-shot encoder (encoder.cpp) and the streaming
// encoder (stream_encoder.cpp) share so that they accept the same options, fail with the
// same codes and fill the same manifest header. Not installed.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/shard/chunker.h"
#include "dtrain/shard/encoder.h"
#include "dtrain/shard/manifest.h"

namespace dtrain::shard::encode_detail {

/// The option checks that are not the chunk plan's or the stripes' (those come from
/// plan_* with their own messages): a known hash algorithm and, with delta_base, a base
/// version in 1..version-1 and a zstd level zstd accepts. invalid_argument, prefixed `who`.
inline status check_options(const encode_options& opts, std::string_view who) {
  if (!is_known_hash_algo(static_cast<std::uint8_t>(opts.algo)))
    return invalid_argument(std::string(who) + ": unknown hash algorithm " +
                            std::to_string(static_cast<int>(opts.algo)));
  if (opts.delta_base) {
    if (opts.delta_base->version == 0 || opts.delta_base->version >= opts.version)
      return invalid_argument(std::string(who) + ": delta base version " + std::to_string(opts.delta_base->version) +
                              " is not in 1.." + std::to_string(opts.version) + " - 1");
    DTRAIN_RETURN_IF_ERROR(check_zstd_level(opts.zstd_level));
  }
  return {};
}

/// The tensor table of a tensor checkpoint: each tensor with its offset (`offsets` from
/// tensor_offsets(tensors), tensors.size() + 1 values).
inline std::vector<tensor_entry> tensor_table(std::span<const tensor_desc> tensors,
                                              std::span<const std::uint64_t> offsets) {
  std::vector<tensor_entry> table;
  table.reserve(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i)
    table.push_back({tensors[i].name, tensors[i].dtype, tensors[i].shape, offsets[i], tensors[i].size});
  return table;
}

/// A manifest with the header fields that follow from the options and the size alone
/// (version, time, sizes, algorithm, tensor table); chunk tables, k, m, delta fields and
/// the Merkle root are left to the encoder.
inline manifest manifest_header(std::uint64_t total_size, const encode_options& opts,
                                std::vector<tensor_entry> tensors) {
  manifest man;
  man.version = opts.version;
  man.created_unix = opts.created_unix;
  man.total_size = total_size;
  man.chunk_size = opts.chunk_size;
  man.algo = opts.algo;
  man.tensors = std::move(tensors);
  return man;
}

}  // namespace dtrain::shard::encode_detail
