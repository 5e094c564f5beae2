// tests/net/wire_test_util.h: helpers of the wire-format tests (wire_format_test.cpp,
// wire_collectives_test.cpp): hex literals, and what docs/formats/collective_messages.md
// says a receiver answers when one byte of a valid message changes or the message is cut
// short, written from the spec's tables.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../../lib/net/collective_detail.h"
#include "../../lib/net/gossip_frame.h"
#include "dtrain/codec/registry.h"
#include "dtrain/core/bytes.h"

namespace dtrain::net::wire_test {

using bytes = std::vector<std::byte>;
namespace gd = dtrain::net::gossip_detail;
namespace cd = dtrain::net::detail;

// ---- hex ------------------------------------------------------------------------------

inline bytes unhex(std::string_view s) {
  bytes out;
  int hi = -1;
  for (char ch : s) {
    int v = -1;
    if (ch >= '0' && ch <= '9') v = ch - '0';
    if (ch >= 'a' && ch <= 'f') v = ch - 'a' + 10;
    if (v < 0) continue;  // spaces group the fields
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<std::byte>(hi * 16 + v));
      hi = -1;
    }
  }
  REQUIRE(hi < 0);
  return out;
}

inline std::string hex(std::span<const std::byte> b) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  for (std::byte x : b) {
    s += digits[static_cast<unsigned>(x) >> 4];
    s += digits[static_cast<unsigned>(x) & 15];
  }
  return s;
}

// Compares as hex strings so that a mismatch prints both messages readably.
inline std::string canon(std::string_view spaced) { return hex(unhex(spaced)); }

