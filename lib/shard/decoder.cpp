// The streaming, verifying decoder (docs/shard.md "Decoding").
#include "dtrain/shard/decoder.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "dtrain/crypto/constant_time.h"
#include "dtrain/shard/delta.h"

namespace dtrain::shard {

result<decoder> decoder::create(const manifest& man, std::span<std::byte> out) {
  if (out.size() != man.total_size)
    return invalid_argument("decoder: the output holds " + std::to_string(out.size()) + " bytes, the checkpoint " +
                            std::to_string(man.total_size));
  return make(man, out, nullptr, std::nullopt);
}

result<decoder> decoder::create(const manifest& man, write_fn write) {
  if (!write) return invalid_argument("decoder: empty write function");
  return make(man, {}, std::move(write), std::nullopt);
}

result<decoder> decoder::create(const manifest& man, std::span<std::byte> out, std::span<const std::byte> base) {
  if (out.size() != man.total_size)
    return invalid_argument("decoder: the output holds " + std::to_string(out.size()) + " bytes, the checkpoint " +
                            std::to_string(man.total_size));
  return make(man, out, nullptr, base);
}

result<decoder> decoder::create(const manifest& man, write_fn write, std::span<const std::byte> base) {
  if (!write) return invalid_argument("decoder: empty write function");
  return make(man, {}, std::move(write), base);
}

result<decoder> decoder::make(const manifest& man, std::span<std::byte> out, write_fn write,
                              std::optional<std::span<const std::byte>> base) {
  if (auto st = check_manifest(man); !st.ok()) return invalid_argument("decoder: " + st.message());
  if (man.delta != delta_codec::none && !base)
    return failed_precondition("decoder: the manifest is delta-coded against version " +
                               std::to_string(man.delta_base) + ": create the decoder with that version's bytes");
  auto layout = manifest_stripes(man);
  if (!layout.ok()) return invalid_argument("decoder: " + layout.status().message());
  decoder d;
  d.man_ = man;
  d.layout_ = std::move(*layout);
  if (d.layout_.m > 0) {
    auto code = rs_code::create(d.layout_.k, d.layout_.m);
    if (!code.ok()) return std::move(code).status();
    d.code_.emplace(std::move(*code));
  }
  d.out_ = out;
  d.write_ = std::move(write);
  if (man.delta != delta_codec::none) d.base_ = *base;
  d.have_.assign(man.total_chunks(), 0);
  d.kept_.resize(d.layout_.m > 0 ? man.total_chunks() : 0);
  d.stripe_held_.resize(d.layout_.stripes());
  d.stripe_done_.assign(d.layout_.stripes(), 0);
  d.stripe_bad_.assign(d.layout_.stripes(), 0);
  for (std::size_t s = 0; s < d.layout_.stripes(); ++s)
    d.stripe_held_[s] = d.layout_.k - d.layout_.stripe_data_count(s);  // the virtual zero chunks
  d.data_left_ = man.chunks.size();
  return d;
}

std::size_t decoder::stripe_of(std::size_t i) const noexcept {
  return i < layout_.data_chunks ? i / layout_.k : (i - layout_.data_chunks) / layout_.m;
}

status decoder::write(std::size_t data_index, std::span<const std::byte> bytes) {
  const data_chunk_entry& c = man_.chunks[data_index];
  if (write_) return write_(c.offset, bytes);
  std::memcpy(out_.data() + c.offset, bytes.data(), bytes.size());
  return {};
}

result<std::span<const std::byte>> decoder::plain(std::size_t i, std::span<const std::byte> wire) {
  if (!man_.delta_coded(i)) return wire;
  const data_chunk_entry& c = man_.chunks[i];
  scratch_.resize(static_cast<std::size_t>(c.length));
  if (auto st = delta_decode_chunk(wire, base_, c.offset, scratch_); !st.ok())
    return data_loss("chunk " + std::to_string(i) + ": " + st.message() + "; nothing written");
  if (!crypto::constant_time_equal(hash_chunk(man_.algo, scratch_), c.digest))
    return data_loss("chunk " + std::to_string(i) + " passes its wire digest but decodes against base version " +
                     std::to_string(man_.delta_base) +
                     " to bytes that fail its plain digest (the wrong base?); nothing written");
  return std::span<const std::byte>(scratch_);
}

status decoder::check_shape(std::size_t chunk_index, std::span<const std::byte> bytes) const {
  if (chunk_index >= have_.size())
    return out_of_range("chunk index " + std::to_string(chunk_index) + " out of range: the manifest has " +
                        std::to_string(have_.size()) + " chunks");
  const std::uint64_t expected = man_.chunk_length(chunk_index);
  if (bytes.size() != expected)
    return data_loss("chunk " + std::to_string(chunk_index) + " holds " + std::to_string(bytes.size()) +
                     " bytes, the manifest says " + std::to_string(expected) + "; nothing written");
  return {};
}

status decoder::add_chunk(std::size_t chunk_index, std::span<const std::byte> bytes) {
  // Verify before use: length and digest first, nothing touched until both match.
  DTRAIN_RETURN_IF_ERROR(check_shape(chunk_index, bytes));
  return add_hashed(chunk_index, bytes, hash_chunk(man_.algo, bytes));
}

std::vector<status> decoder::add_chunks(std::span<const chunk_input> chunks) {
  std::vector<status> out(chunks.size());
  std::vector<std::size_t> which;
  std::vector<std::span<const std::byte>> views;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    out[i] = check_shape(chunks[i].index, chunks[i].bytes);
    if (!out[i].ok()) continue;
    which.push_back(i);
    views.push_back(chunks[i].bytes);
  }
  std::vector<chunk_digest> digests(views.size());
  hash_chunks(man_.algo, views, digests);
  for (std::size_t j = 0; j < which.size(); ++j) out[which[j]] = add_hashed(chunks[which[j]].index, views[j], digests[j]);
  return out;
}

