// Shared internals of the global averaging collectives: header, option checks, op batches.
#include "collective_detail.h"

#include <cmath>

#include "dtrain/codec/error_feedback.h"
#include "dtrain/codec/registry.h"
#include "dtrain/core/bytes.h"

namespace dtrain::net::detail {

namespace {
std::string peer_name(std::string_view who, rank_t from) {
  return std::string(who) + ": message from rank " + std::to_string(from);
}
bool finite_nonneg(float v) { return std::isfinite(v) && v >= 0.0f; }
}  // namespace

void write_header(std::span<std::byte> out, const msg_header& h) noexcept {
  DTRAIN_ASSERT(out.size() >= header_bytes);
  std::byte* p = out.data();
  store_le<std::uint32_t>(p, header_magic);
  store_le<std::uint8_t>(p + 4, header_version);
  store_le<std::uint8_t>(p + 5, static_cast<std::uint8_t>(h.kind));
  store_le<std::uint16_t>(p + 6, h.flags);
  store_le<float>(p + 8, h.weight);
  store_le<float>(p + 12, h.norm);
  store_le<std::uint32_t>(p + 16, h.a);
  store_le<std::uint32_t>(p + 20, h.b);
}

status parse_header(std::span<const std::byte> msg, msg_kind kind, std::string_view who, rank_t from,
                    msg_header& out) {
  if (msg.size() < header_bytes)
    return data_loss(peer_name(who, from) + " holds " + std::to_string(msg.size()) + " bytes, less than a header");
  const std::byte* p = msg.data();
  if (load_le<std::uint32_t>(p) != header_magic) return data_loss(peer_name(who, from) + ": bad magic");
  const auto version = load_le<std::uint8_t>(p + 4);
  if (version == 0) return data_loss(peer_name(who, from) + ": header version 0");
  if (version > header_version)
    return unimplemented(peer_name(who, from) + ": header version " + std::to_string(version) + " is newer than " +
                         std::to_string(header_version));
  msg_header h;
  h.kind = static_cast<msg_kind>(load_le<std::uint8_t>(p + 5));
  h.flags = load_le<std::uint16_t>(p + 6);
  h.weight = load_le<float>(p + 8);
  h.norm = load_le<float>(p + 12);
  h.a = load_le<std::uint32_t>(p + 16);
  h.b = load_le<std::uint32_t>(p + 20);
  if (h.kind != kind)
    return data_loss(peer_name(who, from) + ": message kind " + std::to_string(static_cast<int>(h.kind)) +
                     ", expected " + std::to_string(static_cast<int>(kind)));
  const std::uint16_t allowed = kind == msg_kind::result ? flag_failed : flag_nonfinite;
  if ((h.flags & ~allowed) != 0) return data_loss(peer_name(who, from) + ": unknown flags");
  if (!finite_nonneg(h.weight) || !finite_nonneg(h.norm))
    return data_loss(peer_name(who, from) + ": weight or norm not finite and >= 0");
  if (kind != msg_kind::result && (h.a != 0 || h.b != 0))
    return data_loss(peer_name(who, from) + ": non-zero reserved fields");
  out = h;
  return ok_status();
}

status check_options(const collective_options& o, std::string_view who) {
  const std::string w(who);
  if (!std::isfinite(o.weight) || o.weight < 0.0f)
    return invalid_argument(w + ": weight must be finite and >= 0, got " + std::to_string(o.weight));
  if (o.timeout.count() <= 0) return invalid_argument(w + ": timeout must be > 0");
  if (o.channel >= (1u << 24)) return invalid_argument(w + ": channel must be < 2^24 (make_tag)");
  if (!(o.robust.trim_fraction >= 0.0 && o.robust.trim_fraction < 0.5))
    return invalid_argument(w + ": robust.trim_fraction must lie in [0, 0.5)");
  return ok_status();
}

result<std::unique_ptr<codec::codec>> make_wire_codec(std::string_view spec, std::string_view who) {
  auto c = codec::make_codec(spec);
  if (!c.ok()) return invalid_argument(std::string(who) + ": codec: " + c.status().message());
  if (dynamic_cast<const codec::error_feedback*>(c->get()) != nullptr)
    return invalid_argument(std::string(who) +
                            ": codec: the error-feedback decorator ('ef:') is not accepted on the wire; "
                            "pass a residual span to average() and feed it back yourself");
  return std::move(c).value();
}

status corrupt_payload(std::string_view who, rank_t from, const status& why) {
  return data_loss(peer_name(who, from) + ": undecodable payload (" + why.to_string() + ")");
}

status op_batch::send(rank_t to, tag_t tag, std::span<const std::byte> data) {
  auto o = t_.post_send(to, tag, data);
  if (!o.ok()) {
    cancel();
    return o.status();
  }
  ops_.push_back({*o, to, false, nullptr});
  return ok_status();
}

status op_batch::recv(rank_t from, tag_t tag, std::span<std::byte> buf, std::size_t* len) {
  auto o = t_.post_recv(from, tag, buf);
  if (!o.ok()) {
    cancel();
    return o.status();
  }
  ops_.push_back({*o, from, true, len});
  return ok_status();
}

status op_batch::wait(deadline d) {
  status first;
  for (const entry& e : ops_) {
    // After the first error, retire the rest at once instead of waiting for them.
    auto n = t_.wait(e.o, first.ok() ? d : deadline::min());
    if (n.ok()) {
      if (e.len) *e.len = *n;
      continue;
    }
    if (!first.ok()) continue;
    if (n.status().code() == status_code::resource_exhausted)
      first = data_loss(peer_name(who_, e.peer) + " is longer than expected (" + n.status().message() + ")");
    else
      first = n.status();
  }
  ops_.clear();
  return first;
}

void op_batch::cancel() noexcept {
  for (const entry& e : ops_) t_.wait(e.o, deadline::min()).status().ignore();
  ops_.clear();
}

void op_batch::try_send(rank_t to, tag_t tag, std::span<const std::byte> data) noexcept {
  auto o = t_.post_send(to, tag, data);
  if (o.ok()) ops_.push_back({*o, to, false, nullptr});
}

void op_batch::settle(deadline d) noexcept {
  for (const entry& e : ops_) t_.wait(e.o, d).status().ignore();
  ops_.clear();
}

}  // namespace dtrain::net::detail
