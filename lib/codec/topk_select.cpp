// Exact chunk top-k: a sampled guess of the threshold, one vectorised filter pass, then a
// 256-bucket histogram and an nth_element over the one bucket holding the k-th key.
#include "dtrain/codec/detail/topk_select.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <functional>

#include "dtrain/core/assert.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace dtrain::codec::detail {
namespace {

// |x| as its IEEE bits: monotone in |x| for finite floats, +0 and -0 both map to 0.
inline std::uint32_t abs_key(float v) noexcept { return std::bit_cast<std::uint32_t>(v) & 0x7fffffffu; }

// A bucket is 2^20 key units, i.e. an eighth of an octave of |x|: fine enough that the
// threshold bucket of typical data holds a few dozen entries, coarse enough that 255
// buckets cover 32 octaves below the maximum (the rest share the last bucket).
constexpr unsigned bucket_shift = 20;
constexpr std::uint32_t last_bucket = 255;
constexpr std::size_t group = 16;
// Chunks below sample_min_n go straight to the candidate histogram; larger ones take
// the sampled path when k <= n / (2 * stride), else (or when the guess fails) the full one.
constexpr std::size_t sample_min_n = 512;
constexpr std::size_t sample_stride = 8;

// The largest abs_key in xs[0, n).
#if defined(__SSE2__)
std::uint32_t max_key(const float* xs, std::size_t n) {
  // Finite non-negative floats order like their bits, so maxps on |x| is the key max.
  const __m128 absmask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
  __m128 m0 = _mm_setzero_ps(), m1 = m0, m2 = m0, m3 = m0;
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm_max_ps(m0, _mm_and_ps(_mm_loadu_ps(xs + i), absmask));
    m1 = _mm_max_ps(m1, _mm_and_ps(_mm_loadu_ps(xs + i + 4), absmask));
    m2 = _mm_max_ps(m2, _mm_and_ps(_mm_loadu_ps(xs + i + 8), absmask));
    m3 = _mm_max_ps(m3, _mm_and_ps(_mm_loadu_ps(xs + i + 12), absmask));
  }
  m0 = _mm_max_ps(_mm_max_ps(m0, m1), _mm_max_ps(m2, m3));
  alignas(16) std::uint32_t lanes[4];
  _mm_store_si128(reinterpret_cast<__m128i*>(lanes), _mm_castps_si128(m0));
  std::uint32_t hi = std::max(std::max(lanes[0], lanes[1]), std::max(lanes[2], lanes[3]));
  for (; i < n; ++i) hi = std::max(hi, abs_key(xs[i]));
  return hi;
}
#else
std::uint32_t max_key(const float* xs, std::size_t n) {
  std::uint32_t hi = 0;
  for (std::size_t i = 0; i < n; ++i) hi = std::max(hi, abs_key(xs[i]));
  return hi;
}
#endif

// Indices i (ascending) with abs_key(xs[i]) > floor_key, written to cand (capacity n + 1);
// returns their count. Both paths return the same list.
#if defined(__SSE2__)
// lane_offsets[m]: the positions of the set bits of the 4-bit mask m, packed to the front.
struct quad_table {
  alignas(16) std::uint32_t off[16][4];
  std::uint8_t count[16];
};
constexpr quad_table make_quad_table() {
  quad_table t{};
  for (unsigned m = 0; m < 16; ++m) {
    unsigned c = 0;
    for (unsigned b = 0; b < 4; ++b)
      if (m >> b & 1u) t.off[m][c++] = b;
    t.count[m] = static_cast<std::uint8_t>(c);
  }
  return t;
}
constexpr quad_table quads = make_quad_table();

std::size_t filter_above(const float* xs, std::size_t n, std::uint32_t floor_key, std::uint32_t* cand,
                         const float* pf, std::size_t pf_n) {
  const __m128i absmask = _mm_set1_epi32(0x7fffffff);
  // Keys and floor_key are < 2^31, so the signed compare is exact.
  const __m128i fl = _mm_set1_epi32(static_cast<int>(floor_key));
  std::size_t nc = 0, i = 0;
  // Branch-free compaction: each quad stores four slots and advances by its hit count
  // (cand has room for the overhang).
  auto quad = [&](std::size_t at) {
    const __m128i c = _mm_cmpgt_epi32(_mm_and_si128(_mm_castps_si128(_mm_loadu_ps(xs + at)), absmask), fl);
    const auto m = static_cast<unsigned>(_mm_movemask_ps(_mm_castsi128_ps(c)));
    const __m128i o = _mm_load_si128(reinterpret_cast<const __m128i*>(quads.off[m]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(cand + nc), _mm_add_epi32(o, _mm_set1_epi32(static_cast<int>(at))));
    nc += quads.count[m];
  };
  for (; i + 16 <= n; i += 16) {
    // This chunk is cache-resident by now; pull the next one in meanwhile.
    if (i < pf_n) __builtin_prefetch(pf + i);
    quad(i);
    quad(i + 4);
    quad(i + 8);
    quad(i + 12);
  }
  for (; i < n; ++i) {
    cand[nc] = static_cast<std::uint32_t>(i);
    nc += abs_key(xs[i]) > floor_key;
  }
  return nc;
}
#else
std::size_t filter_above(const float* xs, std::size_t n, std::uint32_t floor_key, std::uint32_t* cand,
                         const float* pf, std::size_t pf_n) {
  std::size_t nc = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (i % 16 == 0 && i < pf_n) __builtin_prefetch(pf + i);
    cand[nc] = static_cast<std::uint32_t>(i);
    nc += abs_key(xs[i]) > floor_key;
  }
  return nc;
}
#endif

}  // namespace

