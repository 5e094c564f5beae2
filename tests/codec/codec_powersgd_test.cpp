// Tests for codec/codec_powersgd.h: low-rank recovery, warm-start convergence to the SVD
// optimum, wire layout (orthonormal P, Q = M^T P), shapes, spec errors, and the codec
// contract checks the generic contract test skips for PowerSGD's fixed shape.
#include "dtrain/codec/codec_powersgd.h"

#include <Eigen/Dense>
#include <cmath>
#include <cstring>
#include <limits>

#include "codec/codec_test_util.h"
#include "dtrain/codec/payload.h"

using namespace dtrain;
using namespace dtrain::test;

namespace {

using mat = Eigen::MatrixXd;

std::string spec_for(std::size_t r, std::size_t c, std::size_t k, std::uint64_t seed = 0) {
  return "powersgd:rows=" + std::to_string(r) + ",cols=" + std::to_string(c) + ",rank=" + std::to_string(k) +
         ",seed=" + std::to_string(seed);
}

mat random_mat(std::size_t r, std::size_t c, std::uint64_t seed) {
  counter_rng rng(seed, 77);
  mat m(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c));
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j) m(i, j) = rng.next_normal();
  return m;
}

// Row-major float copy of m (the codec's input layout).
std::vector<float> flat(const mat& m) {
  std::vector<float> x(static_cast<std::size_t>(m.size()));
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j) x[static_cast<std::size_t>(i * m.cols() + j)] = static_cast<float>(m(i, j));
  return x;
}

mat unflat(std::span<const float> x, std::size_t r, std::size_t c) {
  mat m(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c));
  for (std::size_t i = 0; i < r; ++i)
    for (std::size_t j = 0; j < c; ++j) m(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = x[i * c + j];
  return m;
}

double rel_err(const mat& a, const mat& b) {
  const double nb = b.norm();
  return nb == 0 ? a.norm() : (a - b).norm() / nb;
}

// Reads P (r x k) and Q (c x k) from a payload body, row-major as documented.
void read_pq(std::span<const std::byte> p, std::size_t r, std::size_t c, std::size_t k, mat& P, mat& Q) {
  const std::byte* b = p.data() + codec::payload_header_bytes + 12;
  P.resize(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(k));
  Q.resize(static_cast<Eigen::Index>(c), static_cast<Eigen::Index>(k));
  for (Eigen::Index i = 0; i < P.rows(); ++i)
    for (Eigen::Index j = 0; j < P.cols(); ++j, b += 4) P(i, j) = load_le<float>(b);
  for (Eigen::Index i = 0; i < Q.rows(); ++i)
    for (Eigen::Index j = 0; j < Q.cols(); ++j, b += 4) Q(i, j) = load_le<float>(b);
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}

}  // namespace

TEST_CASE("powersgd recovers a rank-r matrix from one encode", "[codec][powersgd]") {
  struct shape_case {
    std::size_t r, c, k;
  };
  const auto s = GENERATE(shape_case{1, 1, 1}, shape_case{1, 50, 1}, shape_case{50, 1, 1}, shape_case{37, 23, 2},
                          shape_case{64, 64, 4}, shape_case{100, 7, 3}, shape_case{3, 300, 2});
  CAPTURE(s.r, s.c, s.k);
  const mat m = random_mat(s.r, s.k, 1) * random_mat(s.c, s.k, 2).transpose();
  const auto x = flat(m);
  auto c = make(spec_for(s.r, s.c, s.k));
  const auto y = decode(*c, encode(*c, x), x.size());
  CHECK(rel_err(unflat(y, s.r, s.c), unflat(x, s.r, s.c)) < 1e-4);
  // A second encode from the warm start is just as exact.
  const auto y2 = decode(*c, encode(*c, x), x.size());
  CHECK(rel_err(unflat(y2, s.r, s.c), unflat(x, s.r, s.c)) < 1e-4);
}