// `got` is hash_chunk(man_.algo, bytes), computed by the caller; shape already checked.
status decoder::add_hashed(std::size_t chunk_index, std::span<const std::byte> bytes, const chunk_digest& got) {
  if (!crypto::constant_time_equal(got, man_.digest(chunk_index)))
    return data_loss("chunk " + std::to_string(chunk_index) + " fails its " + std::string(hash_algo_name(man_.algo)) +
                     " check against the manifest; nothing written");

  const bool coded = layout_.m > 0;
  const std::size_t s = coded ? stripe_of(chunk_index) : 0;
  if (have_[chunk_index] != 0) {
    // A duplicate. A rebuild that a failed write interrupted may be retried here.
    if (coded && stripe_done_[s] == 0) return try_rebuild(s);
    return {};
  }
  if (chunk_index < man_.chunks.size()) {
    auto decoded = plain(chunk_index, bytes);
    if (!decoded.ok()) return std::move(decoded).status();
    DTRAIN_RETURN_IF_ERROR(write(chunk_index, *decoded));
    have_[chunk_index] = 1;
    --data_left_;
    if (!coded || stripe_done_[s] != 0) return {};
    ++stripe_held_[s];
    const std::size_t first = layout_.stripe_first(s);
    const std::size_t count = layout_.stripe_data_count(s);
    bool all = true;
    for (std::size_t i = first; i < first + count; ++i) all = all && have_[i] != 0;
    if (all) {
      stripe_done_[s] = 1;
      for (std::size_t j = 0; j < layout_.m; ++j) std::vector<std::byte>().swap(kept_[layout_.parity_index(s, j)]);
      for (std::size_t i = first; i < first + count; ++i) std::vector<std::byte>().swap(kept_[i]);
      return {};
    }
    if (keep_wire(chunk_index)) kept_[chunk_index].assign(bytes.begin(), bytes.end());
    return try_rebuild(s);
  }
  // A parity chunk: only useful while its stripe is incomplete.
  have_[chunk_index] = 1;
  if (stripe_done_[s] != 0) return {};
  ++stripe_held_[s];
  kept_[chunk_index].assign(bytes.begin(), bytes.end());
  return try_rebuild(s);
}

