// Reed-Solomon: ISA-L parity equals the plain reference byte for byte and a frozen vector
// from an independent Python GF(2^8) computation; every (or a random) k-subset of the
// chunks rebuilds the data; bad arguments get invalid_argument.
#include "dtrain/shard/erasure.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "common/hex.h"

using namespace dtrain::shard;
using dtrain::status_code;
using dtrain::test::from_hex;
using dtrain::test::to_hex;

namespace {

using bytes = std::vector<std::byte>;

struct stripe {
  std::vector<bytes> chunks;  // k data then m parity
  std::size_t k, m;
  stripe(std::size_t k_, std::size_t m_, std::size_t len, std::uint32_t seed) : chunks(k_ + m_, bytes(len)), k(k_), m(m_) {
    std::mt19937 rng(seed);
    for (std::size_t i = 0; i < k; ++i)
      for (auto& b : chunks[i]) b = static_cast<std::byte>(rng() & 255);
  }
  std::vector<std::span<const std::byte>> data() const {
    return {chunks.begin(), chunks.begin() + static_cast<std::ptrdiff_t>(k)};
  }
  std::vector<std::span<std::byte>> parity() {
    std::vector<std::span<std::byte>> p;
    for (std::size_t j = 0; j < m; ++j) p.emplace_back(chunks[k + j]);
    return p;
  }
};

/// Rebuilds every data chunk not in `present` from the chunks in `present` and compares.
void check_rebuild(const rs_code& code, const stripe& s, const std::vector<std::size_t>& present) {
  std::vector<std::span<const std::byte>> in;
  for (std::size_t p : present) in.emplace_back(s.chunks[p]);
  std::vector<std::size_t> missing;
  for (std::size_t d = 0; d < s.k; ++d)
    if (std::find(present.begin(), present.end(), d) == present.end()) missing.push_back(d);
  std::vector<bytes> out(missing.size(), bytes(s.chunks[0].size()));
  std::vector<std::span<std::byte>> out_spans(out.begin(), out.end());
  REQUIRE(code.reconstruct(present, in, missing, out_spans).ok());
  for (std::size_t j = 0; j < missing.size(); ++j) {
    CAPTURE(missing[j]);
    CHECK(out[j] == s.chunks[missing[j]]);
  }
}

/// Calls f(subset) for each k-subset of [0, n) in lexicographic order.
template <class F>
void for_each_subset(std::size_t n, std::size_t k, F f) {
  std::vector<bool> pick(n, false);
  std::fill(pick.begin(), pick.begin() + static_cast<std::ptrdiff_t>(k), true);
  do {
    std::vector<std::size_t> subset;
    for (std::size_t i = 0; i < n; ++i)
      if (pick[i]) subset.push_back(i);
    f(subset);
  } while (std::prev_permutation(pick.begin(), pick.end()));
}

}  // namespace

TEST_CASE("rs_code: frozen parity vector (independent Python GF(2^8), poly 0x11d)") {
  // python3: gmul = shift-and-add with reduction by 0x11d; ginv by search;
  // parity[j][t] = XOR_i gmul(ginv((k + j) ^ i), data[i][t]), k = 4, m = 2,
  // data[i][t] = (37·i + 11·t + 5) & 255, 8 bytes each.
  const std::vector<bytes> data = {from_hex("05101b26313c4752"), from_hex("2a35404b56616c77"),
                                   from_hex("4f5a65707b86919c"), from_hex("747f8a95a0abb6c1")};
  std::vector<std::span<const std::byte>> in(data.begin(), data.end());
  for (int impl = 0; impl < 2; ++impl) {
    CAPTURE(impl);
    std::vector<bytes> par(2, bytes(8));
    std::vector<std::span<std::byte>> out(par.begin(), par.end());
    if (impl == 0) {
      auto code = rs_code::create(4, 2);
      REQUIRE(code.ok());
      REQUIRE(code->encode(in, out).ok());
    } else {
      REQUIRE(rs_encode_reference(4, 2, in, out).ok());
    }
    CHECK(to_hex(par[0]) == "b84d6d2bb562d3ff");
    CHECK(to_hex(par[1]) == "8a99c8d08dfeb396");
  }
}

TEST_CASE("rs_code: matrix is identity over 1/((k+j) xor i)") {
  auto code = rs_code::create(3, 2);
  REQUIRE(code.ok());
  const auto& a = code->matrix();
  REQUIRE(a.size() == 5 * 3);
  // Identity rows, then gf_inv(3^0), gf_inv(3^1), gf_inv(3^2) = inv(3), inv(2), inv(1) and
  // inv(4), inv(5), inv(6) (poly 0x11d: inv(1)=1, inv(2)=0x8e, inv(3)=0xf4, inv(4)=0x47,
  // inv(5)=0xa7, inv(6)=0x7a).
  const std::vector<std::uint8_t> expected = {1, 0, 0, 0, 1, 0, 0, 0, 1, 0xf4, 0x8e, 0x01, 0x47, 0xa7, 0x7a};
  CHECK(a == expected);
}

