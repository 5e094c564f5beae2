// The signed TOPLOC envelope: round trip, tamper and truncation rejection, replay under
// another binding, wrong signer, versions, seal-side checks and a frozen vector.
#include "dtrain/toploc/envelope.h"

#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "dtrain/core/bytes.h"
#include "dtrain/toploc/chunking.h"
#include "dtrain/toploc/field.h"
#include "common/hex.h"

using namespace dtrain;
using namespace dtrain::toploc;

using dtrain::test::bytes_of;
using dtrain::test::from_hex;
using dtrain::test::to_hex;

namespace {



crypto::identity seeded(unsigned char first) {
  std::vector<std::byte> seed(32);
  for (std::size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<std::byte>(first + i);
  return crypto::identity::from_seed(seed).value();
}

// Valid proofs (modulus in [k, p], coefficients < p) with deterministic contents; the
// envelope does not care whether they interpolate anything.
std::vector<proof> some_proofs(std::size_t k, std::size_t count) {
  std::vector<proof> out(count);
  for (std::size_t c = 0; c < count; ++c) {
    out[c].modulus = static_cast<std::uint32_t>(prime - c);
    out[c].coeffs.resize(k);
    for (std::size_t i = 0; i < k; ++i) out[c].coeffs[i] = static_cast<std::uint16_t>((c * 7919 + i * 104729 + 13) % prime);
  }
  return out;
}

const std::vector<std::uint32_t> tokens{1, 15043, 3186, 29991, 2};

envelope_header header_for(std::uint16_t k) {
  envelope_header h;
  h.model_hash = model_hash(bytes_of("tiny model weights"));
  h.token_ids_hash = token_ids_hash(tokens);
  h.first_chunk = 3;
  h.k = k;
  h.tokens_per_chunk = 32;
  h.prefill_tokens = 0;
  return h;
}

envelope_expectation expectation_for(const envelope_header& h) {
  envelope_expectation e;
  e.model_hash = h.model_hash;
  e.token_ids_hash = h.token_ids_hash;
  e.first_chunk = h.first_chunk;
  e.k = h.k;
  e.tokens_per_chunk = h.tokens_per_chunk;
  e.prefill_tokens = h.prefill_tokens;
  return e;
}

status_code code_of(std::span<const std::byte> bytes, const envelope_expectation& e) {
  auto r = open_envelope(bytes, e);
  return r.ok() ? status_code::ok : r.status().code();
}

// Re-signs bytes[0, size - 64) with `who`, as a node that signs whatever it likes would.
void resign(std::vector<std::byte>& env, const crypto::identity& who) {
  std::memcpy(env.data() + envelope_node_offset, who.id().key.data(), 32);
  std::vector<std::byte> msg(bytes_of(envelope_signing_context).begin(), bytes_of(envelope_signing_context).end());
  msg.insert(msg.end(), env.begin(), env.end() - envelope_signature_bytes);
  const auto sig = who.sign(msg);
  std::memcpy(env.data() + env.size() - envelope_signature_bytes, sig.data(), sig.size());
}

}  // namespace

TEST_CASE("envelope: model_hash and token_ids_hash known answers") {
  // Expected values computed with Python: hashlib.blake2b(data, digest_size=32), the token
  // IDs as struct.pack('<Q', n) + n × struct.pack('<I', id).
  CHECK(to_hex(model_hash(bytes_of("tiny model weights"))) ==
        "e6080b96b0d403156a580910ff2d5b609c7c2f47c0ef48774a94d2a949536422");
  CHECK(to_hex(token_ids_hash({})) == "81e47a19e6b29b0a65b9591762ce5143ed30d0261e5d24a3201752506b20f15c");
  const std::vector<std::uint32_t> three{1, 2, 0xdeadbeef};
  CHECK(to_hex(token_ids_hash(three)) == "16eaa5061f03c99f274e264627276d0aa715fbadd8ba03492b52190361bd642a");
  std::vector<std::uint32_t> many(1000);  // past the 256-id blocks of the implementation
  for (std::uint32_t i = 0; i < many.size(); ++i) many[i] = i;
  CHECK(to_hex(token_ids_hash(many)) == "0794636fd1cb0c302ad662fe564bc74054407a1ab8a9f83d5f294086d6e51c93");
  // The count is part of the hash: a prefix never collides with the whole.
  CHECK(token_ids_hash(std::span(many).first(999)) != token_ids_hash(many));
}

TEST_CASE("envelope: seal then open round-trips") {
  const std::uint16_t k = GENERATE(values<std::uint16_t>({1, 4, 128}));
  const std::size_t count = GENERATE(values<std::size_t>({1, 3, 17}));
  CAPTURE(k, count);
  const auto node = seeded(1);
  const auto h = header_for(k);
  const auto proofs = some_proofs(k, count);
  auto sealed = seal_envelope(h, proofs, node);
  REQUIRE(sealed.ok());
  CHECK(sealed->size() == envelope_size(k, count));
  CHECK(to_hex(std::span(*sealed).first(4)) == "44545445");  // "DTTE"

  auto opened = open_envelope(*sealed, expectation_for(h));
  REQUIRE(opened.ok());
  CHECK(opened->header == h);
  CHECK(opened->node == node.id());
  CHECK(opened->proofs == proofs);
  // The proof section is the proofs' own byte layout.
  CHECK(std::vector<std::byte>(sealed->begin() + envelope_header_bytes, sealed->end() - envelope_signature_bytes) ==
        to_bytes(proofs));
  // Deterministic: sealing again gives the same bytes.
  CHECK(seal_envelope(h, proofs, node).value() == *sealed);
}

TEST_CASE("envelope: every single-byte corruption is rejected with the right code") {
  const auto h = header_for(4);
  const auto e = expectation_for(h);
  const auto sealed = seal_envelope(h, some_proofs(4, 3), seeded(1)).value();
  REQUIRE(open_envelope(sealed, e).ok());
  for (const unsigned mask : {0x01u, 0x80u, 0xffu}) {
    for (std::size_t i = 0; i < sealed.size(); ++i) {
      auto bad = sealed;
      bad[i] ^= static_cast<std::byte>(mask);
      CAPTURE(mask, i);
      const auto c = code_of(bad, e);
      CHECK(c != status_code::ok);
      if (i < 4) CHECK(c == status_code::data_loss);  // magic
      else if (i < 6) CHECK((c == status_code::data_loss || c == status_code::unimplemented));  // version
      else if (i >= 74 && i < 80) CHECK(c == status_code::data_loss);  // count and k: the length no longer fits
      else CHECK(c == status_code::permission_denied);  // only the signature can tell
    }
  }
}

TEST_CASE("envelope: every truncation and any extension is rejected as data_loss") {
  const auto h = header_for(4);
  const auto e = expectation_for(h);
  const auto sealed = seal_envelope(h, some_proofs(4, 2), seeded(1)).value();
  for (std::size_t n = 0; n < sealed.size(); ++n) {
    CAPTURE(n);
    CHECK(code_of(std::span(sealed).first(n), e) == status_code::data_loss);
  }
  auto longer = sealed;
  longer.push_back(std::byte{0});
  CHECK(code_of(longer, e) == status_code::data_loss);
  // One more proof's worth of bytes: the count field no longer matches.
  longer.resize(sealed.size() + proof_size(4));
  CHECK(code_of(longer, e) == status_code::data_loss);
}

TEST_CASE("envelope: replay under another binding is rejected") {
  const auto node = seeded(1);
  const auto other = seeded(100);
  const auto h = header_for(4);
  const auto sealed = seal_envelope(h, some_proofs(4, 2), node).value();
  const auto base = expectation_for(h);
  REQUIRE(open_envelope(sealed, base).ok());

  auto expect_failure = [&](const envelope_expectation& e, status_code code, std::string_view needle) {
    auto r = open_envelope(sealed, e);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == code);
    CAPTURE(r.status().message());
    CHECK(r.status().message().find(needle) != std::string::npos);
  };