inline bytes concat(const bytes& a, const bytes& b) {
  bytes out = a;
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

inline bytes identity_payload(const std::vector<float>& x) {
  auto c = codec::make_codec("identity");
  REQUIRE(c.ok());
  bytes p((*c)->max_encoded_bytes(x.size()));
  auto n = (*c)->encode(x, p);
  REQUIRE(n.ok());
  p.resize(*n);
  return p;
}

// identity payload of {1, -2, 0.5} (docs/formats/codec_payload.md): frame header, count 3,
// no parameters, the XXH3-64 checksum, three fp32 values.
inline constexpr std::string_view kPayload3 =
    "44544350 01 01 01 00 0300000000000000 0000 0000 c46dc5d9fdb4ba03 0000803f 000000c0 0000003f";

// ---- what the spec says a receiver answers ---------------------------------------------

enum class verdict {
  accept,         // the parser takes the new value (a value field, not protected)
  payload,        // the byte lies in a codec payload: the parser passes it, the codec's checksum rejects it
  data_loss,
  unimplemented,
  aborted,
};

inline const char* verdict_name(verdict v) {
  switch (v) {
    case verdict::accept: return "accept";
    case verdict::payload: return "payload";
    case verdict::data_loss: return "data_loss";
    case verdict::unimplemented: return "unimplemented";
    case verdict::aborted: return "aborted";
  }
  return "?";
}

// Shape of a message: a DTCH header plus payload, a DTGS frame, or a bare codec payload
// (the ring's reduce-scatter and all-gather messages).
enum class shape { header, frame, bare };

inline shape shape_of(const bytes& m) {
  if (m.size() >= 4 && load_le<std::uint32_t>(m.data()) == cd::header_magic) return shape::header;
  if (m.size() >= 4 && load_le<std::uint32_t>(m.data()) == gd::gossip_magic) return shape::frame;
  return shape::bare;
}

inline bool finite_nonneg(double v) { return std::isfinite(v) && v >= 0; }

// Byte `off` of the valid header message `m` (kind m[5]) becomes `nb` (!= m[off]).
// The table of docs/formats/collective_messages.md, "Collective header".
inline verdict header_byte(const bytes& m, std::size_t off, std::byte nb) {
  if (off >= cd::header_bytes) return verdict::payload;
  if (off < 4) return verdict::data_loss;  // magic
  if (off == 4) return nb == std::byte{0} ? verdict::data_loss : verdict::unimplemented;
  if (off == 5) return verdict::data_loss;  // kind: the receiver expects exactly one
  bytes c = m;
  c[off] = nb;
  const bool is_result = static_cast<std::uint8_t>(m[5]) == 3;
  if (off < 8) {
    const std::uint16_t allowed = is_result ? 2 : 1;
    return (load_le<std::uint16_t>(c.data() + 6) & ~allowed) != 0 ? verdict::data_loss : verdict::accept;
  }
  if (off < 16) {
    const float v = load_le<float>(c.data() + (off < 12 ? 8 : 12));
    return finite_nonneg(static_cast<double>(v)) ? verdict::accept : verdict::data_loss;
  }
  return is_result ? verdict::accept : verdict::data_loss;  // a, b: reserved (0) except in results
}

// Byte `off` of the valid gossip frame `m` becomes `nb`. Section "Gossip frame": the checks
// run in the documented order, so a set "failed" flag wins over later fields.
inline verdict frame_byte(const bytes& m, std::size_t off, std::byte nb) {
  const std::size_t slots = static_cast<std::uint8_t>(m[7]);
  const std::size_t hdr = gd::frame_header_bytes(slots);
  if (off >= hdr) return verdict::payload;
  if (off < 4) return verdict::data_loss;
  if (off == 4) return nb == std::byte{0} ? verdict::data_loss : verdict::unimplemented;
  if (off == 5) return verdict::data_loss;
  bytes c = m;
  c[off] = nb;
  const auto flags = static_cast<std::uint8_t>(c[6]);
  if ((flags & gd::flag_failed) != 0) return verdict::aborted;
  if (off == 7) return verdict::data_loss;  // slot count
  const auto known = static_cast<std::uint8_t>(gd::flag_failed | (((1u << slots) - 1u) << 1));
  if ((flags & ~known) != 0) return verdict::data_loss;
  if (!finite_nonneg(load_le<double>(c.data() + 8))) return verdict::data_loss;
  if (off >= 16) return verdict::data_loss;  // a length: the lengths no longer add up to the message
  for (std::size_t s = 0; s < slots; ++s)
    if ((flags & gd::nonfinite_flag(s)) != 0 && load_le<std::uint64_t>(c.data() + 16 + 8 * s) != 0)
      return verdict::data_loss;  // flagged slot carries a payload
  return verdict::accept;          // weight, or a legal flag change
}

inline verdict byte_verdict(const bytes& m, std::size_t off, std::byte nb) {
  switch (shape_of(m)) {
    case shape::header: return header_byte(m, off, nb);
    case shape::frame: return frame_byte(m, off, nb);
    case shape::bare: return verdict::payload;
  }
  return verdict::payload;
}

// The first `len` bytes of the valid message `m` arrive alone.
inline verdict truncation(const bytes& m, std::size_t len) {
  switch (shape_of(m)) {
    case shape::header:
      return len < cd::header_bytes ? verdict::data_loss : verdict::payload;
    case shape::frame:
      if (len < 16) return verdict::data_loss;
      if ((static_cast<std::uint8_t>(m[6]) & gd::flag_failed) != 0) return verdict::aborted;
      return verdict::data_loss;  // short lengths, or lengths beyond the message
    case shape::bare:
      return verdict::payload;
  }
  return verdict::payload;
}

inline status_code code_of(verdict v) {
  switch (v) {
    case verdict::data_loss: return status_code::data_loss;
    case verdict::unimplemented: return status_code::unimplemented;
    case verdict::aborted: return status_code::aborted;
    default: return status_code::ok;
  }
}

// What a codec returns for a payload whose byte `off` became `nb` (docs/formats/
// codec_payload.md): a newer frame version is unimplemented, everything else fails the
// frame checks or the checksum (data_loss).
inline status_code payload_byte_code(std::size_t off, std::byte nb) {
  return off == 4 && nb != std::byte{0} ? status_code::unimplemented : status_code::data_loss;
}

}  // namespace dtrain::net::wire_test
