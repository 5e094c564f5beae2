// The signed TOPLOC envelope: sealing and the verify-before-use opener
// (docs/formats/toploc_envelope.md).
#include "dtrain/toploc/envelope.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <string>

#include "dtrain/core/bytes.h"
#include "dtrain/crypto/constant_time.h"
#include "dtrain/toploc/field.h"

namespace dtrain::toploc {
namespace {

// Header offsets (the byte table of docs/formats/toploc_envelope.md).
constexpr std::size_t off_version = 4;
constexpr std::size_t off_model = 6;
constexpr std::size_t off_tokens = 38;
constexpr std::size_t off_first = 70;
constexpr std::size_t off_count = 74;
constexpr std::size_t off_k = 78;
constexpr std::size_t off_tpc = 80;
constexpr std::size_t off_prefill = 82;
static_assert(envelope_node_offset == 86 && envelope_node_offset + 32 == envelope_header_bytes);

constexpr std::uint64_t chunk_index_limit = std::uint64_t{1} << 32;

status denied(std::string m) { return {status_code::permission_denied, std::move(m)}; }

// Why a proof could not be sealed, or an empty string.
std::string proof_problem(const proof& p, std::size_t k) {
  if (p.coeffs.size() != k)
    return "has " + std::to_string(p.coeffs.size()) + " coefficients, the header says k = " + std::to_string(k);
  if (p.modulus == 0) return "is the null proof (modulus 0: building it failed)";
  if (p.modulus < k || p.modulus > prime)
    return "has modulus " + std::to_string(p.modulus) + " outside [k, 65497] = [" + std::to_string(k) + ", 65497]";
  for (std::size_t i = 0; i < p.coeffs.size(); ++i)
    if (p.coeffs[i] >= prime) return "has coefficient " + std::to_string(i) + " = " + std::to_string(p.coeffs[i]) + " >= 65497";
  return {};
}

// How many proofs plan_chunks(total, {tokens_per_chunk, prefill}) makes (chunking.h).
std::uint64_t planned_chunks(std::uint64_t total, std::uint64_t tokens_per_chunk, std::uint64_t prefill) {
  if (total == 0) return 0;
  const auto ceil_div = [&](std::uint64_t x) { return x / tokens_per_chunk + (x % tokens_per_chunk != 0 ? 1 : 0); };
  if (prefill == 0) return ceil_div(total);
  if (total <= prefill) return 1;
  return 1 + ceil_div(total - prefill);
}

bool digest_equal(const crypto::digest256& a, std::span<const std::byte> b) {
  return crypto::constant_time_equal(a, b);
}

}  // namespace

crypto::digest256 model_hash(std::span<const std::byte> weights_bytes) noexcept {
  return crypto::blake2b_256(weights_bytes);
}

crypto::digest256 token_ids_hash(std::span<const std::uint32_t> ids) noexcept {
  crypto::blake2b_256_state h;
  std::array<std::byte, 8> count{};
  store_le<std::uint64_t>(count.data(), ids.size());
  h.update(count);
  // Little-endian in blocks, so the digest does not depend on the host's byte order.
  std::array<std::byte, 4 * 256> block{};
  for (std::size_t i = 0; i < ids.size();) {
    const std::size_t n = std::min<std::size_t>(256, ids.size() - i);
    for (std::size_t j = 0; j < n; ++j) store_le<std::uint32_t>(block.data() + 4 * j, ids[i + j]);
    h.update(std::span(block).first(4 * n));
    i += n;
  }
  return h.final();
}

result<std::vector<std::byte>> seal_envelope(const envelope_header& header, std::span<const proof> proofs,
                                             const crypto::identity& signer) {
  const std::size_t k = header.k;
  if (k == 0 || k > prime)
    return invalid_argument("seal_envelope: k = " + std::to_string(k) + " is outside 1..65497");
  if (header.tokens_per_chunk == 0) return invalid_argument("seal_envelope: tokens_per_chunk is 0");
  if (proofs.empty()) return invalid_argument("seal_envelope: no proofs");
  if (proofs.size() > chunk_index_limit - header.first_chunk)
    return invalid_argument("seal_envelope: first_chunk " + std::to_string(header.first_chunk) + " + " +
                            std::to_string(proofs.size()) + " proofs runs past chunk index 2^32 - 1");
  for (std::size_t i = 0; i < proofs.size(); ++i)
    if (auto why = proof_problem(proofs[i], k); !why.empty())
      return invalid_argument("seal_envelope: proof " + std::to_string(i) + " " + why);

  // The signed message is context ‖ envelope body; build it in one buffer, sign it, then
  // drop the context and append the signature.
  const std::size_t ctx = envelope_signing_context.size();
  const std::size_t total = envelope_size(k, proofs.size());
  std::vector<std::byte> buf(ctx + total);
  std::memcpy(buf.data(), envelope_signing_context.data(), ctx);
  byte_writer w{std::span(buf).subspan(ctx, total - envelope_signature_bytes)};
  w.put<std::uint32_t>(envelope_magic);
  w.put<std::uint16_t>(envelope_version);
  w.put_bytes(header.model_hash);
  w.put_bytes(header.token_ids_hash);
  w.put<std::uint32_t>(header.first_chunk);
  w.put<std::uint32_t>(static_cast<std::uint32_t>(proofs.size()));
  w.put<std::uint16_t>(header.k);
  w.put<std::uint16_t>(header.tokens_per_chunk);
  w.put<std::uint32_t>(header.prefill_tokens);
  w.put_bytes(signer.id().key);
  for (const proof& p : proofs) {
    auto dst = w.take(proof_size(k));
    DTRAIN_ASSERT(dst.size() == proof_size(k));
    write_proof(p, dst);
  }
  DTRAIN_ASSERT(w.ok() && w.size() == total - envelope_signature_bytes);

  const auto sig = signer.sign(std::span(buf).first(ctx + total - envelope_signature_bytes));
  std::memcpy(buf.data() + ctx + total - envelope_signature_bytes, sig.data(), sig.size());
  buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(ctx));
  return buf;
}