  SECTION("another model") {
    auto e = base;
    e.model_hash = model_hash(bytes_of("other model weights"));
    expect_failure(e, status_code::permission_denied, "another model");
  }
  SECTION("another token sequence") {
    auto e = base;
    const std::vector<std::uint32_t> altered{1, 15043, 3186, 29992, 2};
    e.token_ids_hash = token_ids_hash(altered);
    expect_failure(e, status_code::permission_denied, "another token sequence");
  }
  SECTION("another chunk index") {
    auto e = base;
    e.first_chunk = 4;
    expect_failure(e, status_code::permission_denied, "starts at chunk 3, expected chunk 4");
    e.first_chunk.reset();  // no position expected: accepted, and reported
    auto r = open_envelope(sealed, e);
    REQUIRE(r.ok());
    CHECK(r->header.first_chunk == 3);
  }
  SECTION("a node outside the allowlist") {
    auto e = base;
    const std::vector<crypto::peer_id> others{other.id()};
    e.allowed_nodes = others;
    expect_failure(e, status_code::permission_denied, "not an allowed node");
    const std::vector<crypto::peer_id> both{other.id(), node.id()};
    e.allowed_nodes = both;
    CHECK(open_envelope(sealed, e).ok());
  }
  SECTION("chunks beyond the token sequence") {
    auto e = base;  // chunks 3 and 4 with 32 tokens each and no prefill: 129 tokens needed
    e.total_tokens = 129;
    CHECK(open_envelope(sealed, e).ok());
    e.total_tokens = 128;
    expect_failure(e, status_code::permission_denied, "make only 4 chunks");
  }
  SECTION("another k or chunk layout") {
    auto e = base;
    e.k = 128;
    expect_failure(e, status_code::failed_precondition, "k = 4, expected 128");
    e = base;
    e.tokens_per_chunk = 16;
    expect_failure(e, status_code::failed_precondition, "tokens_per_chunk");
    e = base;
    e.prefill_tokens = 7;
    expect_failure(e, status_code::failed_precondition, "prefill_tokens");
  }
}

