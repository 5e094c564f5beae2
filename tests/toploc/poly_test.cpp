// Tests for toploc/poly.h: the shared interpolation and evaluation vectors, the fast path
// against the Lagrange reference, the interpolation property, errors.
#include "dtrain/toploc/poly.h"

#include <catch2/catch.hpp>

#include <set>
#include <vector>

#include "dtrain/core/rng.h"
#include "dtrain/toploc/field.h"
#include "dtrain/toploc/modulus.h"
#include "dtrain/toploc/proof.h"
#include "toploc/toploc_test_util.h"

using namespace dtrain::toploc;

TEST_CASE("interpolation reproduces the shared vectors byte for byte", "[toploc][poly][vectors]") {
  const auto& cases = test::vectors()["interpolation"];
  REQUIRE(cases.size() == 4);
  for (std::size_t c = 0; c < cases.size(); ++c) {
    CAPTURE(c);
    std::vector<std::uint32_t> idx, y;
    for (const auto& v : cases[c]["x"].items) idx.push_back(static_cast<std::uint32_t>(v.num));
    for (const auto& v : cases[c]["y"].items) y.push_back(static_cast<std::uint32_t>(v.num));
    auto m = injective_modulus(idx);
    REQUIRE(m.ok());
    std::vector<std::uint32_t> x;
    for (auto i : idx) x.push_back(i % *m);
    proof p{*m, std::vector<std::uint16_t>(idx.size())};
    REQUIRE(interpolate(x, y, p.coeffs).ok());
    CHECK(test::to_hex(to_bytes(p)) == cases[c]["proof_hex"].str);
    if (cases[c].has("proof_base64")) CHECK(to_base64(p) == cases[c]["proof_base64"].str);
    std::vector<std::uint16_t> ref(idx.size());
    REQUIRE(interpolate_reference(x, y, ref).ok());
    CHECK(ref == p.coeffs);
  }
}

TEST_CASE("evaluation reproduces the shared vector", "[toploc][poly][vectors]") {
  const auto& e = test::vectors()["evaluate"];
  std::vector<std::uint16_t> c;
  for (const auto& v : e["coefficients"].items) c.push_back(static_cast<std::uint16_t>(v.num));
  const auto x = static_cast<std::uint32_t>(e["x"].num);
  CHECK(evaluate(c, x) == static_cast<std::uint32_t>(e["value"].num));
  std::vector<std::uint32_t> xs{x, x, 0}, out(3);
  evaluate_many(c, xs, out);
  CHECK(out == std::vector<std::uint32_t>{evaluate(c, x), evaluate(c, x), c[0]});
}

TEST_CASE("fast interpolation equals the Lagrange reference and interpolates", "[toploc][poly]") {
  const std::size_t n = GENERATE(values<std::size_t>({1, 2, 3, 17, 64, 128, 200}));
  CAPTURE(n);
  dtrain::counter_rng rng(n);
  for (int trial = 0; trial < 5; ++trial) {
    std::set<std::uint32_t> s;
    while (s.size() < n) s.insert(trial == 0 ? rng.next_below(static_cast<std::uint32_t>(n) + 2) : rng.next_below(prime));
    std::vector<std::uint32_t> x(s.begin(), s.end()), y(n);
    // Shuffle the points: coefficients must not depend on their order.
    for (std::size_t i = n; i > 1; --i) std::swap(x[i - 1], x[rng.next_below(static_cast<std::uint32_t>(i))]);
    for (auto& v : y) v = rng.next_below(65536);  // includes the aliasing patterns >= p
    std::vector<std::uint16_t> fast(n), ref(n);
    REQUIRE(interpolate(x, y, fast).ok());
    REQUIRE(interpolate_reference(x, y, ref).ok());
    REQUIRE(fast == ref);
    std::vector<std::uint32_t> at(n);
    evaluate_many(fast, x, at);
    for (std::size_t i = 0; i < n; ++i) {
      REQUIRE(at[i] == y[i] % prime);
      REQUIRE(evaluate(fast, x[i]) == y[i] % prime);
    }
  }
}

TEST_CASE("interpolate rejects bad points and leaves the output alone", "[toploc][poly]") {
  std::vector<std::uint16_t> out(4, 7);
  const std::vector<std::uint16_t> untouched(4, 7);
  using v = std::vector<std::uint32_t>;
  CHECK(interpolate(v{1, 2}, v{1}, out).code() == dtrain::status_code::invalid_argument);
  CHECK(interpolate(v{}, v{}, out).code() == dtrain::status_code::invalid_argument);
  CHECK(interpolate(v{1, 1}, v{1, 2}, out).code() == dtrain::status_code::invalid_argument);
  CHECK(interpolate(v{1, prime}, v{1, 2}, out).code() == dtrain::status_code::invalid_argument);
  CHECK(interpolate(v{1, 2, 3, 4, 5}, v{1, 2, 3, 4, 5}, out).code() == dtrain::status_code::invalid_argument);
  CHECK(out == untouched);
  CHECK(evaluate({}, 5) == 0);
}