std::size_t topk_selector::select_abs(std::span<const float> x, std::size_t k, std::span<std::uint32_t> idx,
                                      std::span<const float> next) {
  const std::size_t n = x.size();
  DTRAIN_ASSERT(n <= topk_max_chunk);
  if (k > n) k = n;
  DTRAIN_ASSERT(idx.size() >= k);
  std::uint32_t* out = idx.data();
  if (k == n) {
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint32_t>(i);
    return n;
  }
  if (k == 0) return 0;
  if (bins_.size() < n + group) {
    bins_.assign(n + group, 0);
    above_.assign(n + 1, 0);
    cand_.assign(n + 4, 0);
    cand_keys_.assign(n + 1, 0);
  }
  const float* xs = x.data();

  const std::uint32_t hi = max_key(xs, n);
  if (n < sample_min_n) {
    // Small chunks: every element is a candidate.
    std::uint32_t* cand = cand_.data();
    for (std::size_t i = 0; i < n; ++i) cand[i] = static_cast<std::uint32_t>(i);
    return finish_candidates(xs, cand, n, k, hi, 0, out);
  }
  if (k * sample_stride * 2 <= n) {
    const std::size_t m = select_sampled(xs, n, k, hi, out, next);
    if (m) return m;
  }
  return select_full(xs, n, k, hi, out);
}

std::size_t topk_selector::select_sampled(const float* xs, std::size_t n, std::size_t k, std::uint32_t hi,
                                          std::uint32_t* out, std::span<const float> next) {
  // Guess, from every sample_stride-th element, a key threshold that a little more than
  // k elements reach; candidates = every element at or above it. If fewer than k reach
  // it the guess failed (rare; adversarial data) and the caller runs the full method.
  // The result is exact either way: all top-k elements are among the candidates.
  std::uint32_t hist[256] = {};
  std::size_t samples = 0;
  for (std::size_t i = sample_stride / 2; i < n; i += sample_stride, ++samples) {
    const std::uint32_t d = (hi - abs_key(xs[i])) >> bucket_shift;
    ++hist[d < last_bucket ? d : last_bucket];
  }
  // Expected samples above the k-th largest: mu = k * samples / n. Aim at
  // mu + 3 floor(sqrt(mu)) + 3, so a failed guess (fewer than k candidates) is rare.
  const std::size_t mu = k * samples / n;
  std::size_t root = 0;
  while ((root + 1) * (root + 1) <= mu) ++root;
  const std::size_t want = mu + 3 * root + 3;
  std::size_t cum = 0;
  std::uint32_t t = 0;
  for (; t < last_bucket; ++t) {
    cum += hist[t];
    if (cum >= want) break;
  }
  if (t >= last_bucket) return 0;
  // Lowest key of bucket t: hi - d < (t + 1) << shift  <=>  key > hi - ((t + 1) << shift).
  const std::uint64_t span = std::uint64_t{t + 1} << bucket_shift;
  if (span > hi) return 0;
  const std::uint32_t floor_key = static_cast<std::uint32_t>(hi - span);  // candidates: key > floor_key
  std::uint32_t* cand = cand_.data();
  const std::size_t nc = filter_above(xs, n, floor_key, cand, next.data(), next.size());
  if (nc < k) return 0;
  return finish_candidates(xs, cand, nc, k, hi, floor_key + 1, out);
}

