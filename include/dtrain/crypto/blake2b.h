// dtrain/crypto/blake2b.h: BLAKE2b-256 (RFC 7693, unkeyed, 32-byte digest) over libsodium's
// crypto_generichash_blake2b: a one-shot call and a streaming init/update/final state
// that give the same digest however the input is split.
#pragma once

#include <array>
#include <cstddef>
#include <span>

namespace dtrain::crypto {

/// A 256-bit digest.
using digest256 = std::array<std::byte, 32>;

/// BLAKE2b with a 32-byte output and no key (RFC 7693; equals Python's
/// hashlib.blake2b(data, digest_size=32)). Deterministic; any length, including empty.
digest256 blake2b_256(std::span<const std::byte> data) noexcept;

/// The streaming form, for data that arrives in pieces:
///   blake2b_256_state h; h.update(a); h.update(b); digest256 d = h.final();
/// gives blake2b_256(a ‖ b). The object is a plain value (copy it to fork a prefix's
/// state); one object is not safe to use from several threads at once.
class blake2b_256_state {
 public:
  /// Ready to hash (init() already done).
  blake2b_256_state() noexcept;

  /// Starts over: forgets everything hashed so far.
  void init() noexcept;
  /// Appends `data` to the message. @pre final() has not been called since init().
  void update(std::span<const std::byte> data) noexcept;
  /// The digest of everything passed to update() since init(). The state is then spent:
  /// call init() before hashing again. @pre not already finalised since init().
  digest256 final() noexcept;

 private:
  // libsodium's crypto_generichash_blake2b_state (384 bytes, 64-byte aligned), kept opaque
  // so this header does not pull in sodium.h; the .cpp checks size and alignment.
  alignas(64) std::array<unsigned char, 384> opaque_;
  bool finalised_ = false;
};

}  // namespace dtrain::crypto
