// dtrain/core/rng.h: Philox4x32-10, a counter-based RNG (Salmon et al., SC'11). The
// value at (seed, stream, index) depends on nothing else, so every machine, thread
// count and call order sees the same stream. Integer-only; floats are built from bits.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <span>

namespace dtrain {

/// One Philox4x32-10 block: 4 x u32 outputs for a 128-bit counter and a 64-bit key.
constexpr std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> ctr,
                                                     std::array<std::uint32_t, 2> key) noexcept {
  constexpr std::uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
  constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(m0) * ctr[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(m1) * ctr[2];
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
    key[0] += w0;
    key[1] += w1;
  }
  return ctr;
}

/// A reproducible stream of 32-bit words: word i of stream `stream` under `seed`.
/// Random access is O(1); sequential use via next_*() walks the index forward.
/// Not cryptographic.
class counter_rng {
 public:
  constexpr counter_rng(std::uint64_t seed, std::uint64_t stream = 0, std::uint64_t index = 0) noexcept
      : key_{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)},
        stream_(stream), index_(index) {}

  /// Word `index` of this stream, independent of any state.
  constexpr std::uint32_t at(std::uint64_t index) const noexcept {
    const std::uint64_t block = index >> 2;
    const auto out = philox4x32_10({static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                                     static_cast<std::uint32_t>(stream_), static_cast<std::uint32_t>(stream_ >> 32)},
                                    key_);
    return out[index & 3];
  }
  /// Uniform float in [0, 1) with 24 random bits, from word `index`.
  constexpr float uniform_at(std::uint64_t index) const noexcept {
    return static_cast<float>(at(index) >> 8) * 0x1p-24f;
  }

  constexpr std::uint32_t next_u32() noexcept { return at(index_++); }
  constexpr std::uint64_t next_u64() noexcept {
    const std::uint64_t lo = next_u32();
    return lo | (static_cast<std::uint64_t>(next_u32()) << 32);
  }
  constexpr float next_uniform() noexcept { return uniform_at(index_++); }
  /// Uniform integer in [0, bound), bound > 0, by Lemire's multiply-shift with rejection.
  constexpr std::uint32_t next_below(std::uint32_t bound) noexcept {
    std::uint64_t m = static_cast<std::uint64_t>(next_u32()) * bound;
    auto low = static_cast<std::uint32_t>(m);
    if (low < bound) {
      const std::uint32_t threshold = static_cast<std::uint32_t>(-bound) % bound;
      while (low < threshold) {
        m = static_cast<std::uint64_t>(next_u32()) * bound;
        low = static_cast<std::uint32_t>(m);
      }
    }
    return static_cast<std::uint32_t>(m >> 32);
  }
  /// Standard normal by Box-Muller on two uniforms (float math: reproducible only where
  /// libm agrees; use for test data, not for consensus).
  float next_normal() noexcept {
    const float u1 = (static_cast<float>(next_u32() >> 8) + 1.0f) * 0x1p-24f;  // (0, 1]
    const float u2 = next_uniform();
    return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853071795864f * u2);
  }

  /// Fills `out` with uniforms in [0, 1) from words index()..index()+out.size().
  constexpr void fill_uniform(std::span<float> out) noexcept {
    for (float& v : out) v = next_uniform();
  }

  constexpr std::uint64_t index() const noexcept { return index_; }
  constexpr void seek(std::uint64_t index) noexcept { index_ = index; }

 private:
  std::array<std::uint32_t, 2> key_;
  std::uint64_t stream_;
  std::uint64_t index_;
};

}  // namespace dtrain

