// The two private framings of the collectives (docs/formats/collective_messages.md): the
// 24-byte "DTCH" header and the "DTGS" gossip frame, plus the tag layout. Frozen vectors
// written by hand from the spec; every truncation and every single-byte corruption at
// the parsers. wire_collectives_test.cpp does the same with the real messages of every
// collective.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "../../lib/net/collective_detail.h"
#include "../../lib/net/gossip_frame.h"
#include "dtrain/codec/registry.h"
#include "dtrain/core/bytes.h"
#include "dtrain/net/transport.h"
#include "wire_test_util.h"

using namespace dtrain;
using namespace dtrain::net;
using namespace dtrain::net::wire_test;

// ---- the collective header -------------------------------------------------------------

TEST_CASE("wire: collective header frozen vectors", "[net][wire][format]") {
  using cd::msg_kind;
  struct vec {
    const char* name;
    cd::msg_header h;
    std::string_view hex;
  };
  // magic "DTCH" | version | kind | flags u16 | weight f32 | norm f32 | a u32 | b u32
  const vec vectors[] = {
      {"meta", {msg_kind::meta, 0, 1.0f, 2.5f, 0, 0},
       "44544348 01 01 0000 0000803f 00002040 00000000 00000000"},
      {"contribution, non-finite input", {msg_kind::contribution, 1, 0.5f, 0.0f, 0, 0},
       "44544348 01 02 0100 0000003f 00000000 00000000 00000000"},
      {"result: 2 contributors, 1 dropped, W = 3", {msg_kind::result, 0, 3.0f, 0.0f, 2, 1},
       "44544348 01 03 0000 00004040 00000000 02000000 01000000"},
      {"result: failure notice, data_loss blaming rank 1", {msg_kind::result, 2, 0.0f, 0.0f, 4, 1},
       "44544348 01 03 0200 00000000 00000000 04000000 01000000"},
      {"gather", {msg_kind::gather, 0, 2.0f, 0.0f, 0, 0},
       "44544348 01 04 0000 00000040 00000000 00000000 00000000"},
  };
  static_assert(static_cast<std::uint32_t>(status_code::data_loss) == 4);
  for (const vec& v : vectors) {
    CAPTURE(v.name);
    bytes out(cd::header_bytes);
    cd::write_header(out, v.h);
    CHECK(hex(out) == canon(v.hex));
    cd::msg_header got;
    REQUIRE(cd::parse_header(unhex(v.hex), v.h.kind, "test", 1, got).ok());
    CHECK(got.kind == v.h.kind);
    CHECK(got.flags == v.h.flags);
    CHECK(got.weight == v.h.weight);
    CHECK(got.norm == v.h.norm);
    CHECK(got.a == v.h.a);
    CHECK(got.b == v.h.b);
    // Bytes after the header are the payload's business, not the parser's.
    REQUIRE(cd::parse_header(concat(unhex(v.hex), unhex(kPayload3)), v.h.kind, "test", 1, got).ok());
  }
  CHECK(hex(identity_payload({1.0f, -2.0f, 0.5f})) == canon(kPayload3));
}

TEST_CASE("wire: collective header, every truncation and single-byte corruption", "[net][wire][format]") {
  using cd::msg_kind;
  const std::string_view headers[] = {
      "44544348 01 01 0000 0000803f 00002040 00000000 00000000",  // meta
      "44544348 01 02 0000 0000803f 00000000 00000000 00000000",  // contribution
      "44544348 01 03 0000 00004040 00000000 02000000 01000000",  // result
      "44544348 01 03 0200 00000000 00000000 04000000 01000000",  // failure notice
      "44544348 01 04 0000 00000000 00000000 00000000 00000000",  // gather, weight 0
  };
  const bytes payload = unhex(kPayload3);
  std::size_t accepted = 0, rejected = 0;
  for (std::string_view hx : headers) {
    const bytes h = unhex(hx);
    const auto kind = static_cast<msg_kind>(h[5]);
    const bool with_payload = (load_le<std::uint16_t>(h.data() + 6) & 2) == 0;  // a failure notice has none
    const bytes m = with_payload ? concat(h, payload) : h;
    CAPTURE(hex(m));
    const cd::msg_header sentinel{msg_kind::meta, 0xBEEF, -1.0f, -1.0f, 7, 7};
    const auto unchanged = [&](const cd::msg_header& x) {
      return x.kind == sentinel.kind && x.flags == sentinel.flags && x.a == 7 && x.b == 7;
    };
    for (std::size_t len = 0; len < m.size(); ++len) {
      CAPTURE(len);
      cd::msg_header out = sentinel;
      const auto part = std::span<const std::byte>(m).first(len);
      const status st = cd::parse_header(part, kind, "test", 1, out);
      if (truncation(m, len) == verdict::payload) {
        // A whole header with a truncated payload: the codec rejects what follows.
        REQUIRE(st.ok());
        std::vector<float> x(3);
        CHECK(codec::decode_any(part.subspan(cd::header_bytes), x).code() == status_code::data_loss);
      } else {
        CHECK(st.code() == status_code::data_loss);
        CHECK(unchanged(out));
      }
    }
    for (std::size_t off = 0; off < m.size(); ++off) {
      for (unsigned x = 1; x < 256; ++x) {
        bytes c = m;
        c[off] ^= static_cast<std::byte>(x);
        const verdict v = byte_verdict(m, off, c[off]);
        CAPTURE(off, x, verdict_name(v));
        cd::msg_header out = sentinel;
        const status st = cd::parse_header(c, kind, "test", 1, out);
        if (v == verdict::accept) {
          CHECK(st.ok());
          ++accepted;
          // The parser hands back exactly the corrupted header.
          bytes again(cd::header_bytes);
          cd::write_header(again, out);
          CHECK(hex(again) == hex(std::span<const std::byte>(c).first(cd::header_bytes)));
        } else if (v == verdict::payload) {
          REQUIRE(st.ok());
          std::vector<float> y(3);
          CHECK(codec::decode_any(std::span<const std::byte>(c).subspan(cd::header_bytes), y).code() ==
                payload_byte_code(off - cd::header_bytes, c[off]));
          ++rejected;
        } else {
          CHECK(st.code() == code_of(v));
          CHECK(unchanged(out));
          ++rejected;
        }
      }
    }
  }
  // Most corruptions are caught; the rest change a value field (weight, norm, a legal
  // flag, a result's counts), which the header alone cannot protect.
  CHECK(rejected > 4 * accepted);
}

