// Streaming checkpoint encoding: bytes in pieces, chunks out as soon as they are final,
// the same manifest as encode() (docs/shard.md "Streaming encoding").
#include "dtrain/shard/stream_encoder.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "dtrain/shard/delta.h"
#include "dtrain/shard/erasure.h"
#include "dtrain/shard/merkle.h"
#include "encode_detail.h"

namespace dtrain::shard {

struct stream_encoder::impl {
  enum class phase { open, finished, failed };

  encode_options opts;
  chunk_sink sink;
  // Filled from the plan at create(): offsets and lengths final, digests (and wire forms)
  // written as chunks and stripes complete, parity entries appended per stripe.
  manifest man;
  std::size_t k = 0;  // the layout's: 0 when m == 0
  std::size_t m = 0;
  std::optional<rs_code> code;

  // Slot i % k holds data chunk i of the current stripe (one slot when m == 0); each slot
  // is as long as the plan's longest chunk. With parity there is one slot more than the
  // data chunks when the last stripe is short: its zeros stand for the virtual chunks.
  std::size_t slot_len = 0;
  std::vector<std::byte> slots;
  std::vector<std::byte> parity;                // m chunks of slot_len
  std::vector<std::vector<std::byte>> coded;    // per slot: delta-coded bytes, empty = raw
  std::vector<std::span<const std::byte>> in;   // k (also the batch to hash)
  std::vector<std::span<std::byte>> out;        // m
  std::vector<std::span<const std::byte>> out_views;  // the same m, read-only, to hash
  std::vector<std::size_t> coded_at;            // slots whose wire bytes are delta-coded
  std::vector<chunk_digest> digests;            // max(k, m)

  std::uint64_t total = 0;
  std::uint64_t received = 0;
  std::size_t next = 0;    // the data chunk being filled
  std::size_t filled = 0;  // its bytes held in its slot
  phase state = phase::open;
  bool in_sink = false;  // a sink calling back into the encoder is refused

  std::size_t data_chunks() const noexcept { return man.chunks.size(); }
  std::byte* slot(std::size_t i) noexcept { return slots.data() + (m > 0 ? i % k : 0) * slot_len; }