TEST_CASE("powersgd with rank = min(rows, cols) reconstructs any matrix", "[codec][powersgd]") {
  struct shape_case {
    std::size_t r, c;
  };
  const auto s = GENERATE(shape_case{1, 1}, shape_case{1, 9}, shape_case{9, 1}, shape_case{5, 8}, shape_case{16, 16},
                          shape_case{40, 6});
  const std::size_t k = std::min(s.r, s.c);
  CAPTURE(s.r, s.c, k);
  const auto x = flat(random_mat(s.r, s.c, 3));
  auto c = make(spec_for(s.r, s.c, k));
  const auto y = decode(*c, encode(*c, x), x.size());
  CHECK(rel_err(unflat(y, s.r, s.c), unflat(x, s.r, s.c)) < 1e-4);
}

TEST_CASE("powersgd warm start converges to the best rank-r approximation", "[codec][powersgd]") {
  const std::size_t R = 40, C = 30;
  const std::size_t k = GENERATE(1u, 2u, 4u);
  CAPTURE(k);
  // M = U diag(0.8^i) V^T with random orthonormal U, V: a clear gap between singular values.
  const mat U = Eigen::HouseholderQR<mat>(random_mat(R, C, 4)).householderQ() * mat::Identity(R, C);
  const mat V = Eigen::HouseholderQR<mat>(random_mat(C, C, 5)).householderQ() * mat::Identity(C, C);
  Eigen::VectorXd sigma(static_cast<Eigen::Index>(C));
  for (Eigen::Index i = 0; i < sigma.size(); ++i) sigma(i) = std::pow(0.8, static_cast<double>(i));
  const auto x = flat(U * sigma.asDiagonal() * V.transpose());
  const mat m = unflat(x, R, C);
  // Optimum (Eckart-Young) from an independent SVD of the float matrix.
  Eigen::JacobiSVD<mat> svd(m);
  double tail = 0;
  for (Eigen::Index i = static_cast<Eigen::Index>(k); i < svd.singularValues().size(); ++i)
    tail += svd.singularValues()(i) * svd.singularValues()(i);
  const double best = std::sqrt(tail);

  auto c = make(spec_for(R, C, k, 11));
  double prev = std::numeric_limits<double>::infinity();
  double err = 0;
  for (int t = 0; t < 60; ++t) {
    const auto y = decode(*c, encode(*c, x), x.size());
    err = (unflat(y, R, C) - m).norm();
    CAPTURE(t, err, prev, best);
    REQUIRE(err <= prev + 1e-5 * m.norm());
    REQUIRE(err >= best * (1 - 1e-5));  // nothing beats the SVD
    prev = err;
  }
  CHECK(err <= best * (1 + 1e-3));
}

TEST_CASE("powersgd payload: sizes, orthonormal P, Q = M^T P", "[codec][powersgd]") {
  const std::size_t R = 24, C = 10, k = 3;
  auto c = make(spec_for(R, C, k));
  REQUIRE_FALSE(c->summable());
  REQUIRE(c->id() == codec::codec_id::powersgd);
  REQUIRE(c->name() == "powersgd");
  // Header + rows/cols/rank (3 x u32) + P and Q as f32: the ratio is R*C / (k*(R+C)).
  REQUIRE(c->max_encoded_bytes(R * C) == codec::payload_header_bytes + 12 + 4 * k * (R + C));
  const double ratio = static_cast<double>(4 * R * C) / static_cast<double>(c->max_encoded_bytes(R * C) - 40);
  CHECK(ratio == Approx(static_cast<double>(R * C) / static_cast<double>(k * (R + C))));

  const auto x = flat(random_mat(R, C, 6));
  const auto p = encode(*c, x);
  const std::byte* params = p.data() + codec::payload_header_bytes;
  CHECK(load_le<std::uint32_t>(params) == R);
  CHECK(load_le<std::uint32_t>(params + 4) == C);
  CHECK(load_le<std::uint32_t>(params + 8) == k);
  mat P, Q;
  read_pq(p, R, C, k, P, Q);
  CHECK((P.transpose() * P - mat::Identity(k, k)).cwiseAbs().maxCoeff() < 1e-6);
  const mat m = unflat(x, R, C);
  CHECK(rel_err(Q, m.transpose() * P) < 1e-5);
  // decode == P Q^T.
  const auto y = decode(*c, p, x.size());
  CHECK(rel_err(unflat(y, R, C), P * Q.transpose()) < 1e-6);
}