TEST_CASE("rs_code: ISA-L parity equals the reference byte for byte") {
  const auto [k, m] = GENERATE(table<std::size_t, std::size_t>(
      {{1, 1}, {2, 1}, {4, 2}, {10, 4}, {6, 6}, {17, 3}, {32, 8}, {200, 55}, {254, 1}}));
  const std::size_t len = GENERATE(values<std::size_t>({1, 7, 4096, 65537}));
  CAPTURE(k, m, len);
  if (k * len > 4'000'000) return;  // the reference is slow; wide codes at short lengths only
  stripe s(k, m, len, 1234);
  auto code = rs_code::create(k, m);
  REQUIRE(code.ok());
  REQUIRE(code->encode(s.data(), s.parity()).ok());
  std::vector<bytes> ref(m, bytes(len));
  std::vector<std::span<std::byte>> ref_spans(ref.begin(), ref.end());
  REQUIRE(rs_encode_reference(k, m, s.data(), ref_spans).ok());
  for (std::size_t j = 0; j < m; ++j) {
    CAPTURE(j);
    CHECK(ref[j] == s.chunks[k + j]);
  }
}

TEST_CASE("rs_code: misaligned spans encode the same") {
  stripe s(10, 4, 4096 + 1, 7);
  auto code = rs_code::create(10, 4);
  REQUIRE(code.ok());
  REQUIRE(code->encode(s.data(), s.parity()).ok());
  std::vector<std::span<const std::byte>> data;
  for (std::size_t i = 0; i < 10; ++i) data.push_back(std::span<const std::byte>(s.chunks[i]).subspan(1));
  std::vector<bytes> par(4, bytes(4097));
  std::vector<std::span<std::byte>> out;
  for (auto& p : par) out.push_back(std::span(p).subspan(1));
  REQUIRE(code->encode(data, out).ok());
  std::vector<bytes> ref(4, bytes(4096));
  std::vector<std::span<std::byte>> ref_spans(ref.begin(), ref.end());
  REQUIRE(rs_encode_reference(10, 4, data, ref_spans).ok());
  for (std::size_t j = 0; j < 4; ++j) CHECK(std::equal(ref[j].begin(), ref[j].end(), par[j].begin() + 1));
}

TEST_CASE("rs_code: RS(4,2) rebuilds from every 4-subset") {
  const std::size_t len = GENERATE(values<std::size_t>({1, 7, 4096, 65537}));
  CAPTURE(len);
  stripe s(4, 2, len, 99);
  auto code = rs_code::create(4, 2);
  REQUIRE(code.ok());
  REQUIRE(code->encode(s.data(), s.parity()).ok());
  int subsets = 0;
  for_each_subset(6, 4, [&](const std::vector<std::size_t>& present) {
    CAPTURE(present);
    check_rebuild(*code, s, present);
    ++subsets;
  });
  CHECK(subsets == 15);
}

TEST_CASE("rs_code: RS(10,4) rebuilds from every 10-subset (short) or random ones (long)") {
  const std::size_t len = GENERATE(values<std::size_t>({1, 7, 4096, 65537}));
  CAPTURE(len);
  stripe s(10, 4, len, 5);
  auto code = rs_code::create(10, 4);
  REQUIRE(code.ok());
  REQUIRE(code->encode(s.data(), s.parity()).ok());
  if (len <= 7) {
    int subsets = 0;
    for_each_subset(14, 10, [&](const std::vector<std::size_t>& present) {
      CAPTURE(present);
      check_rebuild(*code, s, present);
      ++subsets;
    });
    CHECK(subsets == 1001);
  } else {
    std::mt19937 rng(static_cast<std::uint32_t>(len));
    for (int t = 0; t < 40; ++t) {
      std::vector<std::size_t> all(14);
      std::iota(all.begin(), all.end(), std::size_t{0});
      std::shuffle(all.begin(), all.end(), rng);
      std::vector<std::size_t> present(all.begin(), all.begin() + 10);  // any order
      CAPTURE(present);
      check_rebuild(*code, s, present);
    }
    check_rebuild(*code, s, {10, 11, 12, 13, 0, 1, 2, 3, 4, 5});  // all parity used
  }
}

TEST_CASE("rs_code: reconstruct of present data indices and of none") {
  stripe s(4, 2, 100, 3);
  auto code = rs_code::create(4, 2);
  REQUIRE(code.ok());
  REQUIRE(code->encode(s.data(), s.parity()).ok());
  const std::vector<std::size_t> present = {5, 1, 4, 3};
  std::vector<std::span<const std::byte>> in;
  for (std::size_t p : present) in.emplace_back(s.chunks[p]);
  // Ask for data chunk 1 (present) and 0, 2 (absent).
  const std::vector<std::size_t> missing = {1, 0, 2};
  std::vector<bytes> out(3, bytes(100));
  std::vector<std::span<std::byte>> out_spans(out.begin(), out.end());
  REQUIRE(code->reconstruct(present, in, missing, out_spans).ok());
  CHECK(out[0] == s.chunks[1]);
  CHECK(out[1] == s.chunks[0]);
  CHECK(out[2] == s.chunks[2]);
  CHECK(code->reconstruct(present, in, {}, {}).ok());
}