TEST_CASE("envelope: total_tokens agrees with plan_chunks") {
  const std::size_t total = GENERATE(values<std::size_t>({1, 5, 31, 32, 33, 100, 1000}));
  const std::uint32_t prefill = GENERATE(values<std::uint32_t>({0, 7, 32, 200}));
  const std::uint16_t per_chunk = GENERATE(values<std::uint16_t>({1, 32}));
  CAPTURE(total, prefill, per_chunk);
  proof_options opt;
  opt.k = 4;
  opt.tokens_per_chunk = per_chunk;
  opt.prefill_tokens = prefill;
  const std::size_t planned = plan_chunks(total, opt).size();
  REQUIRE(planned >= 1);

  auto h = header_for(4);
  h.first_chunk = 0;
  h.tokens_per_chunk = per_chunk;
  h.prefill_tokens = prefill;
  auto e = expectation_for(h);
  e.total_tokens = total;
  const auto node = seeded(1);
  CHECK(open_envelope(seal_envelope(h, some_proofs(4, planned), node).value(), e).ok());
  CHECK(code_of(seal_envelope(h, some_proofs(4, planned + 1), node).value(), e) == status_code::permission_denied);
  h.first_chunk = static_cast<std::uint32_t>(planned - 1);
  e.first_chunk = h.first_chunk;
  CHECK(open_envelope(seal_envelope(h, some_proofs(4, 1), node).value(), e).ok());
  h.first_chunk += 1;
  e.first_chunk = h.first_chunk;
  CHECK(code_of(seal_envelope(h, some_proofs(4, 1), node).value(), e) == status_code::permission_denied);
}