result<envelope> open_envelope(std::span<const std::byte> bytes, const envelope_expectation& expect) {
  // 1. Structure: nothing beyond bytes.size() is read, nothing allocated before the
  //    length is known to match the header's sizes.
  if (bytes.size() < 4 || load_le<std::uint32_t>(bytes.data()) != envelope_magic)
    return data_loss("not a TOPLOC envelope: the first 4 bytes are not \"DTTE\"");
  if (bytes.size() < off_version + 2)
    return data_loss("TOPLOC envelope truncated to " + std::to_string(bytes.size()) + " bytes, inside the version");
  const auto version = load_le<std::uint16_t>(bytes.data() + off_version);
  if (version == 0) return data_loss("TOPLOC envelope version 0 is invalid");
  if (version > envelope_version)
    return unimplemented("TOPLOC envelope version " + std::to_string(version) + " is newer than this build reads (" +
                         std::to_string(envelope_version) + ")");
  if (bytes.size() < envelope_header_bytes + envelope_signature_bytes)
    return data_loss("TOPLOC envelope truncated: " + std::to_string(bytes.size()) + " bytes, the header and "
                     "signature alone take " + std::to_string(envelope_header_bytes + envelope_signature_bytes));

  envelope_header h;
  std::memcpy(h.model_hash.data(), bytes.data() + off_model, 32);
  std::memcpy(h.token_ids_hash.data(), bytes.data() + off_tokens, 32);
  h.first_chunk = load_le<std::uint32_t>(bytes.data() + off_first);
  const std::uint32_t count = load_le<std::uint32_t>(bytes.data() + off_count);
  h.k = load_le<std::uint16_t>(bytes.data() + off_k);
  h.tokens_per_chunk = load_le<std::uint16_t>(bytes.data() + off_tpc);
  h.prefill_tokens = load_le<std::uint32_t>(bytes.data() + off_prefill);
  crypto::peer_id node;
  std::memcpy(node.key.data(), bytes.data() + envelope_node_offset, 32);

  if (h.k == 0 || h.k > prime)
    return data_loss("TOPLOC envelope: k = " + std::to_string(h.k) + " is outside 1..65497");
  if (h.tokens_per_chunk == 0) return data_loss("TOPLOC envelope: tokens_per_chunk is 0");
  if (count == 0) return data_loss("TOPLOC envelope holds no proofs");
  if (std::uint64_t{h.first_chunk} + count > chunk_index_limit)
    return data_loss("TOPLOC envelope: first chunk " + std::to_string(h.first_chunk) + " + count " +
                     std::to_string(count) + " runs past chunk index 2^32 - 1");
  // count < 2^32 and proof_size(k) < 2^17: the product fits 64 bits.
  const std::uint64_t expected = std::uint64_t{envelope_header_bytes} + std::uint64_t{count} * proof_size(h.k) +
                                 envelope_signature_bytes;
  if (bytes.size() != expected)
    return data_loss("TOPLOC envelope of " + std::to_string(bytes.size()) + " bytes, but " + std::to_string(count) +
                     " proofs with k = " + std::to_string(h.k) + " make " + std::to_string(expected) +
                     (bytes.size() < expected ? " (truncated)" : " (trailing bytes)"));

  // 2. The signature, over context ‖ everything before it.
  const std::size_t body = bytes.size() - envelope_signature_bytes;
  crypto::signature sig;
  std::memcpy(sig.data(), bytes.data() + body, sig.size());
  {
    const std::size_t ctx = envelope_signing_context.size();
    std::vector<std::byte> msg(ctx + body);
    std::memcpy(msg.data(), envelope_signing_context.data(), ctx);
    std::memcpy(msg.data() + ctx, bytes.data(), body);
    if (!crypto::verify(node, msg, sig))
      return denied("TOPLOC envelope signature does not verify under its node key " + node.short_hex());
  }

  // 3. The binding.
  if (!digest_equal(expect.model_hash, h.model_hash)) return denied("envelope is for another model");
  if (!digest_equal(expect.token_ids_hash, h.token_ids_hash))
    return denied("envelope is for another token sequence");
  if (expect.first_chunk && *expect.first_chunk != h.first_chunk)
    return denied("envelope starts at chunk " + std::to_string(h.first_chunk) + ", expected chunk " +
                             std::to_string(*expect.first_chunk));
  if (!expect.allowed_nodes.empty()) {
    bool allowed = false;
    for (const auto& n : expect.allowed_nodes) allowed = allowed || n == node;
    if (!allowed) return denied("envelope signer " + node.hex() + " is not an allowed node");
  }
  if (h.k != expect.k)
    return failed_precondition("envelope has k = " + std::to_string(h.k) + ", expected " + std::to_string(expect.k));
  if (h.tokens_per_chunk != expect.tokens_per_chunk)
    return failed_precondition("envelope has tokens_per_chunk = " + std::to_string(h.tokens_per_chunk) +
                               ", expected " + std::to_string(expect.tokens_per_chunk));
  if (h.prefill_tokens != expect.prefill_tokens)
    return failed_precondition("envelope has prefill_tokens = " + std::to_string(h.prefill_tokens) + ", expected " +
                               std::to_string(expect.prefill_tokens));
  if (expect.total_tokens) {
    const std::uint64_t planned = planned_chunks(*expect.total_tokens, h.tokens_per_chunk, h.prefill_tokens);
    if (std::uint64_t{h.first_chunk} + count > planned)
      return denied("envelope covers chunks " + std::to_string(h.first_chunk) + ".." +
                               std::to_string(std::uint64_t{h.first_chunk} + count - 1) + ", but " +
                               std::to_string(*expect.total_tokens) + " tokens make only " + std::to_string(planned) +
                               " chunks");
  }

  // 4. The proofs.
  auto proofs = parse_proofs(bytes.subspan(envelope_header_bytes, body - envelope_header_bytes), h.k, count);
  if (!proofs.ok())
    return data_loss("TOPLOC envelope signed by " + node.short_hex() + ": " + proofs.status().message());
  return envelope{h, node, std::move(*proofs)};
}

}  // namespace dtrain::toploc
