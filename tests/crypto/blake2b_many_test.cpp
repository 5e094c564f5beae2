// blake2b_256_many and its 4-lane kernels (portable and AVX2): every digest equals
// blake2b_256 (libsodium) of the same message, for equal and mixed lane lengths, any
// message count, and unaligned message pointers; plus the "abc" known answer per lane.
#include "dtrain/crypto/blake2b_many.h"

#include <catch2/catch.hpp>

#include <array>
#include <string>
#include <vector>

#include "../../lib/crypto/blake2b_many_kernels.h"
#include "common/hex.h"
#include "common/test_bytes.h"

using namespace dtrain::crypto;

using dtrain::test::bytes_of;
using dtrain::test::random_bytes;
using dtrain::test::to_hex;

namespace {

using msg_view = std::span<const std::byte>;
using kernel_fn = void (*)(const std::byte* const[4], const std::size_t[4], digest256[4]) noexcept;

constexpr std::size_t mib = std::size_t{1} << 20;

struct kernel_case {
  const char* name;
  kernel_fn fn;
};

// The kernels this machine can run; the AVX2 one is reported as skipped without AVX2.
std::vector<kernel_case> kernels() {
  std::vector<kernel_case> ks{{"portable", &detail::blake2b_256_x4_portable}};
#if DTRAIN_B2X4_HAVE_AVX2_BUILD
  if (blake2b_256_many_uses_avx2())
    ks.push_back({"avx2", &detail::blake2b_256_x4_avx2});
  else
    WARN("CPU without AVX2: blake2b_256_x4_avx2 not tested");
#else
  WARN("not an x86 build: blake2b_256_x4_avx2 not tested");
#endif
  return ks;
}

// Runs one kernel on four messages and checks each lane against libsodium.
void check_kernel(const kernel_case& k, const std::array<msg_view, 4>& msgs) {
  const std::byte* in[4];
  std::size_t len[4];
  for (std::size_t l = 0; l < 4; ++l) {
    in[l] = msgs[l].data();
    len[l] = msgs[l].size();
  }
  digest256 out[4];
  k.fn(in, len, out);
  for (std::size_t l = 0; l < 4; ++l) {
    CAPTURE(k.name, l, len[l]);
    CHECK(to_hex(out[l]) == to_hex(blake2b_256(msgs[l])));
  }
}

// blake2b_256_many over `msgs`, checked message by message against libsodium.
void check_many(const std::vector<msg_view>& msgs) {
  std::vector<digest256> out(msgs.size());
  blake2b_256_many(msgs, out);
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    CAPTURE(msgs.size(), i, msgs[i].size());
    CHECK(to_hex(out[i]) == to_hex(blake2b_256(msgs[i])));
  }
}

}  // namespace

TEST_CASE("blake2b_256_x4: \"abc\" in every lane") {
  const std::string abc_hex = "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319";
  const msg_view abc = bytes_of("abc");
  for (const auto& k : kernels()) {
    const std::byte* in[4] = {abc.data(), abc.data(), abc.data(), abc.data()};
    const std::size_t len[4] = {3, 3, 3, 3};
    digest256 out[4];
    k.fn(in, len, out);
    for (std::size_t l = 0; l < 4; ++l) {
      CAPTURE(k.name, l);
      CHECK(to_hex(out[l]) == abc_hex);
    }
  }
  std::vector<msg_view> msgs(4, abc);
  std::vector<digest256> out(4);
  blake2b_256_many(msgs, out);
  for (const auto& d : out) CHECK(to_hex(d) == abc_hex);
}

TEST_CASE("blake2b_256_x4: four lanes of equal length") {
  const std::size_t n = GENERATE(values<std::size_t>({0, 1, 111, 112, 127, 128, 129, 255, 256, 257, 1000, 4096, mib}));
  CAPTURE(n);
  std::vector<std::vector<std::byte>> data;
  for (std::uint64_t s = 0; s < 4; ++s) data.push_back(random_bytes(n, 100 + s));
  const std::array<msg_view, 4> msgs{data[0], data[1], data[2], data[3]};
  for (const auto& k : kernels()) check_kernel(k, msgs);
  check_many({msgs.begin(), msgs.end()});
}

TEST_CASE("blake2b_256_x4: mixed lengths across lanes") {
  // Each set has lanes that finish at different passes, one set an empty lane beside a
  // 1 MiB lane; the lane order is rotated so every lane position gets every length.
  const std::vector<std::array<std::size_t, 4>> sets = {
      {0, mib, 129, 1}, {128, 0, 255, 1000}, {1, 111, 112, 127}, {4096, 257, 0, 256}, {0, 0, 0, 128}};
  for (const auto& lens : sets) {
    for (std::size_t rot = 0; rot < 4; ++rot) {
      std::vector<std::vector<std::byte>> data;
      for (std::size_t l = 0; l < 4; ++l) data.push_back(random_bytes(lens[(l + rot) % 4], 200 + l));
      const std::array<msg_view, 4> msgs{data[0], data[1], data[2], data[3]};
      CAPTURE(lens[0], lens[1], lens[2], lens[3], rot);
      for (const auto& k : kernels()) check_kernel(k, msgs);
      check_many({msgs.begin(), msgs.end()});
    }
  }
}

TEST_CASE("blake2b_256_x4: unaligned message pointers") {
  const auto buf = random_bytes(2 * 4096 + 64, 7);
  const std::size_t n = GENERATE(values<std::size_t>({1, 127, 128, 129, 1000, 4096}));
  for (std::size_t offset = 1; offset <= 7; ++offset) {
    CAPTURE(n, offset);
    // Every lane at a different misalignment (offset, offset + 1, ...), from one buffer;
    // the lanes overlap, which is allowed.
    std::array<msg_view, 4> msgs;
    for (std::size_t l = 0; l < 4; ++l) msgs[l] = std::span(buf).subspan(offset + l * 9, n);
    for (const auto& k : kernels()) check_kernel(k, msgs);
    check_many({msgs.begin(), msgs.end()});
  }
}

TEST_CASE("blake2b_256_many: any message count") {
  const std::size_t count = GENERATE(values<std::size_t>({0, 1, 2, 3, 4, 5, 7, 8, 9}));
  CAPTURE(count);
  std::vector<std::vector<std::byte>> data;
  SECTION("equal lengths") {
    for (std::size_t i = 0; i < count; ++i) data.push_back(random_bytes(1000, 300 + i));
  }
  SECTION("mixed lengths, one empty") {
    for (std::size_t i = 0; i < count; ++i) data.push_back(random_bytes(i == 2 ? 0 : (i * 389) % 3000 + 1, 400 + i));
  }
  const std::vector<msg_view> msgs(data.begin(), data.end());
  check_many(msgs);
}

TEST_CASE("blake2b_256_many: empty spans with a null pointer") {
  const auto x = random_bytes(300, 9);
  const std::vector<msg_view> msgs = {msg_view{}, x, msg_view{}, msg_view{}, msg_view{}};
  check_many(msgs);
  CHECK(to_hex(blake2b_256({})) == "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
}