TEST_CASE("envelope: a wrong signer is rejected") {
  const auto node = seeded(1);
  const auto mallory = seeded(100);
  const auto h = header_for(4);
  const auto e = expectation_for(h);
  const auto sealed = seal_envelope(h, some_proofs(4, 2), node).value();

  // Claiming the proofs as Mallory's by swapping in her key breaks the signature.
  auto claimed = sealed;
  std::memcpy(claimed.data() + envelope_node_offset, mallory.id().key.data(), 32);
  CHECK(code_of(claimed, e) == status_code::permission_denied);

  // Mallory's signature under the honest node's key does not verify either.
  auto forged = sealed;
  const auto mallory_sig = mallory.sign(std::span(sealed).first(sealed.size() - envelope_signature_bytes));
  std::memcpy(forged.data() + forged.size() - envelope_signature_bytes, mallory_sig.data(), mallory_sig.size());
  CHECK(code_of(forged, e) == status_code::permission_denied);

  // A signature without the domain-separation context does not verify.
  auto no_context = sealed;
  const auto bare = node.sign(std::span(sealed).first(sealed.size() - envelope_signature_bytes));
  std::memcpy(no_context.data() + no_context.size() - envelope_signature_bytes, bare.data(), bare.size());
  CHECK(code_of(no_context, e) == status_code::permission_denied);

  // Re-signed honestly by Mallory it opens, as Mallory's, and an allowlist stops it.
  auto resigned = sealed;
  resign(resigned, mallory);
  auto r = open_envelope(resigned, e);
  REQUIRE(r.ok());
  CHECK(r->node == mallory.id());
  auto strict = e;
  const std::vector<crypto::peer_id> allowed{node.id()};
  strict.allowed_nodes = allowed;
  CHECK(code_of(resigned, strict) == status_code::permission_denied);
}

TEST_CASE("envelope: versions") {
  const auto h = header_for(4);
  const auto e = expectation_for(h);
  auto sealed = seal_envelope(h, some_proofs(4, 1), seeded(1)).value();
  auto v2 = sealed;
  store_le<std::uint16_t>(v2.data() + 4, 2);
  auto r = open_envelope(v2, e);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == status_code::unimplemented);
  CHECK(r.status().message().find("version 2") != std::string::npos);
  // A newer version's layout is unknown: any length after the version is unimplemented.
  CHECK(code_of(std::span(v2).first(6), e) == status_code::unimplemented);
  v2.resize(3000);
  CHECK(code_of(v2, e) == status_code::unimplemented);
  auto v0 = sealed;
  store_le<std::uint16_t>(v0.data() + 4, 0);
  CHECK(code_of(v0, e) == status_code::data_loss);
}

TEST_CASE("envelope: structural fields are checked before the signature") {
  const auto node = seeded(1);
  const auto h = header_for(4);
  const auto e = expectation_for(h);
  const auto sealed = seal_envelope(h, some_proofs(4, 2), node).value();
  // Properly signed but structurally invalid headers: data_loss, not a crash.
  auto patch = [&](std::size_t off, auto value) {
    auto b = sealed;
    store_le(b.data() + off, value);
    resign(b, node);
    return code_of(b, e);
  };
  CHECK(patch(78, std::uint16_t{0}) == status_code::data_loss);      // k = 0
  CHECK(patch(78, std::uint16_t{65500}) == status_code::data_loss);  // k > 65497
  CHECK(patch(80, std::uint16_t{0}) == status_code::data_loss);      // tokens_per_chunk = 0
  CHECK(patch(74, std::uint32_t{0}) == status_code::data_loss);      // no proofs
  CHECK(patch(74, std::uint32_t{0xffffffff}) == status_code::data_loss);  // a huge count: no allocation
  CHECK(patch(70, std::uint32_t{0xffffffff}) == status_code::data_loss);  // chunk indices past 2^32 - 1
  // The last two chunk indices are valid: past the structure, the binding says no.
  CHECK(patch(70, std::uint32_t{0xfffffffe}) == status_code::permission_denied);
}

TEST_CASE("envelope: malformed proofs under a valid signature are data_loss") {
  const auto node = seeded(1);
  const auto h = header_for(4);
  const auto e = expectation_for(h);
  const auto sealed = seal_envelope(h, some_proofs(4, 2), node).value();
  const std::size_t second = envelope_header_bytes + proof_size(4);
  struct mutation { const char* what; std::size_t offset; std::uint16_t be_value; };
  const mutation m = GENERATE(mutation{"null proof (modulus 0)", second, 0}, mutation{"modulus below k", second, 3},
                              mutation{"modulus above p", second, 65498},
                              mutation{"coefficient >= p", second + 2 + 2 * 3, 65497});
  CAPTURE(m.what);
  auto b = sealed;
  b[m.offset] = static_cast<std::byte>(m.be_value >> 8);  // proofs are big-endian (proof.h)
  b[m.offset + 1] = static_cast<std::byte>(m.be_value & 0xff);
  resign(b, node);
  auto r = open_envelope(b, e);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == status_code::data_loss);
}

