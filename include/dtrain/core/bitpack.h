// dtrain/core/bitpack.h: b-bit unsigned integers (1 <= b <= 32) packed into a
// little-endian bit stream: value i occupies stream bits [i*b, (i+1)*b), bit 0 of the
// stream is bit 0 of byte 0. Padding bits of the last byte are zero. Fast paths for
// b = 1, 2, 4, 8, 16; a 64-bit accumulator loop for the rest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

#include "dtrain/core/assert.h"

namespace dtrain {

/// Bytes needed for n values of `bits` bits.
constexpr std::size_t packed_bytes(std::size_t n, unsigned bits) noexcept {
  return (n * bits + 7) / 8;
}

/// Smallest b with 2^b >= n (ceil(log2 n)); 0 for n <= 1. Index width for a chunk of n.
constexpr unsigned bits_for(std::uint64_t n) noexcept {
  unsigned b = 0;
  while (b < 64 && (std::uint64_t{1} << b) < n) ++b;
  return b;
}

/// Packs values[i] & mask(bits) into out. @pre 1 <= bits <= 32 and bits <= 8*sizeof(T);
/// out.size() >= packed_bytes(values.size(), bits). Writes exactly packed_bytes bytes.
template <class T>
void pack_bits(std::span<const T> values, unsigned bits, std::span<std::byte> out) noexcept {
  static_assert(std::is_unsigned_v<T>);
  DTRAIN_ASSERT(bits >= 1 && bits <= 32 && bits <= 8 * sizeof(T));
  const std::size_t n = values.size();
  DTRAIN_ASSERT(out.size() >= packed_bytes(n, bits));
  auto* o = reinterpret_cast<std::uint8_t*>(out.data());
  const T* v = values.data();
  if (bits == 8) {
    for (std::size_t i = 0; i < n; ++i) o[i] = static_cast<std::uint8_t>(v[i]);
    return;
  }
  if (bits == 4) {
    const std::size_t pairs = n / 2;
    for (std::size_t i = 0; i < pairs; ++i)
      o[i] = static_cast<std::uint8_t>((v[2 * i] & 15u) | ((v[2 * i + 1] & 15u) << 4));
    if (n & 1) o[pairs] = static_cast<std::uint8_t>(v[n - 1] & 15u);
    return;
  }
  if (bits == 2 || bits == 1) {
    const unsigned per = 8 / bits;
    const unsigned m = (1u << bits) - 1;
    const std::size_t full = n / per;
    for (std::size_t i = 0; i < full; ++i) {
      unsigned byte = 0;
      for (unsigned j = 0; j < per; ++j) byte |= (static_cast<unsigned>(v[i * per + j]) & m) << (j * bits);
      o[i] = static_cast<std::uint8_t>(byte);
    }
    if (n % per) {
      unsigned byte = 0;
      for (std::size_t j = 0; j < n % per; ++j) byte |= (static_cast<unsigned>(v[full * per + j]) & m) << (j * bits);
      o[full] = static_cast<std::uint8_t>(byte);
    }
    return;
  }
  if (bits == 16) {
    for (std::size_t i = 0; i < n; ++i) {
      o[2 * i] = static_cast<std::uint8_t>(v[i]);
      o[2 * i + 1] = static_cast<std::uint8_t>(static_cast<std::uint32_t>(v[i]) >> 8);
    }
    return;
  }
  const std::uint64_t mask = (std::uint64_t{1} << bits) - 1;
  std::uint64_t acc = 0;
  unsigned have = 0;
  std::size_t pos = 0;
  for (std::size_t i = 0; i < n; ++i) {
    acc |= (static_cast<std::uint64_t>(v[i]) & mask) << have;
    have += bits;
    while (have >= 8) {
      o[pos++] = static_cast<std::uint8_t>(acc);
      acc >>= 8;
      have -= 8;
    }
  }
  if (have) o[pos] = static_cast<std::uint8_t>(acc);
}

/// Unpacks values.size() values of `bits` bits from `in`. @pre 1 <= bits <= 32,
/// bits <= 8*sizeof(T), in.size() >= packed_bytes(values.size(), bits).
template <class T>
void unpack_bits(std::span<const std::byte> in, unsigned bits, std::span<T> values) noexcept {
  static_assert(std::is_unsigned_v<T>);
  DTRAIN_ASSERT(bits >= 1 && bits <= 32 && bits <= 8 * sizeof(T));
  const std::size_t n = values.size();
  DTRAIN_ASSERT(in.size() >= packed_bytes(n, bits));
  const auto* p = reinterpret_cast<const std::uint8_t*>(in.data());
  T* v = values.data();
  if (bits == 8) {
    for (std::size_t i = 0; i < n; ++i) v[i] = p[i];
    return;
  }
  if (bits == 4) {
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>((p[i >> 1] >> ((i & 1) * 4)) & 15u);
    return;
  }
  if (bits == 2) {
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>((p[i >> 2] >> ((i & 3) * 2)) & 3u);
    return;
  }
  if (bits == 1) {
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>((p[i >> 3] >> (i & 7)) & 1u);
    return;
  }
  if (bits == 16) {
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>(p[2 * i] | (p[2 * i + 1] << 8));
    return;
  }
  const std::uint64_t mask = (std::uint64_t{1} << bits) - 1;
  std::uint64_t acc = 0;
  unsigned have = 0;
  std::size_t pos = 0;
  for (std::size_t i = 0; i < n; ++i) {
    while (have < bits) {
      acc |= static_cast<std::uint64_t>(p[pos++]) << have;
      have += 8;
    }
    v[i] = static_cast<T>(acc & mask);
    acc >>= bits;
    have -= bits;
  }
}

/// True when the padding bits after n values of `bits` bits are all zero (canonical).
inline bool padding_is_zero(std::span<const std::byte> in, std::size_t n, unsigned bits) noexcept {
  const std::size_t used = n * bits;
  if (used % 8 == 0) return true;
  const auto last = static_cast<unsigned>(in[used / 8]);
  return (last >> (used % 8)) == 0;
}

}  // namespace dtrain
