// The resume file: encode and parse (docs/formats/shard_resume.md).
#include "dtrain/shard/resume.h"

#include <string>

namespace dtrain::shard {

namespace {
void put_u16(std::vector<std::byte>& out, std::uint16_t v) {
  for (int i = 0; i < 2; ++i) out.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
}
void put_u32(std::vector<std::byte>& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
}
void put_u64(std::vector<std::byte>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
}
std::uint64_t get_le(std::span<const std::byte> b, std::size_t at, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t{std::to_integer<std::uint8_t>(b[at + i])} << (8 * i);
  return v;
}
}  // namespace

chunk_digest resume_manifest_digest(std::span<const std::byte> manifest_bytes) noexcept {
  return hash_chunk(hash_algo::blake2b_256, manifest_bytes);
}

std::vector<std::byte> encode_resume(const resume_state& s) {
  const std::uint64_t n = s.done.size();
  std::vector<std::byte> out;
  out.reserve(resume_header_bytes + (n + 7) / 8);
  put_u32(out, resume_magic);
  put_u16(out, resume_format_version);
  put_u16(out, 0);
  put_u64(out, s.version);
  out.insert(out.end(), s.manifest_digest.begin(), s.manifest_digest.end());
  put_u64(out, n);
  const std::size_t base = out.size();
  out.resize(base + (n + 7) / 8, std::byte{0});
  for (std::uint64_t i = 0; i < n; ++i) {
    if (s.done[i] != 0) out[base + i / 8] |= static_cast<std::byte>(1u << (i % 8));
  }
  return out;
}

result<resume_state> parse_resume(std::span<const std::byte> b) {
  if (b.size() < resume_header_bytes) return data_loss("resume file: " + std::to_string(b.size()) + " bytes, shorter than its header");
  if (get_le(b, 0, 4) != resume_magic) return data_loss("resume file: bad magic");
  const auto fmt = get_le(b, 4, 2);
  if (fmt == 0) return data_loss("resume file: format version 0");
  if (fmt > resume_format_version) return unimplemented("resume file: format version " + std::to_string(fmt));
  if (get_le(b, 6, 2) != 0) return data_loss("resume file: unknown flags");
  resume_state s;
  s.version = get_le(b, 8, 8);
  for (std::size_t i = 0; i < 32; ++i) s.manifest_digest[i] = b[16 + i];
  const std::uint64_t n = get_le(b, 48, 8);
  const std::uint64_t bitmap = b.size() - resume_header_bytes;
  // n/8 first: n + 7 could overflow for a hostile n.
  if (n / 8 + (n % 8 != 0 ? 1 : 0) != bitmap) return data_loss("resume file: bitmap length does not match the chunk count");
  s.done.resize(n, 0);
  for (std::uint64_t i = 0; i < n; ++i) {
    s.done[i] = (std::to_integer<std::uint8_t>(b[resume_header_bytes + i / 8]) >> (i % 8)) & 1u;
  }
  if (n % 8 != 0 && (std::to_integer<std::uint8_t>(b.back()) >> (n % 8)) != 0) return data_loss("resume file: bits set past the chunk count");
  return s;
}

}  // namespace dtrain::shard