TEST_CASE("envelope: seal rejects bad headers and proofs") {
  const auto node = seeded(1);
  auto h = header_for(4);
  const auto good = some_proofs(4, 2);
  auto code = [&](const envelope_header& hh, std::span<const proof> ps) {
    auto r = seal_envelope(hh, ps, node);
    return r.ok() ? status_code::ok : r.status().code();
  };
  CHECK(code(h, good) == status_code::ok);
  CHECK(code(h, {}) == status_code::invalid_argument);
  CHECK(code(h, some_proofs(5, 1)) == status_code::invalid_argument);  // 5 coefficients, k = 4
  auto bad = good;
  bad[1] = null_proof(4);
  CHECK(code(h, bad) == status_code::invalid_argument);
  bad = good;
  bad[1].modulus = 3;
  CHECK(code(h, bad) == status_code::invalid_argument);
  bad = good;
  bad[1].modulus = prime + 1;
  CHECK(code(h, bad) == status_code::invalid_argument);
  bad = good;
  bad[0].coeffs[2] = static_cast<std::uint16_t>(prime);
  CHECK(code(h, bad) == status_code::invalid_argument);
  auto hk = h;
  hk.k = 0;
  CHECK(code(hk, some_proofs(0, 1)) == status_code::invalid_argument);
  hk.k = 65498;
  CHECK(code(hk, good) == status_code::invalid_argument);
  auto ht = h;
  ht.tokens_per_chunk = 0;
  CHECK(code(ht, good) == status_code::invalid_argument);
  auto hf = h;
  hf.first_chunk = 0xffffffffu;  // one proof fits (index 2^32 - 1), two do not
  CHECK(code(hf, std::span(good).first(1)) == status_code::ok);
  CHECK(code(hf, good) == status_code::invalid_argument);
}

TEST_CASE("envelope: frozen vector (k = 4, two proofs, seeded identity)") {
  // Identity from seed bytes 01 02 .. 20; model "tiny model weights"; tokens
  // {1, 15043, 3186, 29991, 2}; chunks 3 and 4, 32 tokens per chunk, no prefill.
  // Every byte was computed independently in Python (hashlib.blake2b, struct, and the
  // `cryptography` package's Ed25519 over the signing context ‖ body).
  // Layout: docs/formats/toploc_envelope.md. If this changes, the format changed: bump
  // envelope_version instead of updating the vector.
  const auto node = seeded(1);
  const auto h = header_for(4);
  std::vector<proof> proofs(2);
  proofs[0] = proof{65497, {1, 2, 3, 65496}};
  proofs[1] = proof{4, {0, 0x1234, 0xabcd, 7}};
  const auto sealed = seal_envelope(h, proofs, node).value();
  CHECK(to_hex(sealed) ==
        "44545445"                                                          // magic "DTTE"
        "0100"                                                              // version 1
        "e6080b96b0d403156a580910ff2d5b609c7c2f47c0ef48774a94d2a949536422"  // model hash
        "e1270fe571b479327c38e8fa1c6ef5d66d15d773419506c025ab8ab917c15725"  // token-ID hash
        "03000000"                                                          // first chunk 3
        "02000000"                                                          // 2 proofs
        "0400"                                                              // k = 4
        "2000"                                                              // 32 tokens per chunk
        "00000000"                                                          // no prefill
        "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664"  // node key
        "ffd9000100020003ffd8"                                              // proof 0
        "000400001234abcd0007"                                              // proof 1
        "3f2c5ab349b5aad02bc1c6e5abaa9ebecbd513368d67138bf05ecdfab8134e2f"  // Ed25519 signature
        "5276f466b6b51fcefd7faff60c4c2e42c94ae6f1a4938ebf250043c622e97400");
  CHECK(open_envelope(sealed, expectation_for(h)).ok());
}
