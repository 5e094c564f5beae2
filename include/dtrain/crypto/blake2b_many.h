// dtrain/crypto/blake2b_many.h: BLAKE2b-256 of many independent messages in one call,
// four at a time on an AVX2 core (one BLAKE2b state per 64-bit lane). Every digest is
// plain BLAKE2b-256 of its own message, bit for bit equal to blake2b_256().
#pragma once

#include <span>

#include "dtrain/crypto/blake2b.h"

namespace dtrain::crypto {

/// Hashes n independent messages: out[i] = blake2b_256(msgs[i]) for every i, bit for bit.
/// Uses a 4-lane AVX2 kernel when the CPU has AVX2: messages are taken in order, four per
/// pass, and a pass costs as much as its longest message (shorter lanes idle), so equal
/// lengths are fastest. A tail of 2 or 3 messages runs through the kernel with empty
/// dummy lanes; a single message (n == 1, or a tail of 1) goes to blake2b_256, which is
/// faster for one message. Without AVX2 every message goes to blake2b_256.
/// Deterministic; no allocation; messages may have any length (including empty, with a
/// null data pointer) and any alignment; they may overlap each other but not `out`.
/// @pre out.size() == msgs.size() (asserted).
void blake2b_256_many(std::span<const std::span<const std::byte>> msgs, std::span<digest256> out) noexcept;

/// True when blake2b_256_many uses the AVX2 kernel on this machine (for benchmarks/tests).
bool blake2b_256_many_uses_avx2() noexcept;

}  // namespace dtrain::crypto