std::size_t topk_selector::finish_candidates(const float* xs, std::uint32_t* cand, std::size_t nc, std::size_t k,
                                             std::uint32_t hi, std::uint32_t lo, std::uint32_t* out) {
  // Candidate keys lie in [lo, hi]. A 256-bucket histogram over that range finds the
  // bucket holding the k-th largest key K*; nth_element runs on that bucket only.
  std::uint32_t* ck = cand_keys_.data();
  for (std::size_t j = 0; j < nc; ++j) ck[j] = abs_key(xs[cand[j]]);
  const std::uint32_t range = hi - lo;
  const unsigned width = static_cast<unsigned>(std::bit_width(range));
  const unsigned shift = width > 8 ? width - 8 : 0;
  std::uint32_t hist[256] = {};
  for (std::size_t j = 0; j < nc; ++j) ++hist[(hi - ck[j]) >> shift];
  std::size_t below = 0;
  std::uint32_t t = 0;
  for (;; ++t) {
    if (below + hist[t] >= k) break;
    below += hist[t];
  }
  std::uint32_t* tk = above_.data();  // scratch: keys of bucket t
  std::size_t nt = 0;
  for (std::size_t j = 0; j < nc; ++j) {
    tk[nt] = ck[j];
    nt += ((hi - ck[j]) >> shift) == t;
  }
  const std::size_t need = k - below;
  std::nth_element(tk, tk + (need - 1), tk + nt, std::greater<>());
  const std::uint32_t kstar = tk[need - 1];
  // Keep every candidate above K* and the first (by index) of those equal to it.
  std::size_t greater = 0;
  for (std::size_t j = 0; j < nc; ++j) greater += ck[j] > kstar;
  std::size_t ties = k - greater;
  std::size_t m = 0;
  for (std::size_t j = 0; j < nc && m < k; ++j) {
    const std::uint32_t kk = ck[j];
    const bool eq = kk == kstar;
    const bool take = kk > kstar || (eq && ties > 0);
    ties -= take && eq;
    out[m] = cand[j];
    m += take;
  }
  DTRAIN_ASSERT(m == k);
  return k;
}

std::size_t topk_selector::select_full(const float* xs, std::size_t n, std::size_t k, std::uint32_t hi,
                                       std::uint32_t* out) {

  // Pass 2: bucket of every element, and the bucket histogram (four interleaved copies
  // so repeated buckets do not serialise on one counter).
  std::uint8_t* bins = bins_.data();
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t d = (hi - abs_key(xs[i])) >> bucket_shift;
    bins[i] = static_cast<std::uint8_t>(d < last_bucket ? d : last_bucket);
  }
  // Padding so the group test below may read whole groups; the compaction stops at n.
  std::memset(bins + n, 0xff, group);
  std::uint32_t hist[4][256] = {};
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    ++hist[0][bins[i]];
    ++hist[1][bins[i + 1]];
    ++hist[2][bins[i + 2]];
    ++hist[3][bins[i + 3]];
  }
  for (; i < n; ++i) ++hist[0][bins[i]];

  // The threshold bucket t: fewer than k entries lie in buckets < t, at least k in <= t.
  std::size_t below = 0;
  std::uint32_t t = 0;
  for (;; ++t) {
    const std::size_t h = std::size_t{hist[0][t]} + hist[1][t] + hist[2][t] + hist[3][t];
    if (below + h >= k) break;
    below += h;
  }

  // Pass 3: split into "certainly selected" (bucket < t) and candidates (bucket == t), both
  // in index order. Whole groups with every bucket > t are skipped.
  std::uint32_t* above = above_.data();
  std::uint32_t* cand = cand_.data();
  std::size_t na = 0, nc = 0;
  const auto tb = static_cast<std::uint8_t>(t);
  for (std::size_t g = 0; g < n; g += group) {
    unsigned hit = 0;
    for (std::size_t j = 0; j < group; ++j) hit |= bins[g + j] <= tb ? 1u : 0u;
    if (!hit) continue;
    const std::size_t end = std::min(g + group, n);
    for (std::size_t j = g; j < end; ++j) {
      const std::uint8_t b = bins[j];
      above[na] = static_cast<std::uint32_t>(j);
      na += b < tb;
      cand[nc] = static_cast<std::uint32_t>(j);
      nc += b == tb;
    }
  }
  DTRAIN_ASSERT(na == below && na < k && na + nc >= k);

  // Inside the threshold bucket: the need-th largest key K*, then keep every candidate
  // above K* and the first (by index) r of those equal to it.
  std::size_t need = k - na;
  if (need < nc) {
    std::uint32_t* ck = cand_keys_.data();
    for (std::size_t j = 0; j < nc; ++j) ck[j] = abs_key(xs[cand[j]]);
    std::nth_element(ck, ck + (need - 1), ck + nc, std::greater<>());
    const std::uint32_t kstar = ck[need - 1];
    std::size_t greater = 0;
    for (std::size_t j = 0; j < nc; ++j) greater += ck[j] > kstar;
    std::size_t ties = need - greater;
    std::size_t m = 0;
    for (std::size_t j = 0; j < nc; ++j) {
      const std::uint32_t kk = abs_key(xs[cand[j]]);
      if (kk > kstar || (kk == kstar && ties > 0)) {
        if (kk == kstar) --ties;
        cand[m++] = cand[j];
      }
    }
    DTRAIN_ASSERT(m == need);
    nc = m;
  }

  // Merge the two index-sorted lists.
  std::size_t a = 0, c = 0, o = 0;
  while (a < na && c < nc) out[o++] = above[a] < cand[c] ? above[a++] : cand[c++];
  while (a < na) out[o++] = above[a++];
  while (c < nc) out[o++] = cand[c++];
  DTRAIN_ASSERT(o == k);
  return k;
}

}  // namespace dtrain::codec::detail