TEST_CASE("rs_code: m = 0 and k + m limits") {
  auto none = rs_code::create(3, 0);
  REQUIRE(none.ok());
  stripe s(3, 0, 10, 1);
  CHECK(none->encode(s.data(), s.parity()).ok());
  CHECK(rs_code::create(255, 0).ok());
  CHECK(rs_code::create(1, 254).ok());
  CHECK(rs_code::create(128, 127).ok());
  for (auto [k, m] : {std::pair<std::size_t, std::size_t>{0, 0}, {0, 4}, {256, 0}, {1, 255}, {200, 56},
                      {SIZE_MAX, 2}, {2, SIZE_MAX}}) {
    CAPTURE(k, m);
    auto c = rs_code::create(k, m);
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == status_code::invalid_argument);
  }
  std::vector<std::span<const std::byte>> d;
  std::vector<std::span<std::byte>> p;
  CHECK(rs_encode_reference(0, 1, d, p).code() == status_code::invalid_argument);
  CHECK(rs_encode_reference(255, 1, d, p).code() == status_code::invalid_argument);
}

TEST_CASE("rs_code: bad arguments get invalid_argument") {
  auto code = rs_code::create(4, 2);
  REQUIRE(code.ok());
  stripe s(4, 2, 16, 8);
  REQUIRE(code->encode(s.data(), s.parity()).ok());
  auto data = s.data();
  auto parity = s.parity();
  bytes short_chunk(15), empty;

  SECTION("encode") {
    CHECK(code->encode({}, parity).code() == status_code::invalid_argument);
    CHECK(code->encode(std::span(data).first(3), parity).code() == status_code::invalid_argument);
    CHECK(code->encode(data, std::span(parity).first(1)).code() == status_code::invalid_argument);
    auto d2 = data;
    d2[2] = short_chunk;
    CHECK(code->encode(d2, parity).code() == status_code::invalid_argument);
    auto p2 = parity;
    p2[1] = short_chunk;
    CHECK(code->encode(data, p2).code() == status_code::invalid_argument);
    std::vector<std::span<const std::byte>> zero(4, std::span<const std::byte>(empty));
    std::vector<std::span<std::byte>> zero_out(2, std::span<std::byte>(empty));
    CHECK(code->encode(zero, zero_out).code() == status_code::invalid_argument);
    CHECK(rs_encode_reference(4, 2, d2, parity).code() == status_code::invalid_argument);
    CHECK(rs_encode_reference(4, 2, data, std::span(parity).first(1)).code() == status_code::invalid_argument);
  }
  SECTION("reconstruct") {
    std::vector<std::size_t> present = {0, 1, 4, 5};
    std::vector<std::span<const std::byte>> in;
    for (std::size_t p : present) in.emplace_back(s.chunks[p]);
    std::vector<std::size_t> missing = {2, 3};
    std::vector<bytes> out(2, bytes(16));
    std::vector<std::span<std::byte>> o(out.begin(), out.end());
    REQUIRE(code->reconstruct(present, in, missing, o).ok());
    CHECK(out[0] == s.chunks[2]);
    auto bad = [&](std::vector<std::size_t> pr, std::vector<std::span<const std::byte>> ch, std::vector<std::size_t> mi,
                   std::vector<std::span<std::byte>> ou) {
      const auto st = code->reconstruct(pr, ch, mi, ou);
      CAPTURE(st.to_string());
      CHECK(st.code() == status_code::invalid_argument);
    };
    bad({0, 1, 4}, {in[0], in[1], in[2]}, missing, o);               // k - 1 present
    bad({0, 1, 4, 5, 2}, {in[0], in[1], in[2], in[3], in[0]}, missing, o);  // k + 1 present
    bad(present, {in[0], in[1], in[2]}, missing, o);                 // chunk count != present
    bad({0, 1, 4, 6}, in, missing, o);                               // index out of range
    bad({0, 1, 4, 4}, in, missing, o);                               // duplicate present
    bad(present, in, {2, 2}, o);                                     // duplicate missing
    bad(present, in, {2, 4}, o);                                     // a parity index to rebuild
    bad(present, in, {2}, o);                                        // output count != missing
    bad(present, in, {0, 1, 2, 3, 0}, {o[0], o[1], o[0], o[1], o[0]});  // more than k
    bad(present, {in[0], short_chunk, in[2], in[3]}, missing, o);    // length mismatch
    bad(present, in, missing, {o[0], std::span<std::byte>(short_chunk)});
    bad(present, {empty, empty, empty, empty}, missing, {std::span<std::byte>(empty), std::span<std::byte>(empty)});
    bad(present, {}, missing, o);
  }
}
