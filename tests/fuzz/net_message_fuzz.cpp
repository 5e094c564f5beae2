// libFuzzer target for the two parsers of the collectives' framings
// (docs/formats/collective_messages.md): parse_header (the 24-byte "DTCH" header) and
// parse_frame (the "DTGS" gossip frame), on arbitrary bytes. Input byte 0 picks the
// parser and what it expects: bit 0 clear = header of kind 1 + bits 1-2; bit 0 set =
// frame of kind 1 + (bits 1-2) mod 3 with 1 + bit 3 slots. The rest is the message.
// Each answer is compared with a reference written from the spec's tables (the same
// checks, in the documented order, on raw bytes); on success the parsed fields must be
// the bytes on the wire, and the payload slots must tile the message after the header;
// on error parse_header must leave its output alone.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "../../lib/net/collective_detail.h"
#include "../../lib/net/gossip_frame.h"
#include "dtrain/core/bytes.h"
#include "fuzz_contract.h"

namespace {

using namespace dtrain;
namespace cd = dtrain::net::detail;
namespace gd = dtrain::net::gossip_detail;

[[noreturn]] void fail(const char* what, const status& st = {}) {
  dtrain::fuzz::contract_violated("net_message_fuzz", what, st);
}

bool finite_nonneg(double v) { return std::isfinite(v) && v >= 0; }

// Section "Collective header": size, magic, version, kind, flags, weight and norm, a/b.
status_code ref_header(std::span<const std::byte> m, std::uint8_t kind) {
  if (m.size() < 24) return status_code::data_loss;
  if (load_le<std::uint32_t>(m.data()) != 0x48435444u) return status_code::data_loss;
  const auto version = static_cast<std::uint8_t>(m[4]);
  if (version == 0) return status_code::data_loss;
  if (version > 1) return status_code::unimplemented;
  if (static_cast<std::uint8_t>(m[5]) != kind) return status_code::data_loss;
  const std::uint16_t allowed = kind == 3 ? 2 : 1;
  if ((load_le<std::uint16_t>(m.data() + 6) & ~allowed) != 0) return status_code::data_loss;
  if (!finite_nonneg(static_cast<double>(load_le<float>(m.data() + 8))) ||
      !finite_nonneg(static_cast<double>(load_le<float>(m.data() + 12))))
    return status_code::data_loss;
  if (kind != 3 && (load_le<std::uint32_t>(m.data() + 16) != 0 || load_le<std::uint32_t>(m.data() + 20) != 0))
    return status_code::data_loss;
  return status_code::ok;
}

// Section "Gossip frame".
status_code ref_frame(std::span<const std::byte> m, std::uint8_t kind, std::size_t slots) {
  if (m.size() < 16) return status_code::data_loss;
  if (load_le<std::uint32_t>(m.data()) != 0x53475444u) return status_code::data_loss;
  const auto version = static_cast<std::uint8_t>(m[4]);
  if (version == 0) return status_code::data_loss;
  if (version > 1) return status_code::unimplemented;
  if (static_cast<std::uint8_t>(m[5]) != kind) return status_code::data_loss;
  const auto flags = static_cast<std::uint8_t>(m[6]);
  if (flags & 1) return status_code::aborted;
  if (static_cast<std::uint8_t>(m[7]) != slots) return status_code::data_loss;
  if ((flags & ~((1u << (slots + 1)) - 1u)) != 0) return status_code::data_loss;
  if (!finite_nonneg(load_le<double>(m.data() + 8))) return status_code::data_loss;
  const std::size_t hdr = 16 + 8 * slots;
  if (m.size() < hdr) return status_code::data_loss;
  std::uint64_t left = m.size() - hdr;
  for (std::size_t s = 0; s < slots; ++s) {
    const std::uint64_t len = load_le<std::uint64_t>(m.data() + 16 + 8 * s);
    if (len > left) return status_code::data_loss;
    left -= len;
    if ((flags & (2u << s)) != 0 && len != 0) return status_code::data_loss;
  }
  return left == 0 ? status_code::ok : status_code::data_loss;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t sel = data[0];
  const auto msg = std::span<const std::byte>(reinterpret_cast<const std::byte*>(data) + 1, size - 1);

  if ((sel & 1) == 0) {
    const auto kind = static_cast<std::uint8_t>(1 + ((sel >> 1) & 3));
    const cd::msg_header sentinel{cd::msg_kind::meta, 0xBEEF, -1.0f, -2.0f, 77, 88};
    cd::msg_header out = sentinel;
    const status st = cd::parse_header(msg, static_cast<cd::msg_kind>(kind), "fuzz", 1, out);
    if (st.code() != ref_header(msg, kind)) fail("parse_header disagrees with the spec", st);
    if (!st.ok()) {
      if (out.kind != sentinel.kind || out.flags != sentinel.flags || out.a != sentinel.a || out.b != sentinel.b ||
          out.weight != sentinel.weight || out.norm != sentinel.norm)
        fail("parse_header wrote its output on error", st);
      return 0;
    }
    // The parsed header, written again, is the header on the wire.
    std::byte again[cd::header_bytes];
    cd::write_header(again, out);
    for (std::size_t i = 0; i < cd::header_bytes; ++i)
      if (again[i] != msg[i]) fail("parse_header round trip differs");
    return 0;
  }

  const auto kind = static_cast<std::uint8_t>(1 + ((sel >> 1) & 3) % 3);
  const std::size_t slots = 1 + ((sel >> 3) & 1);
  auto f = gd::parse_frame(msg, static_cast<gd::gossip_kind>(kind), slots, 1);
  if (f.status().code() != ref_frame(msg, kind, slots)) fail("parse_frame disagrees with the spec", f.status());
  if (!f.ok()) return 0;
  if (f->flags != static_cast<std::uint8_t>(msg[6])) fail("flags differ");
  if (f->weight != load_le<double>(msg.data() + 8)) fail("weight differs");
  const std::byte* at = msg.data() + gd::frame_header_bytes(slots);
  for (std::size_t s = 0; s < slots; ++s) {
    if (f->payload[s].size() != load_le<std::uint64_t>(msg.data() + 16 + 8 * s)) fail("slot length differs");
    if (!f->payload[s].empty() && f->payload[s].data() != at) fail("slot does not follow the previous one");
    at += f->payload[s].size();
  }
  if (at != msg.data() + msg.size()) fail("slots do not end with the message");
  for (std::size_t s = slots; s < gd::gossip_max_slots; ++s)
    if (!f->payload[s].empty()) fail("unused slot not empty");
  return 0;
}
