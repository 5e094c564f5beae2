// lib/crypto/blake2b_many.cpp: blake2b_256_many and its 4-lane BLAKE2b-256 kernels
// (blake2b_many_kernels.h), written from RFC 7693: a portable build that loops over the
// lanes, an AVX2 build with one lane per 64-bit element, and the runtime choice.
#include "dtrain/crypto/blake2b_many.h"

#include <cstdint>
#include <cstring>

#include "blake2b_many_kernels.h"
#include "dtrain/core/assert.h"

#if DTRAIN_B2X4_HAVE_AVX2_BUILD
#include <immintrin.h>
#define B2_AVX2 __attribute__((target("avx2")))
#endif
#define B2_INLINE inline __attribute__((always_inline))

namespace dtrain::crypto::detail {
namespace {

constexpr std::size_t lanes = 4;
constexpr std::size_t block_bytes = 128;
constexpr int rounds = 12;

// RFC 7693 section 2.6: the BLAKE2b initialisation vector (SHA-512's initial hash).
constexpr std::uint64_t iv[8] = {0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
                                 0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179};

// RFC 7693 section 2.7: the message schedule; rounds 10 and 11 reuse rows 0 and 1.
constexpr std::uint8_t sigma[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},  //
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},  //
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},  //
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},  //
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},  //
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},  //
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},  //
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},  //
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},  //
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0}};

// h[0] ^= parameter block word 0: digest length 32, key length 0, fanout 1, depth 1
// (RFC 7693 section 2.5; salt and personalisation are zero, so h[1..7] = iv[1..7]).
constexpr std::uint64_t param_word0 = 0x01010020;

// One pass of the 4-lane kernel: per lane, the 128-byte block to compress, the counter
// t0 after it, the final-block flag f0, and whether the lane is already done.
struct lane_pass {
  const std::byte* block[lanes];
  std::uint64_t t[lanes];     // bytes of the message up to the end of this block (t1 = 0)
  std::uint64_t f[lanes];     // ~0 on the lane's last block, else 0
  std::uint64_t keep[lanes];  // ~0 where the lane has finished: its state must not change
};

// Walks the four messages block by block. A lane's last block (also the single all-zero
// block of an empty message) is copied, zero-padded, into the lane's own buffer; every
// other block is read in place, at whatever alignment it has.
class lane_feeder {
 public:
  lane_feeder(const std::byte* const in[lanes], const std::size_t len[lanes]) noexcept {
    // Finished lanes keep pointing at their buffer; zero it so they never read garbage.
    std::memset(tail_, 0, sizeof(tail_));
    for (std::size_t l = 0; l < lanes; ++l) {
      in_[l] = in[l];
      len_[l] = len[l];
      // The empty message still compresses one block; len + 127 could overflow.
      blocks_[l] = len[l] == 0 ? 1 : len[l] / block_bytes + (len[l] % block_bytes != 0 ? 1 : 0);
      passes_ = blocks_[l] > passes_ ? blocks_[l] : passes_;
    }
  }

  /// Fills `p` for the next pass; false once every lane has had its last block.
  bool next(lane_pass& p) noexcept {
    if (pass_ == passes_) return false;
    const std::size_t offset = pass_ * block_bytes;
    for (std::size_t l = 0; l < lanes; ++l) {
      if (pass_ >= blocks_[l]) {
        p.block[l] = tail_[l];
        p.t[l] = 0;
        p.f[l] = 0;
        p.keep[l] = ~std::uint64_t{0};
        continue;
      }
      const bool last = pass_ + 1 == blocks_[l];
      const std::size_t left = len_[l] - offset;
      if (left >= block_bytes) {
        p.block[l] = in_[l] + offset;
      } else {
        std::memset(tail_[l], 0, block_bytes);
        if (left != 0) std::memcpy(tail_[l], in_[l] + offset, left);
        p.block[l] = tail_[l];
      }
      p.t[l] = last ? len_[l] : offset + block_bytes;
      p.f[l] = last ? ~std::uint64_t{0} : 0;
      p.keep[l] = 0;
    }
    ++pass_;
    return true;
  }

