// dtrain/crypto/identity.h: Ed25519 identities (libsodium crypto_sign). A node's id is its
// 32-byte public key; control messages and TOPLOC envelopes are signed with the secret key.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <span>
#include <string>

#include "dtrain/core/status.h"

namespace dtrain::crypto {

/// A node's identity: its Ed25519 public key (RFC 8032).
struct peer_id {
  std::array<std::byte, 32> key{};

  /// The 64 lower-case hex digits of the key.
  std::string hex() const;
  /// The first 8 hex digits, for log lines ("3b6a27bc"). Not unique: never compare these.
  std::string short_hex() const;

  friend auto operator<=>(const peer_id&, const peer_id&) = default;
  friend bool operator==(const peer_id&, const peer_id&) = default;
};

/// An Ed25519 signature (64 bytes).
using signature = std::array<std::byte, 64>;

/// An Ed25519 key pair. The secret key is wiped (sodium_memzero) when the object dies;
/// copies hold their own copy of the secret and wipe it too. Thread-safe for concurrent
/// const use (sign() from several threads).
class identity {
 public:
  /// A fresh key pair from the OS CSPRNG (libsodium randombytes).
  static identity generate();

  /// The key pair derived from a 32-byte seed (crypto_sign_seed_keypair): the same seed
  /// gives the same keys on every machine, and since Ed25519 signing is deterministic the
  /// same signatures too (test vectors, reproducible tests). Keep production seeds secret.
  /// Errors: invalid_argument when seed.size() != 32.
  static result<identity> from_seed(std::span<const std::byte> seed);

  identity(const identity& other) noexcept;
  identity& operator=(const identity& other) noexcept;
  ~identity();

  /// This identity's public key.
  const peer_id& id() const noexcept { return id_; }

  /// The detached Ed25519 signature of `msg`. Deterministic for a given key and message.
  signature sign(std::span<const std::byte> msg) const noexcept;

 private:
  identity() = default;
  peer_id id_;
  std::array<std::byte, 64> secret_{};  // libsodium's secret key: seed || public key
};

/// True when `sig` is `id`'s valid Ed25519 signature of `msg` (crypto_sign_verify_detached:
/// strict, rejects non-canonical encodings and small-order keys). Never throws or crashes
/// on arbitrary bytes.
bool verify(const peer_id& id, std::span<const std::byte> msg, const signature& sig) noexcept;

/// Fills `out` with bytes from the OS CSPRNG (libsodium randombytes_buf): challenges,
/// session ids, seeds.
void random_bytes(std::span<std::byte> out) noexcept;

}  // namespace dtrain::crypto
