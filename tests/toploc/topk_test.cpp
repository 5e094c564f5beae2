// Tests for toploc/topk.h: the fast selection equals the sorted reference (order
// included) on sizes around the block and filter boundaries, heavy ties, NaN/Inf and
// sign; errors.
#include "dtrain/toploc/topk.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

#include "dtrain/core/rng.h"
#include "toploc/toploc_test_util.h"

using namespace dtrain::toploc;

namespace {

std::vector<std::uint32_t> fast(const std::vector<std::uint16_t>& x, std::size_t k) {
  std::vector<std::uint32_t> out(std::min(k, x.size()));
  auto n = select_topk(x, k, out);
  REQUIRE(n.ok());
  REQUIRE(*n == out.size());
  return out;
}
std::vector<std::uint32_t> slow(const std::vector<std::uint16_t>& x, std::size_t k) {
  std::vector<std::uint32_t> out(std::min(k, x.size()));
  REQUIRE(select_topk_reference(x, k, out).ok());
  return out;
}

}  // namespace

TEST_CASE("select_topk equals the reference, order included", "[toploc][topk]") {
  const std::size_t n = GENERATE(values<std::size_t>({1, 2, 7, 63, 64, 65, 255, 256, 257, 1000, 4096, 8191, 8192,
                                                      8193, 131072, 163840}));
  const std::size_t k = GENERATE(values<std::size_t>({1, 4, 128, 1000}));
  const int pattern = GENERATE(0, 1, 2, 3);
  CAPTURE(n, k, pattern);
  dtrain::counter_rng rng(n * 31 + k + static_cast<std::uint64_t>(pattern));
  std::vector<std::uint16_t> x;
  switch (pattern) {
    case 0: x = test::random_bf16(n, n + k, 4096); break;               // realistic
    case 1:                                                              // few distinct values: ties everywhere
      x.resize(n);
      for (auto& v : x) v = static_cast<std::uint16_t>(0x3f80 + rng.next_below(3) + (rng.next_below(2) << 15));
      break;
    case 2: x.assign(n, 0); break;                                       // all zero
    case 3:                                                              // arbitrary patterns incl. NaN/Inf
      x.resize(n);
      for (auto& v : x) v = static_cast<std::uint16_t>(rng.next_u32());
      break;
  }
  CHECK(fast(x, k) == slow(x, k));
}

TEST_CASE("select_topk orders by magnitude, then by index", "[toploc][topk]") {
  // bf16: 1.0 = 0x3f80, -2.0 = 0xc000, 2.0 = 0x4000, +Inf = 0x7f80, NaN = 0x7fc0
  const std::vector<std::uint16_t> x{0x3f80, 0xc000, 0x4000, 0x0000, 0x7f80, 0xbf80, 0x7fc0};
  CHECK(fast(x, 7) == std::vector<std::uint32_t>{6, 4, 1, 2, 0, 5, 3});
  CHECK(fast(x, 3) == std::vector<std::uint32_t>{6, 4, 1});
  // k above n selects everything.
  CHECK(fast(x, 100).size() == 7);
}

TEST_CASE("select_topk rejects bad arguments", "[toploc][topk]") {
  std::vector<std::uint16_t> x(10, 1);
  std::vector<std::uint32_t> out(10);
  CHECK(select_topk(x, 0, out).status().code() == dtrain::status_code::invalid_argument);
  CHECK(select_topk(x, 5, std::span(out).first(4)).status().code() == dtrain::status_code::invalid_argument);
  auto empty = select_topk({}, 5, out);
  REQUIRE(empty.ok());
  CHECK(*empty == 0);
}