// ---- the gossip frame ------------------------------------------------------------------

TEST_CASE("wire: gossip frame frozen vectors", "[net][wire][format]") {
  struct vec {
    const char* name;
    gd::gossip_kind kind;
    std::uint8_t flags;
    double weight;
    std::vector<std::size_t> lens;
    std::string_view hex;
  };
  // magic "DTGS" | version | kind | flags | slots | weight f64 | one u64 length per slot
  const vec vectors[] = {
      {"neighbor, one payload", gd::gossip_kind::neighbor, 0, 1.0, {40},
       "44544753 01 01 00 01 000000000000f03f 2800000000000000"},
      {"push_sum without mass", gd::gossip_kind::push_sum, 0, 0.0, {0},
       "44544753 01 02 00 01 0000000000000000 0000000000000000"},
      {"push_sum, own input dropped", gd::gossip_kind::push_sum, 2, 0.0, {0},
       "44544753 01 02 02 01 0000000000000000 0000000000000000"},
      {"noloco pair, slot 1 non-finite", gd::gossip_kind::noloco, 4, 0.5, {40, 0},
       "44544753 01 03 04 02 000000000000e03f 2800000000000000 0000000000000000"},
      {"neighbor, sender failed", gd::gossip_kind::neighbor, 1, 1.0, {0},
       "44544753 01 01 01 01 000000000000f03f 0000000000000000"},
  };
  const bytes payload = unhex(kPayload3);
  REQUIRE(payload.size() == 40);
  for (const vec& v : vectors) {
    CAPTURE(v.name);
    bytes out(gd::frame_header_bytes(v.lens.size()));
    gd::write_frame_header(out, v.kind, v.flags, v.weight, v.lens);
    CHECK(hex(out) == canon(v.hex));
    bytes m = unhex(v.hex);
    for (std::size_t len : v.lens)
      if (len != 0) m = concat(m, payload);
    auto f = gd::parse_frame(m, v.kind, v.lens.size(), 1);
    if ((v.flags & gd::flag_failed) != 0) {
      CHECK(f.status().code() == status_code::aborted);
      continue;
    }
    REQUIRE(f.ok());
    CHECK(f->flags == v.flags);
    CHECK(f->weight == v.weight);
    std::size_t at = out.size();
    for (std::size_t s = 0; s < v.lens.size(); ++s) {
      CHECK(f->payload[s].size() == v.lens[s]);
      if (v.lens[s] != 0) CHECK(f->payload[s].data() == m.data() + at);
      at += v.lens[s];
    }
  }
}

