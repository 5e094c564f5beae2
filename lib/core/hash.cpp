// XXH3 wrappers over libxxhash (Debian libxxhash-dev).
#include "dtrain/core/hash.h"

#include <xxhash.h>

#include "dtrain/core/assert.h"

namespace dtrain {

std::array<std::byte, 16> hash128::canonical() const noexcept {
  std::array<std::byte, 16> out{};
  for (int i = 0; i < 8; ++i) {
    out[static_cast<std::size_t>(i)] = static_cast<std::byte>(high >> (56 - 8 * i));
    out[static_cast<std::size_t>(8 + i)] = static_cast<std::byte>(low >> (56 - 8 * i));
  }
  return out;
}

std::string hash128::hex() const {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(32);
  for (std::byte b : canonical()) {
    s.push_back(digits[static_cast<unsigned>(b) >> 4]);
    s.push_back(digits[static_cast<unsigned>(b) & 15]);
  }
  return s;
}

std::uint64_t xxh3_64(std::span<const std::byte> data, std::uint64_t seed) noexcept {
  return XXH3_64bits_withSeed(data.data(), data.size(), seed);
}

hash128 xxh3_128(std::span<const std::byte> data, std::uint64_t seed) noexcept {
  const XXH128_hash_t h = XXH3_128bits_withSeed(data.data(), data.size(), seed);
  return {h.low64, h.high64};
}

struct xxh3_64_stream::impl {
  XXH3_state_t* st = XXH3_createState();
  ~impl() { XXH3_freeState(st); }
};
xxh3_64_stream::xxh3_64_stream(std::uint64_t seed) : impl_(std::make_unique<impl>()) {
  DTRAIN_ASSERT(impl_->st != nullptr);
  reset(seed);
}
xxh3_64_stream::~xxh3_64_stream() = default;
xxh3_64_stream::xxh3_64_stream(xxh3_64_stream&&) noexcept = default;
xxh3_64_stream& xxh3_64_stream::operator=(xxh3_64_stream&&) noexcept = default;
void xxh3_64_stream::reset(std::uint64_t seed) noexcept { XXH3_64bits_reset_withSeed(impl_->st, seed); }
void xxh3_64_stream::update(std::span<const std::byte> data) noexcept {
  XXH3_64bits_update(impl_->st, data.data(), data.size());
}
std::uint64_t xxh3_64_stream::digest() const noexcept { return XXH3_64bits_digest(impl_->st); }

struct xxh3_128_stream::impl {
  XXH3_state_t* st = XXH3_createState();
  ~impl() { XXH3_freeState(st); }
};
xxh3_128_stream::xxh3_128_stream(std::uint64_t seed) : impl_(std::make_unique<impl>()) {
  DTRAIN_ASSERT(impl_->st != nullptr);
  reset(seed);
}
xxh3_128_stream::~xxh3_128_stream() = default;
xxh3_128_stream::xxh3_128_stream(xxh3_128_stream&&) noexcept = default;
xxh3_128_stream& xxh3_128_stream::operator=(xxh3_128_stream&&) noexcept = default;
void xxh3_128_stream::reset(std::uint64_t seed) noexcept { XXH3_128bits_reset_withSeed(impl_->st, seed); }
void xxh3_128_stream::update(std::span<const std::byte> data) noexcept {
  XXH3_128bits_update(impl_->st, data.data(), data.size());
}
hash128 xxh3_128_stream::digest() const noexcept {
  const XXH128_hash_t h = XXH3_128bits_digest(impl_->st);
  return {h.low64, h.high64};
}

}  // namespace dtrain
