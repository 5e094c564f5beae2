// BLAKE2b-256 over libsodium's crypto_generichash_blake2b (the algorithm libsodium's
// generic crypto_generichash aliases; named explicitly so a libsodium default change
// could never change a digest).
#include "dtrain/crypto/blake2b.h"

#include <sodium.h>

#include "dtrain/core/assert.h"
#include "sodium_init.h"

namespace dtrain::crypto {
namespace {

static_assert(sizeof(crypto_generichash_blake2b_state) <= 384 && alignof(crypto_generichash_blake2b_state) <= 64,
              "blake2b_256_state::opaque_ is too small for libsodium's state");
static_assert(crypto_generichash_blake2b_BYTES_MIN <= 32 && crypto_generichash_blake2b_BYTES_MAX >= 32);

auto u8(std::byte* p) { return reinterpret_cast<unsigned char*>(p); }
auto u8(const std::byte* p) { return reinterpret_cast<const unsigned char*>(p); }

}  // namespace

digest256 blake2b_256(std::span<const std::byte> data) noexcept {
  detail::ensure_sodium();
  digest256 out{};
  // libsodium accepts a null pointer only together with length 0; an empty span may carry
  // either, so pass a valid address for the empty message.
  static constexpr unsigned char empty = 0;
  const unsigned char* in = data.empty() ? &empty : u8(data.data());
  const int rc = crypto_generichash_blake2b(u8(out.data()), out.size(), in, data.size(), nullptr, 0);
  DTRAIN_ASSERT(rc == 0);
  return out;
}

blake2b_256_state::blake2b_256_state() noexcept { init(); }

void blake2b_256_state::init() noexcept {
  detail::ensure_sodium();
  auto* st = reinterpret_cast<crypto_generichash_blake2b_state*>(opaque_.data());
  const int rc = crypto_generichash_blake2b_init(st, nullptr, 0, 32);
  DTRAIN_ASSERT(rc == 0);
  finalised_ = false;
}

void blake2b_256_state::update(std::span<const std::byte> data) noexcept {
  DTRAIN_ASSERT(!finalised_ && "blake2b_256_state::update after final(); call init() first");
  if (data.empty()) return;
  auto* st = reinterpret_cast<crypto_generichash_blake2b_state*>(opaque_.data());
  const int rc = crypto_generichash_blake2b_update(st, u8(data.data()), data.size());
  DTRAIN_ASSERT(rc == 0);
}

digest256 blake2b_256_state::final() noexcept {
  DTRAIN_ASSERT(!finalised_ && "blake2b_256_state::final called twice; call init() first");
  auto* st = reinterpret_cast<crypto_generichash_blake2b_state*>(opaque_.data());
  digest256 out{};
  const int rc = crypto_generichash_blake2b_final(st, u8(out.data()), out.size());
  DTRAIN_ASSERT(rc == 0);
  finalised_ = true;
  return out;
}

}  // namespace dtrain::crypto