TEST_CASE("wire: gossip frame, every truncation and single-byte corruption", "[net][wire][format]") {
  const bytes payload = unhex(kPayload3);
  const bytes frames[] = {
      concat(unhex("44544753 01 01 00 01 000000000000f03f 2800000000000000"), payload),
      unhex("44544753 01 02 00 01 0000000000000000 0000000000000000"),
      concat(unhex("44544753 01 03 04 02 000000000000e03f 2800000000000000 0000000000000000"), payload),
      concat(concat(unhex("44544753 01 03 00 02 0000000000000040 2800000000000000 2800000000000000"), payload),
             payload),
      unhex("44544753 01 01 01 01 000000000000f03f 0000000000000000"),
  };
  std::size_t accepted = 0, rejected = 0;
  for (const bytes& m : frames) {
    CAPTURE(hex(m));
    const auto kind = static_cast<gd::gossip_kind>(m[5]);
    const std::size_t slots = static_cast<std::uint8_t>(m[7]);
    const std::size_t hdr = gd::frame_header_bytes(slots);
    // The slot holding byte `off` of a payload.
    const auto slot_of = [&](const bytes& c, std::size_t off) {
      std::size_t at = hdr;
      for (std::size_t s = 0; s < slots; ++s) {
        const auto len = static_cast<std::size_t>(load_le<std::uint64_t>(c.data() + 16 + 8 * s));
        if (off < at + len) return s;
        at += len;
      }
      FAIL("byte outside every payload");
      return std::size_t{0};
    };
    for (std::size_t len = 0; len < m.size(); ++len) {
      CAPTURE(len);
      auto f = gd::parse_frame(std::span<const std::byte>(m).first(len), kind, slots, 1);
      CHECK(f.status().code() == code_of(truncation(m, len)));
    }
    for (std::size_t off = 0; off < m.size(); ++off) {
      for (unsigned x = 1; x < 256; ++x) {
        bytes c = m;
        c[off] ^= static_cast<std::byte>(x);
        const verdict v = byte_verdict(m, off, c[off]);
        CAPTURE(off, x, verdict_name(v));
        auto f = gd::parse_frame(c, kind, slots, 1);
        if (v == verdict::accept) {
          REQUIRE(f.ok());
          ++accepted;
          CHECK(f->flags == static_cast<std::uint8_t>(c[6]));
          CHECK(f->weight == load_le<double>(c.data() + 8));
        } else if (v == verdict::payload) {
          REQUIRE(f.ok());
          std::vector<float> y(3);
          const std::size_t slot = slot_of(c, off);
          const auto start = static_cast<std::size_t>(f->payload[slot].data() - c.data());
          CHECK(codec::decode_any(f->payload[slot], y).code() == payload_byte_code(off - start, c[off]));
          ++rejected;
        } else {
          CHECK(f.status().code() == code_of(v));
          ++rejected;
        }
      }
    }
  }
  CHECK(rejected > 4 * accepted);
}

TEST_CASE("wire: gossip frame lengths cannot wrap around", "[net][wire][format]") {
  // Two lengths whose u64 sum wraps to the real payload size: each one is checked
  // against what remains, so the frame is refused.
  const bytes m = concat(
      unhex("44544753 01 03 00 02 000000000000f03f ffffffffffffffff 2900000000000000"), unhex(kPayload3));
  CHECK(gd::parse_frame(m, gd::gossip_kind::noloco, 2, 1).status().code() == status_code::data_loss);
  // A length larger than the message, and trailing bytes after the payloads.
  const bytes big = concat(unhex("44544753 01 01 00 01 000000000000f03f 2900000000000000"), unhex(kPayload3));
  CHECK(gd::parse_frame(big, gd::gossip_kind::neighbor, 1, 1).status().code() == status_code::data_loss);
  const bytes trailing = concat(unhex("44544753 01 01 00 01 000000000000f03f 2700000000000000"), unhex(kPayload3));
  CHECK(gd::parse_frame(trailing, gd::gossip_kind::neighbor, 1, 1).status().code() == status_code::data_loss);
  // Asked for 2 slots, given 1 (and the converse).
  const bytes one = concat(unhex("44544753 01 03 00 01 000000000000f03f 2800000000000000"), unhex(kPayload3));
  CHECK(gd::parse_frame(one, gd::gossip_kind::noloco, 2, 1).status().code() == status_code::data_loss);
  // An empty slot without its non-finite flag parses (push_sum sends it when it holds no
  // mass); the collectives decide what it means.
  const bytes empty = unhex("44544753 01 01 00 01 000000000000f03f 0000000000000000");
  auto f = gd::parse_frame(empty, gd::gossip_kind::neighbor, 1, 1);
  REQUIRE(f.ok());
  CHECK(f->payload[0].empty());
}

// ---- tags ------------------------------------------------------------------------------

TEST_CASE("wire: tag layout", "[net][wire][format]") {
  STATIC_REQUIRE(make_tag(0xABCDEF, 0x123456, 0x7890) == 0xABCDEF1234567890ull);
  // Each field keeps its low bits only: the sequence wraps at 2^24.
  STATIC_REQUIRE(make_tag(0xFFFFFFFFu, 0x1000001u, 0x12345u) == 0xFFFFFF0000012345ull);
  STATIC_REQUIRE(make_tag(0, 0, 0) == 0);
  STATIC_REQUIRE(make_tag(1, 0, 0) == (tag_t{1} << 40));
  STATIC_REQUIRE(make_tag(0, 1, 0) == (tag_t{1} << 16));
}
