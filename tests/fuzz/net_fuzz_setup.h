// tests/fuzz/net_fuzz_setup.h: what net_collective_fuzz and its corpus generator share:
// the three configuration bytes that open a fuzz input, the collective they build on a
// 2-peer transport, the tags rank 1 sends on (docs/formats/collective_messages.md,
// "Tags"), rank 0's input, and the framing of rank 1's messages.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/net/allreduce_butterfly.h"
#include "dtrain/net/allreduce_ring.h"
#include "dtrain/net/neighbor_average.h"
#include "dtrain/net/noloco_pairing.h"
#include "dtrain/net/push_sum.h"
#include "dtrain/net/sparse_allgather.h"
#include "dtrain/net/transport.h"
#include "dtrain/topology/generators.h"
#include "dtrain/topology/mixing.h"
#include "dtrain/topology/schedule.h"

namespace dtrain::net::fuzz {

enum class coll : std::uint8_t { ring, butterfly, sparse_allgather, neighbor, push_sum, noloco };
inline constexpr std::size_t kCollectives = 6;

/// How rank 1's message under one tag is framed.
enum class framing : std::uint8_t { header, frame, bare };

// Four wire codecs per collective (byte 1, bits 0-1), all valid for every count below.
inline constexpr std::array<std::array<std::string_view, 4>, kCollectives> kCodecs = {{
    {"identity", "fp16", "minmax:bits=4", "fp4:block=4"},
    {"identity", "bf16", "topk:chunk=4,k=2,values=fp16", "sign:block=0"},
    {"identity", "topk:chunk=4,k=2,values=fp16", "randomk:chunk=4,k=2,seed=3", "dct_topk:chunk=4,k=2,values=fp16"},
    {"identity", "fp16", "minmax:bits=8", "uniform8"},
    {"identity", "bf16", "minmax:bits=8", "quantile8"},
    {"identity", "fp16", "blockwise:bits=4,block=4", "minmax:bits=2"},
}};
inline constexpr std::array<std::size_t, 4> kCounts = {0, 2, 5, 17};
inline constexpr std::uint32_t kChannel = 3;

/// The configuration in the first three bytes of an input.
/// byte 0: collective (mod 6).
/// byte 1: bits 0-1 codec, 2-3 count, 4 residual span, 5 variant, 6 reject_nonfinite
///         off, 7 rank 0's input holds a NaN.
/// byte 2: bit 0 rank 0 has weight 0, bit 1 second variant, bit 2 re-seal the codec
///         payloads in rank 1's messages, bits 3-7 the round.
/// Variants: ring clip_to_median_norm / max_segment_floats = 2; butterfly clipping /
/// trimmed mean; sparse all-gather clipping / coincident mean; neighbour clipping /
/// self_decoded; push-sum 2 rounds per call / -; NoLoCo average_pair() / -.
struct config {
  coll c = coll::ring;
  std::uint8_t codec = 0;
  std::size_t count = 0;
  bool residual = false;
  bool variant = false;
  bool reject_off = false;
  bool nan0 = false;
  bool listener0 = false;
  bool variant2 = false;
  bool reseal = false;
  std::uint8_t round = 0;

