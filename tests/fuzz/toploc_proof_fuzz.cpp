// libFuzzer target for the TOPLOC decoders: parse_proof, parse_proofs, proof_from_base64
// (docs/formats/toploc_proof.md) and open_envelope (docs/formats/toploc_envelope.md).
// Input: [k byte][mode byte][payload]. k = 1 + byte0 % 200; the low 3 bits of byte1 are
// the proof count parse_proofs expects (0..7); bit 7 of byte1 re-signs the payload as an
// envelope with the fuzzer's own key, so the checks behind the signature see arbitrary
// bytes too. Every decoder runs on every input. Aborts on a contract violation:
//   - parse_proof / parse_proofs succeed exactly when an independent check of the layout
//     says the bytes are valid (length, modulus in [k, 65497], coefficients < 65497),
//     fail only with data_loss, and a success re-serialises (to_bytes) to the input;
//   - proof_from_base64 yields only valid proofs, whose to_base64 is the input text;
//   - open_envelope fails only with the documented codes; an opened envelope holds valid
//     proofs and has exactly envelope_size(k, count) bytes; when the fuzzer signed it,
//     only structure or proof errors (data_loss, unimplemented) are possible, and a
//     success seals back (seal_envelope) to the very same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "dtrain/core/bytes.h"
#include "dtrain/toploc/envelope.h"
#include "dtrain/toploc/field.h"
#include "dtrain/toploc/proof.h"
#include "fuzz_contract.h"

