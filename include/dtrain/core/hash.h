// dtrain/core/hash.h: XXH3-64 and XXH3-128 buffer hashing (libxxhash), one-shot and
// streaming. Fast, non-cryptographic: for integrity against accidents, not attackers.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace dtrain {

struct hash128 {
  std::uint64_t low = 0;
  std::uint64_t high = 0;
  friend bool operator==(const hash128&, const hash128&) = default;
  /// Canonical big-endian bytes (high then low), as XXH128_canonicalFromHash writes.
  std::array<std::byte, 16> canonical() const noexcept;
  /// 32 lower-case hex digits of the canonical form.
  std::string hex() const;
};

/// XXH3-64 of `data` with `seed`. Deterministic on every platform.
std::uint64_t xxh3_64(std::span<const std::byte> data, std::uint64_t seed = 0) noexcept;
/// XXH3-128 of `data` with `seed`.
hash128 xxh3_128(std::span<const std::byte> data, std::uint64_t seed = 0) noexcept;

/// Streaming XXH3-64: reset / update* / digest equals the one-shot hash of the
/// concatenated updates. Movable, not copyable.
class xxh3_64_stream {
 public:
  explicit xxh3_64_stream(std::uint64_t seed = 0);
  ~xxh3_64_stream();
  xxh3_64_stream(xxh3_64_stream&&) noexcept;
  xxh3_64_stream& operator=(xxh3_64_stream&&) noexcept;
  void reset(std::uint64_t seed = 0) noexcept;
  void update(std::span<const std::byte> data) noexcept;
  std::uint64_t digest() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Streaming XXH3-128, as xxh3_64_stream.
class xxh3_128_stream {
 public:
  explicit xxh3_128_stream(std::uint64_t seed = 0);
  ~xxh3_128_stream();
  xxh3_128_stream(xxh3_128_stream&&) noexcept;
  xxh3_128_stream& operator=(xxh3_128_stream&&) noexcept;
  void reset(std::uint64_t seed = 0) noexcept;
  void update(std::span<const std::byte> data) noexcept;
  hash128 digest() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace dtrain
