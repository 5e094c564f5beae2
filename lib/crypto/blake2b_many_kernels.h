// lib/crypto/blake2b_many_kernels.h (private): the two builds of the 4-lane BLAKE2b-256
// kernel behind blake2b_256_many: plain C++ (loops over lanes) and AVX2 (one lane per
// 64-bit element). Both give exactly blake2b_256 of each lane's message.
#pragma once

#include <cstddef>

#include "dtrain/core/cpu.h"
#include "dtrain/crypto/blake2b.h"

#define DTRAIN_B2X4_HAVE_AVX2_BUILD DTRAIN_X86

namespace dtrain::crypto::detail {

/// out[i] = blake2b_256(in[i], len[i]) for the four lanes i = 0..3. A pass over the four
/// messages costs as much as the longest; shorter lanes idle (their state is kept).
/// Any lengths (in[i] may be null when len[i] == 0) and any alignment. Lengths are
/// size_t, so the 128-bit BLAKE2b byte counter never needs its high word (t1 = 0).
void blake2b_256_x4_portable(const std::byte* const in[4], const std::size_t len[4], digest256 out[4]) noexcept;

#if DTRAIN_B2X4_HAVE_AVX2_BUILD
/// The same, with AVX2 intrinsics. @pre the CPU has AVX2 (blake2b_256_many_uses_avx2()).
void blake2b_256_x4_avx2(const std::byte* const in[4], const std::size_t len[4], digest256 out[4]) noexcept;
#endif

}  // namespace dtrain::crypto::detail
