// Delta coding of one chunk: XOR against the base version, then one zstd frame
// (docs/shard.md "Delta coding").
#include "dtrain/shard/delta.h"

#include <zstd.h>

#include <algorithm>
#include <memory>
#include <string>

namespace dtrain::shard {
namespace {

struct cctx_free {
  void operator()(ZSTD_CCtx* c) const noexcept { ZSTD_freeCCtx(c); }
};
struct dctx_free {
  void operator()(ZSTD_DCtx* c) const noexcept { ZSTD_freeDCtx(c); }
};

ZSTD_CCtx* thread_cctx() {
  thread_local std::unique_ptr<ZSTD_CCtx, cctx_free> c{ZSTD_createCCtx()};
  return c.get();
}
ZSTD_DCtx* thread_dctx() {
  thread_local std::unique_ptr<ZSTD_DCtx, dctx_free> d{ZSTD_createDCtx()};
  return d.get();
}

// dst[i] ^= base[offset + i] for the part of the window that lies inside the base.
void xor_base(std::span<std::byte> dst, std::span<const std::byte> base, std::uint64_t offset) {
  if (offset >= base.size()) return;
  const std::size_t n = std::min<std::size_t>(dst.size(), base.size() - static_cast<std::size_t>(offset));
  const std::byte* b = base.data() + offset;
  for (std::size_t i = 0; i < n; ++i) dst[i] ^= b[i];
}

}  // namespace

status check_zstd_level(int level) {
  if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
    return invalid_argument("zstd level " + std::to_string(level) + " outside " + std::to_string(ZSTD_minCLevel()) +
                            ".." + std::to_string(ZSTD_maxCLevel()));
  return {};
}

result<std::optional<std::vector<std::byte>>> delta_encode_chunk(std::span<const std::byte> chunk,
                                                                  std::span<const std::byte> base,
                                                                  std::uint64_t offset, int level) {
  DTRAIN_RETURN_IF_ERROR(check_zstd_level(level));
  if (chunk.empty()) return invalid_argument("delta_encode_chunk: empty chunk");
  std::vector<std::byte> x(chunk.begin(), chunk.end());
  xor_base(x, base, offset);
  ZSTD_CCtx* c = thread_cctx();
  if (c == nullptr) return internal_error("delta_encode_chunk: ZSTD_createCCtx failed");
  ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
  if (ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 0)))
    return internal_error("delta_encode_chunk: cannot set zstd parameters");
  std::vector<std::byte> out(std::max<std::size_t>(ZSTD_compressBound(x.size()), 1));
  const std::size_t got = ZSTD_compress2(c, out.data(), out.size(), x.data(), x.size());
  if (ZSTD_isError(got)) return internal_error(std::string("delta_encode_chunk: zstd: ") + ZSTD_getErrorName(got));
  if (got >= chunk.size()) return std::optional<std::vector<std::byte>>{};
  out.resize(got);
  out.shrink_to_fit();
  return std::optional<std::vector<std::byte>>{std::move(out)};
}

status delta_decode_chunk(std::span<const std::byte> coded, std::span<const std::byte> base, std::uint64_t offset,
                          std::span<std::byte> out) {
  const std::string cap = std::to_string(out.size());
  // Exactly one zstd frame: the zstd frame magic (no skippable or legacy frame), nothing after it.
  static constexpr std::uint32_t zstd_magic = 0xFD2FB528u;
  if (coded.size() < 4) return data_loss("delta chunk: not a zstd frame (" + std::to_string(coded.size()) + " bytes)");
  std::uint32_t magic = 0;
  for (int i = 3; i >= 0; --i) magic = (magic << 8) | std::to_integer<std::uint32_t>(coded[static_cast<std::size_t>(i)]);
  if (magic != zstd_magic) return data_loss("delta chunk: not a zstd frame (wrong magic)");
  const unsigned long long content = ZSTD_getFrameContentSize(coded.data(), coded.size());
  if (content == ZSTD_CONTENTSIZE_ERROR) return data_loss("delta chunk: bad zstd frame header");
  if (content == ZSTD_CONTENTSIZE_UNKNOWN) return data_loss("delta chunk: the zstd frame does not state its size");
  if (content != out.size())
    return data_loss("delta chunk: the zstd frame decodes to " + std::to_string(content) + " bytes, the chunk holds " +
                     cap);
  const std::size_t frame = ZSTD_findFrameCompressedSize(coded.data(), coded.size());
  if (ZSTD_isError(frame)) return data_loss(std::string("delta chunk: corrupt zstd frame: ") + ZSTD_getErrorName(frame));
  if (frame != coded.size())
    return data_loss("delta chunk: " + std::to_string(coded.size() - frame) + " bytes after the zstd frame");
  if (out.empty()) return {};  // content size 0: nothing to decompress or XOR

  ZSTD_DCtx* d = thread_dctx();
  if (d == nullptr) return internal_error("delta_decode_chunk: ZSTD_createDCtx failed");
  ZSTD_DCtx_reset(d, ZSTD_reset_session_and_parameters);
  if (offset < base.size() && out.data() == base.data() + offset) {
    // In place: the output is the base window itself. Decompress into scratch first.
    std::vector<std::byte> tmp(out.size());
    const std::size_t got = ZSTD_decompressDCtx(d, tmp.data(), tmp.size(), coded.data(), coded.size());
    if (ZSTD_isError(got)) return data_loss(std::string("delta chunk: corrupt zstd frame: ") + ZSTD_getErrorName(got));
    if (got != out.size())
      return data_loss("delta chunk: the zstd frame decoded to " + std::to_string(got) + " bytes, not " + cap);
    xor_base(tmp, base, offset);
    std::copy(tmp.begin(), tmp.end(), out.begin());
    return {};
  }
  const std::size_t got = ZSTD_decompressDCtx(d, out.data(), out.size(), coded.data(), coded.size());
  if (ZSTD_isError(got)) return data_loss(std::string("delta chunk: corrupt zstd frame: ") + ZSTD_getErrorName(got));
  if (got != out.size())
    return data_loss("delta chunk: the zstd frame decoded to " + std::to_string(got) + " bytes, not " + cap);
  xor_base(out, base, offset);
  return {};
}

}  // namespace dtrain::shard