 private:
  const std::byte* in_[lanes];
  std::size_t len_[lanes];
  std::size_t blocks_[lanes];
  std::size_t passes_ = 0;
  std::size_t pass_ = 0;
  alignas(32) std::byte tail_[lanes][block_bytes];
};

B2_INLINE std::uint64_t load_le64(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t{std::to_integer<std::uint8_t>(p[i])} << (8 * i);
  return v;
}

B2_INLINE void store_le64(std::byte* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}

// ---- portable: state word i of lane l is h[i][l] ----------------------------------

using words4 = std::uint64_t[lanes];

B2_INLINE std::uint64_t rotr(std::uint64_t x, int n) noexcept { return (x >> n) | (x << (64 - n)); }

// The mixing function G of RFC 7693 section 3.1, on all lanes.
B2_INLINE void g_portable(words4* v, int a, int b, int c, int d, const words4& x, const words4& y) noexcept {
  for (std::size_t l = 0; l < lanes; ++l) {
    v[a][l] = v[a][l] + v[b][l] + x[l];
    v[d][l] = rotr(v[d][l] ^ v[a][l], 32);
    v[c][l] = v[c][l] + v[d][l];
    v[b][l] = rotr(v[b][l] ^ v[c][l], 24);
    v[a][l] = v[a][l] + v[b][l] + y[l];
    v[d][l] = rotr(v[d][l] ^ v[a][l], 16);
    v[c][l] = v[c][l] + v[d][l];
    v[b][l] = rotr(v[b][l] ^ v[c][l], 63);
  }
}

// The compression function F of RFC 7693 section 3.2, on all lanes.
void compress_portable(words4* h, const lane_pass& p) noexcept {
  words4 m[16];
  words4 v[16];
  for (std::size_t j = 0; j < 16; ++j)
    for (std::size_t l = 0; l < lanes; ++l) m[j][l] = load_le64(p.block[l] + 8 * j);
  for (std::size_t i = 0; i < 8; ++i) {
    for (std::size_t l = 0; l < lanes; ++l) {
      v[i][l] = h[i][l];
      v[i + 8][l] = iv[i];
    }
  }
  for (std::size_t l = 0; l < lanes; ++l) {
    v[12][l] ^= p.t[l];  // v[13] ^= t1 = 0
    v[14][l] ^= p.f[l];
  }
  for (int r = 0; r < rounds; ++r) {
    const std::uint8_t* s = sigma[r % 10];
    g_portable(v, 0, 4, 8, 12, m[s[0]], m[s[1]]);
    g_portable(v, 1, 5, 9, 13, m[s[2]], m[s[3]]);
    g_portable(v, 2, 6, 10, 14, m[s[4]], m[s[5]]);
    g_portable(v, 3, 7, 11, 15, m[s[6]], m[s[7]]);
    g_portable(v, 0, 5, 10, 15, m[s[8]], m[s[9]]);
    g_portable(v, 1, 6, 11, 12, m[s[10]], m[s[11]]);
    g_portable(v, 2, 7, 8, 13, m[s[12]], m[s[13]]);
    g_portable(v, 3, 4, 9, 14, m[s[14]], m[s[15]]);
  }
  for (std::size_t i = 0; i < 8; ++i)
    for (std::size_t l = 0; l < lanes; ++l)
      if (p.keep[l] == 0) h[i][l] ^= v[i][l] ^ v[i + 8][l];
}

// ---- AVX2: state word i of all four lanes is one __m256i (lane l = element l) ------

#if DTRAIN_B2X4_HAVE_AVX2_BUILD

B2_AVX2 B2_INLINE __m256i add(__m256i a, __m256i b) noexcept { return _mm256_add_epi64(a, b); }
B2_AVX2 B2_INLINE __m256i xor_(__m256i a, __m256i b) noexcept { return _mm256_xor_si256(a, b); }
B2_AVX2 B2_INLINE __m256i rotr32(__m256i x) noexcept { return _mm256_shuffle_epi32(x, _MM_SHUFFLE(2, 3, 0, 1)); }
// Rotations by whole bytes are byte shuffles within each 64-bit word: result byte i is
// source byte (i + 3) mod 8 for 24 bits, (i + 2) mod 8 for 16.
B2_AVX2 B2_INLINE __m256i rotr24(__m256i x) noexcept {
  const __m256i k = _mm256_setr_epi8(3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10,  //
                                     3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10);
  return _mm256_shuffle_epi8(x, k);
}
B2_AVX2 B2_INLINE __m256i rotr16(__m256i x) noexcept {
  const __m256i k = _mm256_setr_epi8(2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9,  //
                                     2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9);
  return _mm256_shuffle_epi8(x, k);
}
// rotr 63 = rotl 1: x + x is the left shift by one.
B2_AVX2 B2_INLINE __m256i rotr63(__m256i x) noexcept { return _mm256_or_si256(_mm256_srli_epi64(x, 63), add(x, x)); }

