// Ed25519 identities over libsodium.
#include "dtrain/crypto/identity.h"

#include <sodium.h>

#include "sodium_init.h"

namespace dtrain::crypto {
namespace {

static_assert(crypto_sign_PUBLICKEYBYTES == 32 && crypto_sign_SECRETKEYBYTES == 64 &&
              crypto_sign_BYTES == 64 && crypto_sign_SEEDBYTES == 32);

using detail::ensure_sodium;

auto u8(std::byte* p) { return reinterpret_cast<unsigned char*>(p); }
auto u8(const std::byte* p) { return reinterpret_cast<const unsigned char*>(p); }

std::string to_hex(const std::byte* p, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (std::size_t i = 0; i < n; ++i) {
    const auto b = static_cast<unsigned>(p[i]);
    s[2 * i] = digits[b >> 4];
    s[2 * i + 1] = digits[b & 15];
  }
  return s;
}

}  // namespace

std::string peer_id::hex() const { return to_hex(key.data(), key.size()); }
std::string peer_id::short_hex() const { return to_hex(key.data(), 4); }

identity identity::generate() {
  ensure_sodium();
  identity id;
  crypto_sign_keypair(u8(id.id_.key.data()), u8(id.secret_.data()));
  return id;
}

result<identity> identity::from_seed(std::span<const std::byte> seed) {
  if (seed.size() != crypto_sign_SEEDBYTES)
    return invalid_argument("identity::from_seed: the seed must be 32 bytes, got " + std::to_string(seed.size()));
  ensure_sodium();
  identity id;
  crypto_sign_seed_keypair(u8(id.id_.key.data()), u8(id.secret_.data()), u8(seed.data()));
  return id;
}

identity::identity(const identity& other) noexcept : id_(other.id_), secret_(other.secret_) {}

identity& identity::operator=(const identity& other) noexcept {
  id_ = other.id_;
  secret_ = other.secret_;
  return *this;
}

identity::~identity() { sodium_memzero(secret_.data(), secret_.size()); }

signature identity::sign(std::span<const std::byte> msg) const noexcept {
  signature sig{};
  crypto_sign_detached(u8(sig.data()), nullptr, u8(msg.data()), msg.size(), u8(secret_.data()));
  return sig;
}

bool verify(const peer_id& id, std::span<const std::byte> msg, const signature& sig) noexcept {
  ensure_sodium();
  return crypto_sign_verify_detached(u8(sig.data()), u8(msg.data()), msg.size(), u8(id.key.data())) == 0;
}

void random_bytes(std::span<std::byte> out) noexcept {
  ensure_sodium();
  randombytes_buf(out.data(), out.size());
}

}  // namespace dtrain::crypto
