// BLAKE2b-256: RFC 7693 / hashlib known answers, one-shot = chunked = byte-by-byte, and
// the constant-time comparison.
#include "dtrain/crypto/blake2b.h"

#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "dtrain/crypto/constant_time.h"
#include "common/hex.h"
#include "common/test_bytes.h"

using namespace dtrain::crypto;

using dtrain::test::bytes_of;
using dtrain::test::from_hex;
using dtrain::test::to_hex;

TEST_CASE("blake2b_256: known answers") {
  // Computed independently with Python: hashlib.blake2b(msg, digest_size=32).hexdigest().
  CHECK(to_hex(blake2b_256({})) == "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
  CHECK(to_hex(blake2b_256(bytes_of("abc"))) == "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
  // Past one 128-byte block, with a partial final block.
  CHECK(to_hex(blake2b_256(dtrain::test::pattern_bytes(1000))) == "5d0119acc3b3fb1d1e878b458ef4140eee7d2ecaec6cdbe8a095b6c2da4b06b7");
}

TEST_CASE("blake2b_256: one-shot, chunked and byte-by-byte agree") {
  const std::size_t n = GENERATE(values<std::size_t>({0, 1, 127, 128, 129, 1000, 4096}));
  const std::size_t chunk = GENERATE(values<std::size_t>({1, 3, 64, 128, 200}));
  CAPTURE(n, chunk);
  const auto msg = dtrain::test::pattern_bytes(n);
  const digest256 one_shot = blake2b_256(msg);

  blake2b_256_state chunked;
  for (std::size_t i = 0; i < n; i += chunk) chunked.update(std::span(msg).subspan(i, std::min(chunk, n - i)));
  CHECK(chunked.final() == one_shot);

  blake2b_256_state bytewise;
  for (std::size_t i = 0; i < n; ++i) bytewise.update(std::span(msg).subspan(i, 1));
  bytewise.update({});  // an empty update changes nothing
  CHECK(bytewise.final() == one_shot);
}

TEST_CASE("blake2b_256_state: init restarts, copies fork the state, different inputs differ") {
  const auto msg = dtrain::test::pattern_bytes(300);
  blake2b_256_state h;
  h.update(bytes_of("garbage"));
  h.init();
  h.update(std::span(msg).first(100));
  blake2b_256_state fork = h;  // the state after the first 100 bytes
  h.update(std::span(msg).subspan(100));
  CHECK(h.final() == blake2b_256(msg));
  CHECK(fork.final() == blake2b_256(std::span(msg).first(100)));

  h.init();  // reusable after final()
  CHECK(h.final() == blake2b_256({}));

  auto flipped = msg;
  flipped[150] ^= std::byte{1};
  CHECK(blake2b_256(flipped) != blake2b_256(msg));
  CHECK(blake2b_256(std::span(msg).first(299)) != blake2b_256(msg));
}

TEST_CASE("constant_time_equal") {
  const auto a = dtrain::test::pattern_bytes(64);
  auto b = a;
  CHECK(constant_time_equal(a, b));
  CHECK(constant_time_equal({}, {}));
  CHECK_FALSE(constant_time_equal(a, std::span(b).first(63)));
  for (std::size_t i = 0; i < b.size(); ++i) {
    auto c = a;
    c[i] ^= std::byte{0x80};
    CAPTURE(i);
    CHECK_FALSE(constant_time_equal(a, c));
  }
}