B2_AVX2 B2_INLINE void g_avx2(__m256i* v, int a, int b, int c, int d, __m256i x, __m256i y) noexcept {
  v[a] = add(add(v[a], v[b]), x);
  v[d] = rotr32(xor_(v[d], v[a]));
  v[c] = add(v[c], v[d]);
  v[b] = rotr24(xor_(v[b], v[c]));
  v[a] = add(add(v[a], v[b]), y);
  v[d] = rotr16(xor_(v[d], v[a]));
  v[c] = add(v[c], v[d]);
  v[b] = rotr63(xor_(v[b], v[c]));
}

B2_AVX2 B2_INLINE __m256i loadu(const void* p) noexcept { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// m[j] = message word j of the four lanes: four unaligned 32-byte loads (words 4k..4k+3
// of each lane), then a 4x4 transpose of 64-bit elements.
B2_AVX2 B2_INLINE void load_message(const lane_pass& p, __m256i* m) noexcept {
  for (std::size_t k = 0; k < 4; ++k) {
    const __m256i a = loadu(p.block[0] + 32 * k);
    const __m256i b = loadu(p.block[1] + 32 * k);
    const __m256i c = loadu(p.block[2] + 32 * k);
    const __m256i d = loadu(p.block[3] + 32 * k);
    const __m256i ab_lo = _mm256_unpacklo_epi64(a, b);  // a0 b0 a2 b2
    const __m256i ab_hi = _mm256_unpackhi_epi64(a, b);  // a1 b1 a3 b3
    const __m256i cd_lo = _mm256_unpacklo_epi64(c, d);  // c0 d0 c2 d2
    const __m256i cd_hi = _mm256_unpackhi_epi64(c, d);  // c1 d1 c3 d3
    m[4 * k + 0] = _mm256_permute2x128_si256(ab_lo, cd_lo, 0x20);  // a0 b0 c0 d0
    m[4 * k + 1] = _mm256_permute2x128_si256(ab_hi, cd_hi, 0x20);  // a1 b1 c1 d1
    m[4 * k + 2] = _mm256_permute2x128_si256(ab_lo, cd_lo, 0x31);  // a2 b2 c2 d2
    m[4 * k + 3] = _mm256_permute2x128_si256(ab_hi, cd_hi, 0x31);  // a3 b3 c3 d3
  }
}

B2_AVX2 B2_INLINE __m256i broadcast(std::uint64_t x) noexcept { return _mm256_set1_epi64x(static_cast<long long>(x)); }

B2_AVX2 B2_INLINE void compress_avx2(__m256i* h, const lane_pass& p) noexcept {
  __m256i m[16];
  load_message(p, m);
  __m256i v[16];
  for (std::size_t i = 0; i < 8; ++i) {
    v[i] = h[i];
    v[i + 8] = broadcast(iv[i]);
  }
  v[12] = xor_(v[12], loadu(p.t));  // v[13] ^= t1 = 0
  v[14] = xor_(v[14], loadu(p.f));
  for (int r = 0; r < rounds; ++r) {
    const std::uint8_t* s = sigma[r % 10];
    g_avx2(v, 0, 4, 8, 12, m[s[0]], m[s[1]]);
    g_avx2(v, 1, 5, 9, 13, m[s[2]], m[s[3]]);
    g_avx2(v, 2, 6, 10, 14, m[s[4]], m[s[5]]);
    g_avx2(v, 3, 7, 11, 15, m[s[6]], m[s[7]]);
    g_avx2(v, 0, 5, 10, 15, m[s[8]], m[s[9]]);
    g_avx2(v, 1, 6, 11, 12, m[s[10]], m[s[11]]);
    g_avx2(v, 2, 7, 8, 13, m[s[12]], m[s[13]]);
    g_avx2(v, 3, 4, 9, 14, m[s[14]], m[s[15]]);
  }
  // Finished lanes take their old state back.
  const __m256i keep = loadu(p.keep);
  for (std::size_t i = 0; i < 8; ++i)
    h[i] = _mm256_blendv_epi8(xor_(h[i], xor_(v[i], v[i + 8])), h[i], keep);
}

#endif  // DTRAIN_B2X4_HAVE_AVX2_BUILD

bool have_avx2() noexcept { return cpu_has_avx2(); }

}  // namespace