TEST_CASE("powersgd is deterministic: same seed, same bytes; reset() restarts", "[codec][powersgd]") {
  const std::size_t R = 33, C = 17;
  const auto x = flat(random_mat(R, C, 7));
  auto a = make(spec_for(R, C, 2, 5));
  auto b = make(spec_for(R, C, 2, 5));
  auto d = make(spec_for(R, C, 2, 6));
  const auto pa = encode(*a, x);
  CHECK(encode(*b, x) == pa);
  CHECK(encode(*d, x) != pa);
  // The warm start moves the state: a second encode differs, reset() gives the first again.
  const auto pa2 = encode(*a, x);
  CHECK(pa2 != pa);
  static_cast<codec::powersgd_codec&>(*a).reset();
  CHECK(encode(*a, x) == pa);
}

TEST_CASE("powersgd: a zero matrix does not stall the warm start", "[codec][powersgd]") {
  const std::size_t R = 12, C = 9;
  auto c = make(spec_for(R, C, 2));
  const std::vector<float> zero(R * C, 0.0f);
  for (float v : decode(*c, encode(*c, zero), zero.size())) REQUIRE(v == 0.0f);
  // Rank-1 input with rank 2: the second column of P vanishes and must not poison Q.
  const mat one = random_mat(R, 1, 8) * random_mat(C, 1, 9).transpose();
  const auto x1 = flat(one);
  CHECK(rel_err(unflat(decode(*c, encode(*c, x1), x1.size()), R, C), one) < 1e-4);
  const mat two = random_mat(R, 2, 10) * random_mat(C, 2, 11).transpose();
  const auto x2 = flat(two);
  CHECK(rel_err(unflat(decode(*c, encode(*c, x2), x2.size()), R, C), two) < 1e-4);
}

TEST_CASE("powersgd: shape errors and spec validation", "[codec][powersgd]") {
  auto c = make(spec_for(8, 4, 2));
  const auto x = flat(random_mat(8, 4, 12));
  const auto first = encode(*make(spec_for(8, 4, 2)), x);
  for (std::size_t n : {0u, 1u, 31u, 33u}) {
    CAPTURE(n);
    std::vector<float> bad(n, 1.0f);
    std::vector<std::byte> buf(c->max_encoded_bytes(n) + 64);
    auto r = c->encode(bad, buf);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == status_code::invalid_argument);
  }
  // A NaN or a short buffer leaves the warm start alone: the next encode is the first.
  auto xn = x;
  xn[3] = std::numeric_limits<float>::quiet_NaN();
  std::vector<std::byte> buf(c->max_encoded_bytes(x.size()));
  CHECK(c->encode(xn, buf).status().code() == status_code::invalid_argument);
  std::vector<std::byte> tiny(buf.size() - 1);
  CHECK(c->encode(x, tiny).status().code() == status_code::resource_exhausted);
  CHECK(encode(*c, x) == first);

  for (const char* bad : {"powersgd", "powersgd:rows=4", "powersgd:cols=4", "powersgd:rows=0,cols=4",
                          "powersgd:rows=4,cols=4,rank=0", "powersgd:rows=4,cols=3,rank=4",
                          "powersgd:rows=4,cols=4,bogus=1", "powersgd:rows=4294967296,cols=1",
                          "powersgd:rows=4294967295,cols=4294967295"}) {
    CAPTURE(bad);
    auto r = codec::make_codec(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == status_code::invalid_argument);
  }
  // Default rank is min(2, rows, cols); spec() round-trips.
  CHECK(make("powersgd:rows=5,cols=6")->spec() == "powersgd:rows=5,cols=6,rank=2,seed=0");
  CHECK(make("powersgd:rows=1,cols=6")->spec() == "powersgd:rows=1,cols=6,rank=1,seed=0");
  CHECK(make(spec_for(7, 3, 3, 9))->spec() == spec_for(7, 3, 3, 9));
}