  status consume(std::span<const std::byte> bytes);
  status chunk_done(std::size_t i, std::span<const std::byte> plain);
  status stripe_done(std::size_t s);
  status send(std::size_t index, std::span<const std::byte> bytes) {
    in_sink = true;
    status st = sink(index, bytes);
    in_sink = false;
    return st;
  }
};

stream_encoder::stream_encoder(std::unique_ptr<impl> p) noexcept : impl_(std::move(p)) {}
stream_encoder::stream_encoder(stream_encoder&&) noexcept = default;
stream_encoder& stream_encoder::operator=(stream_encoder&&) noexcept = default;
stream_encoder::~stream_encoder() = default;

result<stream_encoder> stream_encoder::create(std::uint64_t total_size, const encode_options& opts, chunk_sink sink) {
  auto plan = plan_file_chunks(total_size, opts.chunk_size);
  if (!plan.ok()) return std::move(plan).status();
  return make(total_size, std::move(*plan), {}, opts, std::move(sink));
}

result<stream_encoder> stream_encoder::create_tensors(std::span<const tensor_desc> tensors, const encode_options& opts,
                                                      chunk_sink sink) {
  auto offsets = tensor_offsets(tensors);
  if (!offsets.ok()) return std::move(offsets).status();
  auto plan = plan_tensor_chunks(tensors, opts.chunk_size);
  if (!plan.ok()) return std::move(plan).status();
  return make(offsets->back(), std::move(*plan), encode_detail::tensor_table(tensors, *offsets), opts,
              std::move(sink));
}

result<stream_encoder> stream_encoder::make(std::uint64_t total_size, std::vector<chunk_span> plan,
                                            std::vector<tensor_entry> tensors, const encode_options& opts,
                                            chunk_sink sink) {
  DTRAIN_RETURN_IF_ERROR(encode_detail::check_options(opts, "stream_encoder"));
  std::vector<std::uint64_t> lengths(plan.size());
  for (std::size_t i = 0; i < plan.size(); ++i) lengths[i] = plan[i].length;
  // The plain lengths give the wire layout's shape (stripe count, parity count); the
  // stripe lengths themselves wait for the wire lengths (delta coding) of each stripe.
  auto layout = plan_stripes(lengths, opts.k, opts.m);
  if (!layout.ok()) return std::move(layout).status();
  if (!sink) return invalid_argument("stream_encoder: no chunk sink");

  auto p = std::make_unique<impl>();
  p->opts = opts;
  p->total = total_size;
  p->sink = std::move(sink);
  p->k = layout->k;
  p->m = layout->m;
  manifest& man = p->man;
  man = encode_detail::manifest_header(total_size, opts, std::move(tensors));
  man.k = static_cast<std::uint8_t>(layout->k);
  man.m = static_cast<std::uint8_t>(layout->m);
  man.chunks.reserve(plan.size());
  for (const chunk_span& c : plan) man.chunks.push_back({c.offset, c.length, {}});
  if (opts.delta_base) {
    man.delta = delta_codec::xor_zstd;
    man.delta_base = opts.delta_base->version;
    man.delta_chunks.resize(plan.size());
    for (std::size_t i = 0; i < plan.size(); ++i) man.delta_chunks[i] = {chunk_encoding::raw, plan[i].length, {}};
  }
  // encode() rejects a manifest the format cannot hold (a tensor name that is not UTF-8,
  // a rank above 255) only at its end. Check a placeholder now (zero digests, every chunk
  // raw), so that this fails here and not at finish(), after every chunk went out.
  for (std::size_t s = 0; s < layout->stripes(); ++s)
    for (std::size_t j = 0; j < layout->m; ++j) man.parity.push_back({s, layout->stripe_length[s], {}});
  man.merkle_root = manifest_merkle_root(man);
  if (auto st = check_manifest(man); !st.ok()) return invalid_argument("stream_encoder: " + st.message());
  man.parity.clear();
  man.merkle_root = {};

  const std::size_t n = plan.size();
  for (const chunk_span& c : plan) p->slot_len = std::max(p->slot_len, static_cast<std::size_t>(c.length));
  std::size_t slot_count = n == 0 ? 0 : 1;
  if (p->m > 0) {
    auto code = rs_code::create(p->k, p->m);
    if (!code.ok()) return std::move(code).status();
    p->code = std::move(*code);
    slot_count = std::min(p->k, n + (n % p->k != 0 ? 1 : 0));
    man.parity.reserve(layout->parity_chunks());
    p->parity.resize(p->m * p->slot_len);
    p->in.resize(p->k);
    p->out.resize(p->m);
    p->out_views.resize(p->m);
    p->coded_at.reserve(p->k);
    p->digests.resize(std::max(p->k, p->m));
  }
  p->slots.resize(slot_count * p->slot_len);
  if (opts.delta_base) p->coded.resize(slot_count);
  return stream_encoder(std::move(p));
}

status stream_encoder::write(std::span<const std::byte> bytes) {
  if (!impl_) return failed_precondition("stream_encoder::write: the encoder was moved from");
  impl& e = *impl_;
  if (e.state == impl::phase::finished) return failed_precondition("stream_encoder::write: after finish()");
  if (e.state == impl::phase::failed) return failed_precondition("stream_encoder::write: an earlier call failed");
  if (e.in_sink) return failed_precondition("stream_encoder::write: called from the chunk sink");
  if (bytes.size() > e.total - e.received) {
    e.state = impl::phase::failed;
    return out_of_range("stream_encoder::write: " + std::to_string(bytes.size()) + " more bytes after " +
                        std::to_string(e.received) + " would pass the checkpoint's " +
                        std::to_string(e.total));
  }
  e.received += bytes.size();
  status st = e.consume(bytes);
  if (!st.ok()) e.state = impl::phase::failed;
  return st;
}

status stream_encoder::impl::consume(std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    const auto len = static_cast<std::size_t>(man.chunks[next].length);
    std::span<const std::byte> plain;
    if (m == 0 && filled == 0 && bytes.size() >= len) {
      // Without parity nothing outlives the chunk: a chunk whole in the input goes out
      // from the caller's bytes, uncopied.
      plain = bytes.first(len);
      bytes = bytes.subspan(len);
    } else {
      const std::size_t take = std::min(len - filled, bytes.size());
      std::memcpy(slot(next) + filled, bytes.data(), take);
      filled += take;
      bytes = bytes.subspan(take);
      if (filled < len) break;  // the input ends inside the chunk
      plain = std::span<const std::byte>(slot(next), len);
      filled = 0;
    }
    DTRAIN_RETURN_IF_ERROR(chunk_done(next, plain));
    ++next;
  }
  return {};
}

// Data chunk i is complete: delta-code it, and send it at once. Its digests wait for its
// stripe (one hash_chunks call) when there is parity.
status stream_encoder::impl::chunk_done(std::size_t i, std::span<const std::byte> plain) {
  std::span<const std::byte> wire = plain;
  std::vector<std::byte>* coded_bytes = nullptr;
  if (opts.delta_base) {
    auto c = delta_encode_chunk(plain, opts.delta_base->bytes, man.chunks[i].offset, opts.zstd_level);
    if (!c.ok()) return std::move(c).status();
    coded_bytes = &coded[m > 0 ? i % k : 0];
    delta_chunk_entry& d = man.delta_chunks[i];
    if (c->has_value()) {
      *coded_bytes = std::move(**c);
      wire = *coded_bytes;
      d.encoding = chunk_encoding::xor_zstd;
      d.wire_length = coded_bytes->size();
    } else {
      coded_bytes->clear();
      d.encoding = chunk_encoding::raw;
      d.wire_length = plain.size();
    }
  }
  if (m == 0) {
    man.chunks[i].digest = hash_chunk(opts.algo, plain);
    if (opts.delta_base)
      man.delta_chunks[i].wire_digest = coded_bytes->empty() ? man.chunks[i].digest : hash_chunk(opts.algo, wire);
    return send(i, wire);
  }
  DTRAIN_RETURN_IF_ERROR(send(i, wire));
  if ((i + 1) % k == 0 || i + 1 == data_chunks()) return stripe_done(i / k);
  return {};
}