  static config decode(const std::uint8_t b[3]) noexcept {
    config k;
    k.c = static_cast<coll>(b[0] % kCollectives);
    k.codec = b[1] & 3;
    k.count = kCounts[(b[1] >> 2) & 3];
    k.residual = (b[1] & 16) != 0;
    k.variant = (b[1] & 32) != 0;
    k.reject_off = (b[1] & 64) != 0;
    k.nan0 = (b[1] & 128) != 0;
    k.listener0 = (b[2] & 1) != 0;
    k.variant2 = (b[2] & 2) != 0;
    k.reseal = (b[2] & 4) != 0;
    k.round = static_cast<std::uint8_t>(b[2] >> 3);
    return k;
  }
  std::array<std::uint8_t, 3> encode() const noexcept {
    std::size_t ci = 0;
    while (kCounts[ci] != count) ++ci;
    return {static_cast<std::uint8_t>(c),
            static_cast<std::uint8_t>(codec | (ci << 2) | (residual ? 16 : 0) | (variant ? 32 : 0) |
                                      (reject_off ? 64 : 0) | (nan0 ? 128 : 0)),
            static_cast<std::uint8_t>((listener0 ? 1 : 0) | (variant2 ? 2 : 0) | (reseal ? 4 : 0) | (round << 3))};
  }
  std::string_view codec_spec() const noexcept { return kCodecs[static_cast<std::size_t>(c)][codec]; }
  bool pair() const noexcept { return c == coll::noloco && variant; }
  std::size_t vectors() const noexcept { return pair() ? 2 : 1; }
};

/// One tag rank 1 sends (and receives) on, and how its message is framed.
struct slot {
  tag_t tag;
  framing f;
};

/// Every tag of one call on 2 peers, sequence 0, in the order an honest peer posts its
/// sends. Rank 0 sends exactly one message under each of them, and so does rank 1.
inline std::vector<slot> slots_of(const config& k) {
  std::vector<slot> s;
  const auto tag = [](std::uint32_t step) { return make_tag(kChannel, 0, step); };
  switch (k.c) {
    case coll::ring: {
      s.push_back({tag(1), framing::header});
      const std::size_t largest = (k.count + 1) / 2;  // chunk 0 of 2
      const std::size_t max_seg = k.variant2 ? 2 : std::size_t{1} << 20;
      const std::size_t segments = largest == 0 ? 1 : (largest + max_seg - 1) / max_seg;
      for (std::size_t g = 0; g < segments; ++g) {
        s.push_back({tag(0x4000u | static_cast<std::uint32_t>(g)), framing::bare});
        s.push_back({tag(0x8000u | static_cast<std::uint32_t>(g)), framing::bare});
      }
      break;
    }
    case coll::butterfly:
      s.push_back({tag(1), framing::header});
      s.push_back({tag(2), framing::header});
      break;
    case coll::sparse_allgather:
      s.push_back({tag(1), framing::header});
      break;
    case coll::neighbor:
    case coll::noloco:
      s.push_back({tag(0), framing::frame});
      break;
    case coll::push_sum:
      s.push_back({tag(0), framing::frame});
      if (k.variant) s.push_back({tag(1), framing::frame});
      break;
  }
  return s;
}

/// Rank r's input vector v (0 or 1): small values; rank 0's vector 0 starts with a NaN
/// when the configuration asks for one.
inline std::vector<float> input_of(const config& k, rank_t r, std::size_t v) {
  std::vector<float> x(k.count);
  for (std::size_t i = 0; i < k.count; ++i) {
    const auto q = static_cast<float>(static_cast<int>((i * 7 + v * 3 + r * 5) % 11) - 5);
    x[i] = q * (r == 0 ? 0.25f : 0.5f);
  }
  if (r == 0 && v == 0 && k.nan0 && k.count > 0) x[0] = std::numeric_limits<float>::quiet_NaN();
  return x;
}

inline const topology::schedule& complete2(bool push) {
  static const topology::schedule uniform = [] {
    auto g = topology::complete(2);
    DTRAIN_ASSERT(g.ok());
    auto w = topology::uniform_weights(*g);
    DTRAIN_ASSERT(w.ok());
    return topology::static_schedule(std::move(*w));
  }();
  static const topology::schedule column = [] {
    auto g = topology::complete(2);
    DTRAIN_ASSERT(g.ok());
    auto w = topology::push_sum_weights(*g);
    DTRAIN_ASSERT(w.ok());
    return topology::static_schedule(std::move(*w));
  }();
  return push ? column : uniform;
}

inline collective_options options_of(const config& k, rank_t r) {
  collective_options o;
  o.codec = std::string(k.codec_spec());
  o.weight = (r == 0 && k.listener0) ? 0.0f : 1.0f;
  o.timeout = std::chrono::milliseconds(50);
  o.channel = kChannel;
  o.robust.reject_nonfinite = !k.reject_off;
  switch (k.c) {
    case coll::ring:
    case coll::sparse_allgather:
    case coll::neighbor:
      o.robust.clip_to_median_norm = k.variant;
      break;
    case coll::butterfly:
      o.robust.clip_to_median_norm = k.variant;
      if (k.variant2) o.robust.trim_fraction = 0.25;
      break;
    default:
      break;
  }
  // The neighbour average refuses weights other than 1.
  if (k.c == coll::neighbor) o.weight = 1.0f;
  return o;
}

/// Creates rank t.rank()'s collective and runs one call (round k.round) on `a` (and `b`
/// for average_pair()), with residual spans `ra`, `rb` (empty: none). Returns the
/// create() or average() status.
inline status run_call(const config& k, transport& t, std::span<float> a, std::span<float> b, std::span<float> ra,
                       std::span<float> rb) {
  const collective_options o = options_of(k, t.rank());
  const auto run = [&](auto made) -> status {
    if (!made.ok()) return made.status();
    return (*made)->average(a, k.round, ra);
  };
  switch (k.c) {
    case coll::ring: {
      ring_options ro;
      if (k.variant2) ro.max_segment_floats = 2;
      return run(ring_allreduce::create(t, k.count, o, ro));
    }
    case coll::butterfly:
      return run(butterfly_allreduce::create(t, k.count, o));
    case coll::sparse_allgather:
      return run(sparse_allgather::create(t, k.count, o, k.variant2 ? sparse_mean::coincident : sparse_mean::all));
    case coll::neighbor: {
      neighbor_options no;
      no.self_decoded = k.variant2;
      return run(neighbor_average::create(t, k.count, o, complete2(false), no));
    }
    case coll::push_sum: {
      push_sum_options po;
      po.rounds_per_call = k.variant ? 2 : 1;
      return run(push_sum::create(t, k.count, o, complete2(true), po));
    }
    case coll::noloco: {
      auto made = noloco_pairing::create(t, k.count, o, 11);
      if (!made.ok()) return made.status();
      if (k.pair()) return (*made)->average_pair(a, b, k.round, ra, rb);
      return (*made)->average(a, k.round, ra);
    }
  }
  return internal_error("unknown collective");
}

}  // namespace dtrain::net::fuzz