TEST_CASE("powersgd contract: decode_any, accumulate, malformed payloads", "[codec][powersgd]") {
  const std::size_t R = 6, C = 5, k = 2, n = R * C;
  auto c = make(spec_for(R, C, k));
  const auto x = make_input(family::heavy_tail, n, 13);
  const auto p = encode(*c, x);
  const auto y = decode(*c, p, n);
  std::vector<float> z(n);
  REQUIRE(codec::decode_any(p, z).ok());
  REQUIRE(same_bits(y, z));
  std::vector<float> acc(n), ref(n);
  for (std::size_t i = 0; i < n; ++i) acc[i] = ref[i] = 0.25f * static_cast<float>(i % 5);
  REQUIRE(c->decode_accumulate(p, acc, -1.5f).ok());
  for (std::size_t i = 0; i < n; ++i) ref[i] += -1.5f * y[i];
  REQUIRE(same_bits(acc, ref));

  std::vector<float> out(n, 7.0f);
  const std::vector<float> sentinel(n, 7.0f);
  for (std::size_t len = 0; len < p.size(); ++len) {
    CAPTURE(len);
    REQUIRE(c->decode(std::span(p).first(len), out).code() == status_code::data_loss);
    REQUIRE(same_bits(out, sentinel));
  }
  for (std::size_t i = 0; i < p.size(); ++i) {
    CAPTURE(i);
    auto bad = p;
    bad[i] ^= std::byte{0x5a};
    REQUIRE_FALSE(c->decode(bad, out).ok());
    REQUIRE_FALSE(codec::decode_accumulate_any(bad, out).ok());
    REQUIRE(same_bits(out, sentinel));
  }
  std::vector<float> small(n - 1);
  CHECK(c->decode(p, small).code() == status_code::invalid_argument);

  auto sealed_decode = [&](std::vector<std::byte> q) {
    codec::seal_payload(q);
    auto st = c->decode(q, out);
    REQUIRE(same_bits(out, sentinel));
    return st.code();
  };
  const std::size_t body = codec::payload_header_bytes + 12;
  // P entries are orthonormal-column entries: outside [-1, 1] or NaN is corrupt.
  auto q = p;
  store_le<float>(q.data() + body + 4, 1.5f);
  CHECK(sealed_decode(q) == status_code::data_loss);
  q = p;
  store_le<float>(q.data() + body, std::numeric_limits<float>::quiet_NaN());
  CHECK(sealed_decode(q) == status_code::data_loss);
  // Q entries must be finite.
  q = p;
  store_le<float>(q.data() + p.size() - 4, INFINITY);
  CHECK(sealed_decode(q) == status_code::data_loss);
  // Same count, other shape: a mismatch, not corruption.
  q = p;
  store_le<std::uint32_t>(q.data() + codec::payload_header_bytes, 5);
  store_le<std::uint32_t>(q.data() + codec::payload_header_bytes + 4, 6);
  CHECK(sealed_decode(q) == status_code::failed_precondition);
  // Shape inconsistent with the count, or rank out of range: unparseable.
  q = p;
  store_le<std::uint32_t>(q.data() + codec::payload_header_bytes, 7);
  CHECK(sealed_decode(q) == status_code::data_loss);
  codec::seal_payload(q);
  CHECK(codec::decode_any(q, out).code() == status_code::data_loss);
  q = p;
  store_le<std::uint32_t>(q.data() + codec::payload_header_bytes + 8, 6);
  CHECK(sealed_decode(q) == status_code::data_loss);
  q = p;
  store_le<std::uint32_t>(q.data() + codec::payload_header_bytes + 8, 0);
  codec::seal_payload(q);
  CHECK(codec::decode_any(q, out).code() == status_code::data_loss);
  REQUIRE(same_bits(out, sentinel));

  // NaN/Inf policy.
  auto xn = x;
  xn[4] = -INFINITY;
  std::vector<std::byte> buf(c->max_encoded_bytes(n));
  auto r = c->encode(xn, buf);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find('4') != std::string::npos);
  c->set_nonfinite(codec::nonfinite_policy::zero);
  for (float v : decode(*c, encode(*c, xn), n)) REQUIRE(std::isfinite(v));
}

TEST_CASE("powersgd: inputs near FLT_MAX give a decodable payload", "[codec][powersgd]") {
  const std::size_t R = 16, C = 16;
  std::vector<float> x(R * C, std::numeric_limits<float>::max());
  for (std::size_t i = 0; i < x.size(); i += 3) x[i] = -x[i];
  auto c = make(spec_for(R, C, 2));
  const auto p = encode(*c, x);
  std::vector<float> y(x.size());
  CHECK(c->decode(p, y).ok());
}