status decoder::try_rebuild(std::size_t s) {
  const std::size_t k = layout_.k;
  if (stripe_held_[s] < k || stripe_bad_[s] != 0) return {};
  const std::size_t first = layout_.stripe_first(s);
  const std::size_t count = layout_.stripe_data_count(s);
  const std::size_t len = static_cast<std::size_t>(layout_.stripe_length[s]);

  // The first k held chunks, stripe-local indices: data (virtual zero chunks included)
  // before parity; each padded to the stripe length.
  std::vector<std::size_t> present;
  std::vector<std::size_t> missing;
  present.reserve(k);
  for (std::size_t i = 0; i < k; ++i) {
    if (i >= count || have_[first + i] != 0) {
      if (present.size() < k) present.push_back(i);
    } else {
      missing.push_back(i);
    }
  }
  for (std::size_t j = 0; j < layout_.m && present.size() < k; ++j)
    if (have_[layout_.parity_index(s, j)] != 0) present.push_back(k + j);
  DTRAIN_ASSERT(present.size() == k);
  if (missing.empty()) return {};

  std::vector<std::byte> buf((k + missing.size()) * len, std::byte{0});
  std::vector<std::span<const std::byte>> in(k);
  std::vector<std::span<std::byte>> out(missing.size());
  for (std::size_t p = 0; p < k; ++p) {
    std::byte* dst = buf.data() + p * len;
    const std::size_t local = present[p];
    std::span<const std::byte> src;
    if (local >= k) {
      src = kept_[layout_.parity_index(s, local - k)];
    } else if (local < count) {
      const data_chunk_entry& c = man_.chunks[first + local];
      if (keep_wire(first + local)) {
        src = kept_[first + local];
      } else if (write_ != nullptr) {  // read back what write_fn wrote
        DTRAIN_RETURN_IF_ERROR(read_(c.offset, std::span<std::byte>(dst, static_cast<std::size_t>(c.length))));
      } else {
        src = out_.subspan(static_cast<std::size_t>(c.offset), static_cast<std::size_t>(c.length));
      }
    }
    if (!src.empty()) std::memcpy(dst, src.data(), src.size());
    in[p] = std::span<const std::byte>(dst, len);
  }
  for (std::size_t j = 0; j < missing.size(); ++j) out[j] = std::span(buf).subspan((k + j) * len, len);
  DTRAIN_RETURN_IF_ERROR(code_->reconstruct(present, in, missing, out));

  // Verify every rebuilt chunk (digest of its real length, zero padding) before writing.
  std::vector<std::span<const std::byte>> rebuilt(missing.size());
  for (std::size_t j = 0; j < missing.size(); ++j)
    rebuilt[j] = out[j].first(static_cast<std::size_t>(man_.chunk_length(first + missing[j])));
  std::vector<chunk_digest> digests(missing.size());
  hash_chunks(man_.algo, rebuilt, digests);
  for (std::size_t j = 0; j < missing.size(); ++j) {
    const std::size_t idx = first + missing[j];
    const bool pad_zero = std::all_of(out[j].begin() + static_cast<std::ptrdiff_t>(rebuilt[j].size()), out[j].end(),
                                      [](std::byte b) { return b == std::byte{0}; });
    if (!pad_zero || !crypto::constant_time_equal(digests[j], man_.digest(idx))) {
      stripe_bad_[s] = 1;  // never rebuild this stripe again: only its data chunks complete it
      return data_loss("stripe " + std::to_string(s) + ": parity rebuilds chunk " + std::to_string(idx) +
                       " with the wrong digest (the manifest's parity is inconsistent with its data); nothing "
                       "written, fetch the data chunks themselves");
    }
  }
  // Delta-coded chunks are decoded (and checked against their plain digests) before any
  // of the stripe's chunks is written: a wrong base writes nothing.
  std::vector<std::vector<std::byte>> decoded(missing.size());
  for (std::size_t j = 0; j < missing.size(); ++j) {
    const std::size_t idx = first + missing[j];
    if (!man_.delta_coded(idx)) continue;
    auto p = plain(idx, out[j].first(static_cast<std::size_t>(man_.chunk_length(idx))));
    if (!p.ok()) return std::move(p).status();
    decoded[j].assign(p->begin(), p->end());
  }
  for (std::size_t j = 0; j < missing.size(); ++j) {
    const std::size_t idx = first + missing[j];
    const auto bytes = man_.delta_coded(idx) ? std::span<const std::byte>(decoded[j])
                                             : std::span<const std::byte>(out[j].first(
                                                   static_cast<std::size_t>(man_.chunk_length(idx))));
    DTRAIN_RETURN_IF_ERROR(write(idx, bytes));
    have_[idx] = 1;
    --data_left_;
    // A later write of this rebuild may fail; the retry then uses this chunk as a source,
    // so keep its wire bytes wherever sources come from kept copies.
    if (keep_wire(idx)) {
      const auto wire = out[j].first(static_cast<std::size_t>(man_.chunk_length(idx)));
      kept_[idx].assign(wire.begin(), wire.end());
    }
  }
  stripe_done_[s] = 1;
  for (std::size_t j = 0; j < layout_.m; ++j) std::vector<std::byte>().swap(kept_[layout_.parity_index(s, j)]);
  for (std::size_t i = first; i < first + count; ++i) std::vector<std::byte>().swap(kept_[i]);
  return {};
}

std::vector<std::size_t> decoder::missing_chunks() const {
  std::vector<std::size_t> out;
  if (layout_.m == 0) {
    for (std::size_t i = 0; i < man_.chunks.size(); ++i)
      if (have_[i] == 0) out.push_back(i);
    return out;
  }
  for (std::size_t s = 0; s < layout_.stripes(); ++s) {
    if (stripe_done_[s] != 0) continue;
    // held >= k on an incomplete stripe: a write failed during its rebuild, or its parity
    // is inconsistent; list every missing data chunk (adding any held chunk again retries
    // an interrupted rebuild).
    // A stripe with inconsistent parity needs all of its data chunks.
    std::size_t need = stripe_held_[s] < layout_.k && stripe_bad_[s] == 0 ? layout_.k - stripe_held_[s] : layout_.k;
    const std::size_t first = layout_.stripe_first(s);
    for (std::size_t i = first; i < first + layout_.stripe_data_count(s) && need > 0; ++i)
      if (have_[i] == 0) {
        out.push_back(i);
        --need;
      }
  }
  return out;
}

}  // namespace dtrain::shard