void blake2b_256_x4_portable(const std::byte* const in[4], const std::size_t len[4], digest256 out[4]) noexcept {
  words4 h[8];
  for (std::size_t i = 0; i < 8; ++i)
    for (std::size_t l = 0; l < lanes; ++l) h[i][l] = iv[i] ^ (i == 0 ? param_word0 : 0);
  lane_feeder feed(in, len);
  lane_pass p;
  while (feed.next(p)) compress_portable(h, p);
  // The 32-byte digest is state words 0..3, little-endian.
  for (std::size_t l = 0; l < lanes; ++l)
    for (std::size_t i = 0; i < 4; ++i) store_le64(out[l].data() + 8 * i, h[i][l]);
}

#if DTRAIN_B2X4_HAVE_AVX2_BUILD
B2_AVX2 void blake2b_256_x4_avx2(const std::byte* const in[4], const std::size_t len[4], digest256 out[4]) noexcept {
  __m256i h[8];
  for (std::size_t i = 0; i < 8; ++i) h[i] = broadcast(iv[i] ^ (i == 0 ? param_word0 : 0));
  lane_feeder feed(in, len);
  lane_pass p;
  while (feed.next(p)) compress_avx2(h, p);
  alignas(32) std::uint64_t w[4][lanes];
  for (std::size_t i = 0; i < 4; ++i) _mm256_store_si256(reinterpret_cast<__m256i*>(w[i]), h[i]);
  for (std::size_t l = 0; l < lanes; ++l)
    for (std::size_t i = 0; i < 4; ++i) store_le64(out[l].data() + 8 * i, w[i][l]);
}
#endif

}  // namespace dtrain::crypto::detail

namespace dtrain::crypto {
namespace {

// Up to four messages through the AVX2 kernel; missing lanes are empty dummies whose
// digests are dropped.
[[maybe_unused]] void hash_group_avx2(std::span<const std::span<const std::byte>> group, digest256* out) noexcept {
#if DTRAIN_B2X4_HAVE_AVX2_BUILD
  const std::byte* in[4] = {nullptr, nullptr, nullptr, nullptr};
  std::size_t len[4] = {0, 0, 0, 0};
  for (std::size_t l = 0; l < group.size(); ++l) {
    in[l] = group[l].data();
    len[l] = group[l].size();
  }
  digest256 d[4];
  detail::blake2b_256_x4_avx2(in, len, d);
  for (std::size_t l = 0; l < group.size(); ++l) out[l] = d[l];
#else
  (void)group;
  (void)out;
#endif
}

}  // namespace

bool blake2b_256_many_uses_avx2() noexcept { return detail::have_avx2(); }

void blake2b_256_many(std::span<const std::span<const std::byte>> msgs, std::span<digest256> out) noexcept {
  DTRAIN_ASSERT(out.size() == msgs.size() && "blake2b_256_many: out.size() != msgs.size()");
  const std::size_t n = msgs.size();
  std::size_t i = 0;
  if (detail::have_avx2() && n >= 2) {
    for (; i + 4 <= n; i += 4) hash_group_avx2(msgs.subspan(i, 4), &out[i]);
    // A tail of 2 or 3 still beats one-at-a-time libsodium with 1 or 2 idle lanes
    // (bench/crypto/blake2b_bench.cpp); a tail of 1 goes to libsodium below.
    if (n - i >= 2) {
      hash_group_avx2(msgs.subspan(i), &out[i]);
      i = n;
    }
  }
  for (; i < n; ++i) out[i] = blake2b_256(msgs[i]);
}

}  // namespace dtrain::crypto