// Every data chunk of stripe s is in its slot (plain) and has been sent: hash them
// together, pad the wire chunks to the stripe's length, compute, hash and send parity.
status stream_encoder::impl::stripe_done(std::size_t s) {
  const std::size_t n = data_chunks();
  const std::size_t first = s * k;
  const std::size_t count = std::min(k, n - first);
  const auto batch = [](auto& v, std::size_t c) { return std::span(v.data(), c); };

  for (std::size_t i = 0; i < count; ++i)
    in[i] = std::span<const std::byte>(slot(first + i), static_cast<std::size_t>(man.chunks[first + i].length));
  hash_chunks(opts.algo, batch(in, count), batch(digests, count));
  for (std::size_t i = 0; i < count; ++i) man.chunks[first + i].digest = digests[i];
  if (opts.delta_base) {
    coded_at.clear();
    for (std::size_t i = 0; i < count; ++i) {
      if (coded[i].empty()) {
        man.delta_chunks[first + i].wire_digest = digests[i];
      } else {
        in[coded_at.size()] = coded[i];
        coded_at.push_back(i);
      }
    }
    hash_chunks(opts.algo, batch(in, coded_at.size()), batch(digests, coded_at.size()));
    for (std::size_t c = 0; c < coded_at.size(); ++c) man.delta_chunks[first + coded_at[c]].wire_digest = digests[c];
  }

  // Parity runs over the wire chunks zero-padded to the stripe's longest wire chunk,
  // built in place: a delta-coded chunk overwrites its plain bytes (hashed and sent).
  std::size_t len = 0;
  for (std::size_t i = 0; i < count; ++i) len = std::max(len, static_cast<std::size_t>(man.chunk_length(first + i)));
  for (std::size_t i = 0; i < count; ++i) {
    std::byte* dst = slot(first + i);
    const auto wire_len = static_cast<std::size_t>(man.chunk_length(first + i));
    if (opts.delta_base && !coded[i].empty()) std::memcpy(dst, coded[i].data(), wire_len);
    std::memset(dst + wire_len, 0, len - wire_len);
    in[i] = std::span<const std::byte>(dst, len);
  }
  if (count < k) {
    // A short last stripe: its virtual chunks are zeros of the stripe's length; slot
    // `count` is free (create() made one more slot for this), and one copy serves all.
    std::byte* zeros = slots.data() + count * slot_len;
    std::memset(zeros, 0, len);
    for (std::size_t i = count; i < k; ++i) in[i] = std::span<const std::byte>(zeros, len);
  }
  for (std::size_t j = 0; j < m; ++j) {
    out[j] = std::span<std::byte>(parity.data() + j * slot_len, len);
    out_views[j] = out[j];
  }
  DTRAIN_RETURN_IF_ERROR(code->encode(in, out));
  hash_chunks(opts.algo, out_views, batch(digests, m));
  for (std::size_t j = 0; j < m; ++j) man.parity.push_back({s, len, digests[j]});
  for (std::size_t i = 0; i < coded.size(); ++i) coded[i].clear();
  for (std::size_t j = 0; j < m; ++j) DTRAIN_RETURN_IF_ERROR(send(n + s * m + j, out_views[j]));
  return {};
}

result<manifest> stream_encoder::finish() {
  if (!impl_) return failed_precondition("stream_encoder::finish: the encoder was moved from");
  impl& e = *impl_;
  if (e.in_sink) return failed_precondition("stream_encoder::finish: called from the chunk sink");
  if (e.state == impl::phase::finished) return failed_precondition("stream_encoder::finish: already called");
  if (e.state == impl::phase::failed) return failed_precondition("stream_encoder::finish: an earlier call failed");
  e.state = impl::phase::failed;  // until the manifest is out
  if (e.received != e.total)
    return failed_precondition("stream_encoder::finish: " + std::to_string(e.total - e.received) +
                               " bytes missing (" + std::to_string(e.received) + " of " + std::to_string(e.total) +
                               " written)");
  e.man.merkle_root = manifest_merkle_root(e.man);
  if (auto st = check_manifest(e.man); !st.ok()) return invalid_argument("stream_encoder: " + st.message());
  e.state = impl::phase::finished;
  // The stripe buffers are no longer needed; the manifest moves out.
  e.slots = {};
  e.parity = {};
  e.coded = {};
  return std::move(e.man);
}

std::uint64_t stream_encoder::bytes_written() const noexcept { return impl_ ? impl_->received : 0; }
std::uint64_t stream_encoder::total_size() const noexcept { return impl_ ? impl_->total : 0; }

}  // namespace dtrain::shard
