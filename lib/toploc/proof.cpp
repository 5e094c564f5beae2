// lib/toploc/proof.cpp: the proof byte layout (docs/formats/toploc_proof.md), its parser
// and base64 (libsodium).
#include "dtrain/toploc/proof.h"

#include <sodium.h>

#include <string>

#include "dtrain/toploc/field.h"
#include "dtrain/toploc/poly.h"

namespace dtrain::toploc {
namespace {

std::uint16_t load_be16(const std::byte* p) noexcept {
  return static_cast<std::uint16_t>((std::to_integer<unsigned>(p[0]) << 8) | std::to_integer<unsigned>(p[1]));
}
void store_be16(std::byte* p, std::uint32_t v) noexcept {
  p[0] = static_cast<std::byte>((v >> 8) & 0xff);
  p[1] = static_cast<std::byte>(v & 0xff);
}

}  // namespace

std::uint32_t proof::at(std::uint64_t index) const noexcept {
  DTRAIN_ASSERT(modulus != 0 && "proof::at on a null proof");
  return evaluate(coeffs, static_cast<std::uint32_t>(index % modulus));
}

proof null_proof(std::size_t k) { return proof{0, std::vector<std::uint16_t>(k, 0)}; }

std::size_t write_proof(const proof& p, std::span<std::byte> out) noexcept {
  store_be16(out.data(), p.modulus);
  for (std::size_t i = 0; i < p.coeffs.size(); ++i) store_be16(out.data() + 2 + 2 * i, p.coeffs[i]);
  return proof_size(p.coeffs.size());
}

std::vector<std::byte> to_bytes(const proof& p) {
  std::vector<std::byte> out(proof_size(p.coeffs.size()));
  write_proof(p, out);
  return out;
}

std::vector<std::byte> to_bytes(std::span<const proof> proofs) {
  std::size_t total = 0;
  for (const proof& p : proofs) total += proof_size(p.coeffs.size());
  std::vector<std::byte> out(total);
  std::size_t at = 0;
  for (const proof& p : proofs) at += write_proof(p, std::span(out).subspan(at));
  return out;
}

result<proof> parse_proof(std::span<const std::byte> bytes, std::size_t k) {
  if (k == 0 || k > prime)
    return invalid_argument("parse_proof: k = " + std::to_string(k) + " is outside [1, 65497]");
  if (bytes.size() != proof_size(k))
    return data_loss("toploc proof: " + std::to_string(bytes.size()) + " bytes, expected " +
                     std::to_string(proof_size(k)) + " (2 + 2k for k = " + std::to_string(k) + ")");
  proof p;
  p.modulus = load_be16(bytes.data());
  if (p.modulus == 0) return data_loss("toploc proof: modulus 0 (a null proof: the prover reported a failure)");
  if (p.modulus < k)
    return data_loss("toploc proof: modulus " + std::to_string(p.modulus) + " is below k = " + std::to_string(k) +
                     " (k indices cannot have distinct residues)");
  if (p.modulus > prime)
    return data_loss("toploc proof: modulus " + std::to_string(p.modulus) + " is above 65497");
  p.coeffs.resize(k);
  for (std::size_t i = 0; i < k; ++i) {
    const std::uint16_t c = load_be16(bytes.data() + 2 + 2 * i);
    if (c >= prime)
      return data_loss("toploc proof: coefficient " + std::to_string(i) + " is " + std::to_string(c) +
                       ", not below p = 65497");
    p.coeffs[i] = c;
  }
  return p;
}

result<std::vector<proof>> parse_proofs(std::span<const std::byte> bytes, std::size_t k,
                                        std::size_t expected_count) {
  if (k == 0 || k > prime)
    return invalid_argument("parse_proofs: k = " + std::to_string(k) + " is outside [1, 65497]");
  const std::size_t size = proof_size(k);
  if (bytes.size() % size != 0)
    return data_loss("toploc proofs: " + std::to_string(bytes.size()) + " bytes is not a multiple of " +
                     std::to_string(size) + " (" + std::to_string(bytes.size() % size) + " trailing bytes)");
  const std::size_t count = bytes.size() / size;
  if (count != expected_count)
    return data_loss("toploc proofs: " + std::to_string(count) + " proofs, expected " +
                     std::to_string(expected_count));
  std::vector<proof> out;
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    auto p = parse_proof(bytes.subspan(i * size, size), k);
    if (!p.ok()) return dtrain::status(p.status().code(), "proof " + std::to_string(i) + ": " + p.status().message());
    out.push_back(std::move(*p));
  }
  return out;
}

std::string to_base64(const proof& p) {
  const std::vector<std::byte> bytes = to_bytes(p);
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

result<proof> proof_from_base64(std::string_view text, std::size_t k) {
  if (k == 0 || k > prime)
    return invalid_argument("proof_from_base64: k = " + std::to_string(k) + " is outside [1, 65497]");
  // Checked here first: libsodium 1.0.18 (Debian 12) maps some bytes >= 0x80 to alphabet
  // characters (0x8d decodes as '/'), found by toploc_proof_fuzz.
  for (const char ch : text) {
    const auto u = static_cast<unsigned char>(ch);
    const bool alphabet = (u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || u == '+' ||
                          u == '/' || u == '=';
    if (!alphabet) return data_loss("toploc proof: not valid standard base64 with padding (byte " + std::to_string(u) + ")");
  }
  std::vector<std::byte> bytes(text.size() / 4 * 3 + 3);
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size(), text.data(), text.size(),
                        nullptr, &len, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != text.data() + text.size())
    return data_loss("toploc proof: not valid standard base64 with padding");
  bytes.resize(len);
  return parse_proof(bytes, k);
}

}  // namespace dtrain::toploc