namespace {

using namespace dtrain;
using namespace dtrain::toploc;

[[noreturn]] void fail(const char* what, const status& st = {}) {
  dtrain::fuzz::contract_violated("toploc_proof_fuzz", what, st);
}

const crypto::identity& fuzz_key() { return dtrain::fuzz::fixed_identity<crypto::identity>(0x5a); }

std::uint16_t be16(const std::byte* p) {
  return static_cast<std::uint16_t>((static_cast<unsigned>(p[0]) << 8) | static_cast<unsigned>(p[1]));
}

// The layout rules of proof.h, checked independently of the parser.
bool bytes_valid(std::span<const std::byte> b, std::size_t k) {
  if (b.size() != proof_size(k)) return false;
  const std::uint32_t m = be16(b.data());
  if (m < k || m > prime) return false;  // k >= 1, so this rejects the null proof too
  for (std::size_t i = 0; i < k; ++i)
    if (be16(b.data() + 2 + 2 * i) >= prime) return false;
  return true;
}

void check_proof(const proof& p, std::size_t k) {
  if (p.coeffs.size() != k) fail("a parsed proof has the wrong coefficient count");
  if (p.modulus < k || p.modulus > prime) fail("a parsed proof has a modulus outside [k, 65497]");
  for (auto c : p.coeffs)
    if (c >= prime) fail("a parsed proof has a coefficient >= 65497");
  // Evaluation stays in the field, at small and huge indices alike.
  for (std::uint64_t x : {std::uint64_t{0}, std::uint64_t{p.modulus - 1}, std::uint64_t{1} << 40, ~std::uint64_t{0}})
    if (p.at(x) >= prime) fail("proof::at returned a value >= 65497");
}

void fuzz_proofs(std::span<const std::byte> in, std::size_t k, std::size_t count) {
  auto one = parse_proof(in, k);
  if (one.ok() != bytes_valid(in, k)) fail("parse_proof disagrees with the layout rules", one.status());
  if (one.ok()) {
    check_proof(*one, k);
    if (to_bytes(*one) != std::vector<std::byte>(in.begin(), in.end())) fail("parse_proof then to_bytes changed the bytes");
  } else if (one.status().code() != status_code::data_loss) {
    fail("parse_proof failed with other than data_loss", one.status());
  }

  bool all_valid = in.size() == count * proof_size(k);
  for (std::size_t i = 0; all_valid && i < count; ++i)
    all_valid = bytes_valid(in.subspan(i * proof_size(k), proof_size(k)), k);
  auto many = parse_proofs(in, k, count);
  if (many.ok() != all_valid) fail("parse_proofs disagrees with the layout rules", many.status());
  if (many.ok()) {
    if (many->size() != count) fail("parse_proofs returned another count");
    for (const auto& p : *many) check_proof(p, k);
    if (to_bytes(std::span<const proof>(*many)) != std::vector<std::byte>(in.begin(), in.end()))
      fail("parse_proofs then to_bytes changed the bytes");
  } else if (many.status().code() != status_code::data_loss) {
    fail("parse_proofs failed with other than data_loss", many.status());
  }

  const std::string_view text(reinterpret_cast<const char*>(in.data()), in.size());
  auto b64 = proof_from_base64(text, k);
  if (b64.ok()) {
    check_proof(*b64, k);
    if (to_base64(*b64) != text) fail("proof_from_base64 accepted a text that to_base64 does not write");
  } else if (b64.status().code() != status_code::data_loss) {
    fail("proof_from_base64 failed with other than data_loss", b64.status());
  }
}

// The expectation an envelope's own header fields satisfy (all zero when too short), so
// that an authentic envelope gets past the binding checks to its proofs.
envelope_expectation self_expectation(std::span<const std::byte> in) {
  envelope_expectation e;
  if (in.size() < envelope_header_bytes) return e;
  std::memcpy(e.model_hash.data(), in.data() + 6, 32);
  std::memcpy(e.token_ids_hash.data(), in.data() + 38, 32);
  e.first_chunk = load_le<std::uint32_t>(in.data() + 70);
  e.k = load_le<std::uint16_t>(in.data() + 78);
  e.tokens_per_chunk = load_le<std::uint16_t>(in.data() + 80);
  e.prefill_tokens = load_le<std::uint32_t>(in.data() + 82);
  return e;
}

void check_envelope(const envelope& env, std::span<const std::byte> in) {
  if (env.proofs.empty()) fail("an opened envelope holds no proofs");
  if (in.size() != envelope_size(env.header.k, env.proofs.size())) fail("an opened envelope has the wrong size");
  for (const auto& p : env.proofs) check_proof(p, env.header.k);
}

void fuzz_envelope(std::span<const std::byte> in, bool resign) {
  if (!resign) {
    auto r = open_envelope(in, self_expectation(in));
    if (r.ok()) {
      check_envelope(*r, in);
      return;
    }
    const auto c = r.status().code();
    if (c != status_code::data_loss && c != status_code::unimplemented && c != status_code::permission_denied)
      fail("open_envelope failed with an undocumented code", r.status());
    return;
  }

  // Sign the payload as the fuzzer's own envelope: the node key, then the signature.
  if (in.size() < envelope_header_bytes + envelope_signature_bytes) return;
  std::vector<std::byte> env(in.begin(), in.end());
  std::memcpy(env.data() + envelope_node_offset, fuzz_key().id().key.data(), 32);
  const std::size_t body = env.size() - envelope_signature_bytes;
  std::vector<std::byte> msg(envelope_signing_context.size() + body);
  std::memcpy(msg.data(), envelope_signing_context.data(), envelope_signing_context.size());
  std::memcpy(msg.data() + envelope_signing_context.size(), env.data(), body);
  const auto sig = fuzz_key().sign(msg);
  std::memcpy(env.data() + body, sig.data(), sig.size());

  auto expect = self_expectation(env);
  const crypto::peer_id allowed[] = {fuzz_key().id()};
  expect.allowed_nodes = allowed;
  auto r = open_envelope(env, expect);
  if (!r.ok()) {
    const auto c = r.status().code();
    if (c != status_code::data_loss && c != status_code::unimplemented)
      fail("a self-signed, self-consistent envelope failed with other than data_loss or unimplemented", r.status());
    return;
  }
  check_envelope(*r, env);
  if (r->node != fuzz_key().id()) fail("the opened envelope names another node");
  auto again = seal_envelope(r->header, r->proofs, fuzz_key());
  if (!again.ok()) fail("an opened envelope does not seal", again.status());
  if (*again != env) fail("open then seal changed the bytes");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t k = 1 + data[0] % 200;
  const std::size_t count = data[1] & 7u;
  const bool resign = (data[1] & 0x80u) != 0;
  const auto in = std::span<const std::byte>(reinterpret_cast<const std::byte*>(data) + 2, size - 2);
  fuzz_proofs(in, k, count);
  fuzz_envelope(in, resign);
  return 0;
}
