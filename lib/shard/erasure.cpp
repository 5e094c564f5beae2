// Systematic Cauchy Reed-Solomon with ISA-L (ec_init_tables / ec_encode_data for parity
// and for decoding with an inverted k x k submatrix), and the plain log/exp reference.
#include "dtrain/shard/erasure.h"

#include <isa-l/erasure_code.h>

#include <array>
#include <climits>
#include <string>

namespace dtrain::shard {
namespace {

using ec_ptrs = std::array<unsigned char*, rs_max_chunks>;

status check_params(std::size_t k, std::size_t m) {
  if (k < 1) return invalid_argument("rs_code: k must be >= 1");
  if (k > rs_max_chunks || m > rs_max_chunks - k)
    return invalid_argument("rs_code: k + m = " + std::to_string(k) + " + " + std::to_string(m) + " exceeds " +
                            std::to_string(rs_max_chunks));
  return ok_status();
}

/// Checks that `n` spans are given (`what` names them) and all have length `len` >= 1.
template <class Span>
status check_spans(std::span<const Span> spans, std::size_t n, std::size_t len, const char* what) {
  if (spans.size() != n)
    return invalid_argument(std::string("rs_code: expected ") + std::to_string(n) + " " + what + " chunks, got " +
                            std::to_string(spans.size()));
  for (const auto& s : spans)
    if (s.size() != len)
      return invalid_argument(std::string("rs_code: ") + what + " chunk of " + std::to_string(s.size()) +
                              " bytes, expected " + std::to_string(len));
  return ok_status();
}

/// ec_encode_data over lengths that may exceed INT_MAX: in slices of at most 1 GiB.
void encode_sliced(std::size_t len, int k, int rows, const unsigned char* tables, const ec_ptrs& in,
                   const ec_ptrs& out) {
  constexpr std::size_t slice = std::size_t{1} << 30;
  ec_ptrs src{}, dst{};
  for (std::size_t off = 0; off < len; off += slice) {
    const std::size_t n = std::min(slice, len - off);
    for (int i = 0; i < k; ++i) src[static_cast<std::size_t>(i)] = in[static_cast<std::size_t>(i)] + off;
    for (int j = 0; j < rows; ++j) dst[static_cast<std::size_t>(j)] = out[static_cast<std::size_t>(j)] + off;
    // ISA-L takes non-const pointers but only writes the tables' outputs (dst).
    ec_encode_data(static_cast<int>(n), k, rows, const_cast<unsigned char*>(tables), src.data(), dst.data());
  }
}

unsigned char* mutable_bytes(std::span<const std::byte> s) noexcept {
  return const_cast<unsigned char*>(reinterpret_cast<const unsigned char*>(s.data()));
}
unsigned char* bytes(std::span<std::byte> s) noexcept { return reinterpret_cast<unsigned char*>(s.data()); }

// ---- the plain reference field: GF(2^8), polynomial 0x11d, generator 2 ----
struct gf_tables {
  std::array<std::uint8_t, 256> log{};
  std::array<std::uint8_t, 510> exp{};  // doubled so exp[log a + log b] needs no modulo
  gf_tables() {
    unsigned x = 1;
    for (unsigned i = 0; i < 255; ++i) {
      exp[i] = static_cast<std::uint8_t>(x);
      exp[i + 255] = static_cast<std::uint8_t>(x);
      log[x] = static_cast<std::uint8_t>(i);
      x <<= 1;
      if (x & 0x100) x ^= 0x11d;
    }
  }
  std::uint8_t mul(std::uint8_t a, std::uint8_t b) const noexcept {
    if (a == 0 || b == 0) return 0;
    return exp[static_cast<std::size_t>(log[a]) + log[b]];
  }
  std::uint8_t inv(std::uint8_t a) const noexcept { return exp[255 - log[a]]; }  // a != 0
};

const gf_tables& gf() {
  static const gf_tables t;
  return t;
}

}  // namespace

result<rs_code> rs_code::create(std::size_t k, std::size_t m) {
  DTRAIN_RETURN_IF_ERROR(check_params(k, m));
  rs_code c;
  c.k_ = k;
  c.m_ = m;
  c.matrix_.assign((k + m) * k, 0);
  gf_gen_cauchy1_matrix(c.matrix_.data(), static_cast<int>(k + m), static_cast<int>(k));
  c.tables_.assign(32 * k * m, 0);
  if (m > 0) ec_init_tables(static_cast<int>(k), static_cast<int>(m), c.matrix_.data() + k * k, c.tables_.data());
  return c;
}

status rs_code::encode(std::span<const std::span<const std::byte>> data,
                       std::span<const std::span<std::byte>> parity) const {
  if (data.empty()) return invalid_argument("rs_code::encode: no data chunks");
  const std::size_t len = data[0].size();
  if (len == 0) return invalid_argument("rs_code::encode: chunks must be at least 1 byte");
  DTRAIN_RETURN_IF_ERROR(check_spans(data, k_, len, "data"));
  DTRAIN_RETURN_IF_ERROR(check_spans(parity, m_, len, "parity"));
  if (m_ == 0) return ok_status();
  ec_ptrs in{}, out{};
  for (std::size_t i = 0; i < k_; ++i) in[i] = mutable_bytes(data[i]);
  for (std::size_t j = 0; j < m_; ++j) out[j] = bytes(parity[j]);
  encode_sliced(len, static_cast<int>(k_), static_cast<int>(m_), tables_.data(), in, out);
  return ok_status();
}

status rs_code::reconstruct(std::span<const std::size_t> present, std::span<const std::span<const std::byte>> chunks,
                            std::span<const std::size_t> missing, std::span<const std::span<std::byte>> out) const {
  const std::size_t n = k_ + m_;
  if (present.size() != k_)
    return invalid_argument("rs_code::reconstruct: need exactly k = " + std::to_string(k_) +
                            " present chunks, got " + std::to_string(present.size()));
  if (chunks.empty()) return invalid_argument("rs_code::reconstruct: no chunks");
  const std::size_t len = chunks[0].size();
  if (len == 0) return invalid_argument("rs_code::reconstruct: chunks must be at least 1 byte");
  DTRAIN_RETURN_IF_ERROR(check_spans(chunks, k_, len, "present"));
  if (missing.size() > k_)
    return invalid_argument("rs_code::reconstruct: more than k chunks to rebuild");
  DTRAIN_RETURN_IF_ERROR(check_spans(out, missing.size(), len, "output"));

  std::array<bool, rs_max_chunks> seen{};
  for (std::size_t p : present) {
    if (p >= n) return invalid_argument("rs_code::reconstruct: present index " + std::to_string(p) + " >= k + m");
    if (seen[p]) return invalid_argument("rs_code::reconstruct: duplicate present index " + std::to_string(p));
    seen[p] = true;
  }
  seen.fill(false);
  for (std::size_t d : missing) {
    if (d >= k_) return invalid_argument("rs_code::reconstruct: missing index " + std::to_string(d) + " >= k");
    if (seen[d]) return invalid_argument("rs_code::reconstruct: duplicate missing index " + std::to_string(d));
    seen[d] = true;
  }
  if (missing.empty()) return ok_status();

  // B = the rows of the encoding matrix for the present chunks; data = B^-1 · present.
  std::vector<std::uint8_t> b(k_ * k_), b_inv(k_ * k_);
  for (std::size_t r = 0; r < k_; ++r)
    for (std::size_t c = 0; c < k_; ++c) b[r * k_ + c] = matrix_[present[r] * k_ + c];
  if (gf_invert_matrix(b.data(), b_inv.data(), static_cast<int>(k_)) != 0)
    return internal_error("rs_code::reconstruct: singular decode matrix (a Cauchy code is MDS: a bug)");
  std::vector<std::uint8_t> rows(missing.size() * k_);
  for (std::size_t j = 0; j < missing.size(); ++j)
    for (std::size_t c = 0; c < k_; ++c) rows[j * k_ + c] = b_inv[missing[j] * k_ + c];
  std::vector<std::uint8_t> tables(32 * k_ * missing.size());
  ec_init_tables(static_cast<int>(k_), static_cast<int>(missing.size()), rows.data(), tables.data());

  ec_ptrs in{}, dst{};
  for (std::size_t i = 0; i < k_; ++i) in[i] = mutable_bytes(chunks[i]);
  for (std::size_t j = 0; j < missing.size(); ++j) dst[j] = bytes(out[j]);
  encode_sliced(len, static_cast<int>(k_), static_cast<int>(missing.size()), tables.data(), in, dst);
  return ok_status();
}

status rs_encode_reference(std::size_t k, std::size_t m, std::span<const std::span<const std::byte>> data,
                           std::span<const std::span<std::byte>> parity) {
  DTRAIN_RETURN_IF_ERROR(check_params(k, m));
  if (data.empty()) return invalid_argument("rs_encode_reference: no data chunks");
  const std::size_t len = data[0].size();
  if (len == 0) return invalid_argument("rs_encode_reference: chunks must be at least 1 byte");
  DTRAIN_RETURN_IF_ERROR(check_spans(data, k, len, "data"));
  DTRAIN_RETURN_IF_ERROR(check_spans(parity, m, len, "parity"));
  const gf_tables& f = gf();
  for (std::size_t j = 0; j < m; ++j) {
    auto* p = parity[j].data();
    for (std::size_t t = 0; t < len; ++t) p[t] = std::byte{0};
    for (std::size_t i = 0; i < k; ++i) {
      // Cauchy coefficient 1 / ((k + j) XOR i); k + j > i, so the XOR is never 0.
      const std::uint8_t c = f.inv(static_cast<std::uint8_t>((k + j) ^ i));
      const auto* d = data[i].data();
      for (std::size_t t = 0; t < len; ++t)
        p[t] ^= std::byte{f.mul(c, std::to_integer<std::uint8_t>(d[t]))};
    }
  }
  return ok_status();
}

}  // namespace dtrain::shard
