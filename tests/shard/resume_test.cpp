// The resume file: a frozen byte vector, round trips over chunk counts, and rejection of
// a wrong magic, a newer format version, unknown flags, a wrong length and stray bits.
#include "dtrain/shard/resume.h"

#include <catch2/catch.hpp>

#include "common/hex.h"

using namespace dtrain;
using namespace dtrain::shard;

namespace {
resume_state sample(std::size_t n) {
  resume_state s;
  s.version = 0x0102030405060708ull;
  for (std::size_t i = 0; i < 32; ++i) s.manifest_digest[i] = static_cast<std::byte>(0xa0 + i);
  s.done.resize(n);
  for (std::size_t i = 0; i < n; ++i) s.done[i] = (i % 3 == 0) ? 1 : 0;
  return s;
}
}  // namespace

TEST_CASE("resume: frozen vector") {
  const auto bytes = encode_resume(sample(10));
  // "DTSR", format 1, flags 0, version LE, digest a0..bf, n = 10 LE, bitmap of chunks 0,3,6,9:
  // byte 0 = 0b01001001 = 0x49, byte 1 = 0b10 = 0x02.
  const std::string want =
      "44545352" "0100" "0000" "0807060504030201"
      "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
      "0a00000000000000" "4902";
  CHECK(test::to_hex(bytes) == want);
  CHECK(bytes.size() == resume_header_bytes + 2);
}

TEST_CASE("resume: round trip") {
  const std::size_t n = GENERATE(0u, 1u, 7u, 8u, 9u, 1000u);
  CAPTURE(n);
  const auto s = sample(n);
  auto back = parse_resume(encode_resume(s));
  REQUIRE(back.ok());
  CHECK(*back == s);
}

TEST_CASE("resume: malformed files are rejected") {
  auto good = encode_resume(sample(9));
  SECTION("short") {
    good.resize(resume_header_bytes - 1);
    CHECK(parse_resume(good).status().code() == status_code::data_loss);
  }
  SECTION("magic") {
    good[0] = std::byte{'X'};
    CHECK(parse_resume(good).status().code() == status_code::data_loss);
  }
  SECTION("newer format") {
    good[4] = std::byte{2};
    CHECK(parse_resume(good).status().code() == status_code::unimplemented);
  }
  SECTION("format 0") {
    good[4] = std::byte{0};
    CHECK(parse_resume(good).status().code() == status_code::data_loss);
  }
  SECTION("flags") {
    good[6] = std::byte{1};
    CHECK(parse_resume(good).status().code() == status_code::data_loss);
  }
  SECTION("length does not match the count") {
    good.push_back(std::byte{0});
    CHECK(parse_resume(good).status().code() == status_code::data_loss);
  }
  SECTION("a hostile count") {
    for (std::size_t i = 48; i < 56; ++i) good[i] = std::byte{0xff};
    CHECK(parse_resume(good).status().code() == status_code::data_loss);
  }
  SECTION("bits past the count") {
    good.back() |= std::byte{0x80};
    CHECK(parse_resume(good).status().code() == status_code::data_loss);
  }
}

TEST_CASE("resume: the manifest digest is BLAKE2b-256 of the manifest bytes") {
  const std::vector<std::byte> m{std::byte{'a'}, std::byte{'b'}, std::byte{'c'}};
  CHECK(resume_manifest_digest(m) == hash_chunk(hash_algo::blake2b_256, m));
}
