// The signed checkpoint manifest: consistency rules, signing, and the verify-before-use
// opener (docs/formats/shard_manifest.md).
#include "dtrain/shard/manifest.h"

#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "dtrain/core/bytes.h"
#include "dtrain/crypto/constant_time.h"
#include "dtrain/shard/erasure.h"
#include "dtrain/shard/merkle.h"

namespace dtrain::shard {
namespace {

// Fixed sizes of the format (the tables of docs/formats/shard_manifest.md).
constexpr std::size_t tensor_min_bytes = 2 + 1 + 1 + 8 + 8;  // empty name and dtype, rank 0
constexpr std::size_t chunk_entry_bytes = 8 + 8 + 32;
// Format 2's data chunk entry: the v1 entry, then u8 encoding, u64 wire length, wire digest.
constexpr std::size_t delta_chunk_entry_bytes = chunk_entry_bytes + 1 + 8 + 32;
constexpr std::size_t max_name_bytes = 65535;
constexpr std::size_t max_dtype_bytes = 255;
constexpr std::size_t max_rank = 255;

status denied(std::string m) { return {status_code::permission_denied, std::move(m)}; }

std::string str(std::uint64_t v) { return std::to_string(v); }

// RFC 3629 UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1fu;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0fu;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07u;
    } else {
      return false;
    }
    if (s.size() - i < len) return false;
    for (std::size_t j = 1; j < len; ++j) {
      const auto cc = static_cast<unsigned char>(s[i + j]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3fu);
    }
    const std::uint32_t min_cp = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (cp < min_cp || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

bool printable_ascii(std::string_view s) {
  for (char ch : s)
    if (ch < 0x20 || ch > 0x7e) return false;
  return true;
}

// The first rule `m` breaks, or an empty string.
std::string problem(const manifest& m) {
  if (!is_known_hash_algo(static_cast<std::uint8_t>(m.algo)))
    return "unknown hash algorithm " + str(static_cast<std::uint8_t>(m.algo));
  if (m.m == 0 && m.k != 0) return "k = " + str(m.k) + " without parity (m = 0 needs k = 0)";
  if (m.m != 0 && (m.k == 0 || std::size_t{m.k} + m.m > rs_max_chunks))
    return "erasure parameters k = " + str(m.k) + ", m = " + str(m.m) + " (need k >= 1, k + m <= 255)";
  if (m.delta != delta_codec::none && m.delta != delta_codec::xor_zstd)
    return "unknown delta codec " + str(static_cast<std::uint8_t>(m.delta));
  if ((m.delta == delta_codec::none) != (m.delta_base == 0))
    return "delta base version " + str(m.delta_base) + " with delta codec " + str(static_cast<std::uint8_t>(m.delta));
  if (m.delta_base != 0 && m.delta_base >= m.version)
    return "delta base version " + str(m.delta_base) + " is not older than version " + str(m.version);
  if (m.delta == delta_codec::none && !m.delta_chunks.empty())
    return str(m.delta_chunks.size()) + " delta chunk entries without a delta codec";
  if (m.delta != delta_codec::none && m.delta_chunks.size() != m.chunks.size())
    return str(m.delta_chunks.size()) + " delta chunk entries for " + str(m.chunks.size()) + " data chunks";
  if (m.chunk_size == 0) return "chunk size 0";
  if (m.tensors.size() > std::numeric_limits<std::uint32_t>::max()) return "more than 2^32 - 1 tensors";
  if (m.total_chunks() > max_chunks) return "more than 2^32 - 1 chunks";

  // Tensors: contiguous from 0, ending at total_size.
  std::uint64_t at = 0;
  for (std::size_t i = 0; i < m.tensors.size(); ++i) {
    const tensor_entry& t = m.tensors[i];
    const std::string which = "tensor " + str(i);
    if (t.name.size() > max_name_bytes) return which + " name longer than 65535 bytes";
    if (!valid_utf8(t.name)) return which + " name is not valid UTF-8";
    if (t.dtype.size() > max_dtype_bytes || !printable_ascii(t.dtype))
      return which + " (" + t.name + ") dtype is not 0..255 bytes of printable ASCII";
    if (t.shape.size() > max_rank) return which + " (" + t.name + ") has rank above 255";
    if (t.offset != at)
      return which + " (" + t.name + ") starts at " + str(t.offset) + ", expected " + str(at) + " (tensors are contiguous)";
    if (t.size > m.total_size - at)
      return which + " (" + t.name + ") ends past the checkpoint's " + str(m.total_size) + " bytes";
    at += t.size;
  }
  if (!m.tensors.empty() && at != m.total_size)
    return "tensors end at " + str(at) + ", the checkpoint has " + str(m.total_size) + " bytes";

  // Data chunks tile [0, total_size) in order.
  at = 0;
  for (std::size_t i = 0; i < m.chunks.size(); ++i) {
    const data_chunk_entry& c = m.chunks[i];
    if (c.offset != at)
      return "chunk " + str(i) + " starts at " + str(c.offset) + ", expected " + str(at) +
             (c.offset > at ? " (a gap)" : " (an overlap)");
    if (c.length == 0 || c.length > m.chunk_size)
      return "chunk " + str(i) + " holds " + str(c.length) + " bytes, outside 1..chunk size " + str(m.chunk_size);
    if (c.length > m.total_size - at) return "chunk " + str(i) + " ends past the checkpoint's " + str(m.total_size) + " bytes";
    at += c.length;
  }
  if (at != m.total_size)
    return "chunks end at " + str(at) + ", the checkpoint has " + str(m.total_size) + " bytes (a gap at the end)";

  // Wire forms of a delta-coded manifest's data chunks.
  for (std::size_t i = 0; i < m.delta_chunks.size(); ++i) {
    const delta_chunk_entry& d = m.delta_chunks[i];
    const data_chunk_entry& c = m.chunks[i];
    if (d.encoding == chunk_encoding::raw) {
      if (d.wire_length != c.length || d.wire_digest != c.digest)
        return "chunk " + str(i) + " travels raw, but its wire length or digest differs from the chunk's";
    } else if (d.encoding == chunk_encoding::xor_zstd) {
      if (d.wire_length == 0 || d.wire_length >= c.length)
        return "chunk " + str(i) + " is delta-coded into " + str(d.wire_length) + " bytes, outside 1.." +
               str(c.length - 1) + " (a delta-coded chunk is smaller than the chunk)";
    } else {
      return "chunk " + str(i) + " has unknown encoding " + str(static_cast<std::uint8_t>(d.encoding));
    }
  }

  // Parity table: m entries per stripe, each of the stripe's length.
  auto layout = manifest_stripes(m);
  if (!layout.ok()) return layout.status().message();
  if (m.parity.size() != layout->parity_chunks())
    return str(m.parity.size()) + " parity chunks, but " + str(m.chunks.size()) + " data chunks with k = " + str(m.k) +
           ", m = " + str(m.m) + " make " + str(layout->parity_chunks());
  for (std::size_t i = 0; i < m.parity.size(); ++i) {
    const std::size_t s = i / m.m;
    if (m.parity[i].stripe != s)
      return "parity chunk " + str(i) + " says stripe " + str(m.parity[i].stripe) + ", expected " + str(s);
    if (m.parity[i].length != layout->stripe_length[s])
      return "parity chunk " + str(i) + " holds " + str(m.parity[i].length) + " bytes, stripe " + str(s) + " is " +
             str(layout->stripe_length[s]) + " bytes";
  }

  if (m.algo == hash_algo::xxh3_128) {
    for (std::size_t i = 0; i < m.total_chunks(); ++i)
      for (std::size_t b = 16; b < 32; ++b)
        if (m.digest(i)[b] != std::byte{0} || (i < m.chunks.size() && m.chunks[i].digest[b] != std::byte{0}))
          return "chunk " + str(i) + ": an XXH3-128 digest with non-zero bytes 16..31";
  }
  const chunk_digest root = manifest_merkle_root(m);
  if (!crypto::constant_time_equal(root, m.merkle_root)) return "the Merkle root does not match the chunk digests";
  return {};
}

}  // namespace

chunk_digest manifest_merkle_root(const manifest& m) {
  std::vector<chunk_digest> leaves;
  leaves.reserve(m.total_chunks());
  for (std::size_t i = 0; i < m.total_chunks(); ++i) leaves.push_back(m.digest(i));
  return merkle_root(leaves);
}

result<stripe_layout> manifest_stripes(const manifest& m) {
  std::vector<std::uint64_t> lengths(m.chunks.size());
  for (std::size_t i = 0; i < m.chunks.size(); ++i) lengths[i] = m.chunk_length(i);
  return plan_stripes(lengths, m.k, m.m);
}

status check_manifest(const manifest& m) {
  if (auto why = problem(m); !why.empty()) return data_loss("manifest: " + why);
  return {};
}

result<std::vector<std::byte>> sign_manifest(const manifest& m, const crypto::identity& origin) {
  if (auto why = problem(m); !why.empty()) return invalid_argument("sign_manifest: " + why);

  const bool delta = m.delta != delta_codec::none;
  const std::uint16_t format = delta ? manifest_format_version_delta : manifest_format_version;
  const std::size_t data_entry = delta ? delta_chunk_entry_bytes : chunk_entry_bytes;
  std::size_t body = manifest_header_bytes + m.chunks.size() * data_entry + m.parity.size() * chunk_entry_bytes + 64;
  for (const auto& t : m.tensors) body += tensor_min_bytes + t.name.size() + t.dtype.size() + 8 * t.shape.size();
  const std::string_view context = manifest_signing_context_for(format);
  const std::size_t ctx = context.size();
  std::vector<std::byte> buf(ctx + body + 64);
  std::memcpy(buf.data(), context.data(), ctx);
  byte_writer w{std::span(buf).subspan(ctx, body)};
  w.put<std::uint32_t>(manifest_magic);
  w.put<std::uint16_t>(format);
  w.put<std::uint8_t>(static_cast<std::uint8_t>(m.algo));
  w.put<std::uint8_t>(static_cast<std::uint8_t>(m.delta));
  w.put<std::uint8_t>(m.k);
  w.put<std::uint8_t>(m.m);
  w.put<std::uint16_t>(0);  // reserved
  w.put<std::uint32_t>(static_cast<std::uint32_t>(m.tensors.size()));
  w.put<std::uint64_t>(m.version);
  w.put<std::uint64_t>(m.created_unix);
  w.put<std::uint64_t>(m.delta_base);
  w.put<std::uint64_t>(m.total_size);
  w.put<std::uint64_t>(m.chunk_size);
  w.put<std::uint32_t>(static_cast<std::uint32_t>(m.chunks.size()));
  w.put<std::uint32_t>(static_cast<std::uint32_t>(m.parity.size()));
  DTRAIN_ASSERT(w.size() == manifest_header_bytes);
  for (const auto& t : m.tensors) {
    w.put<std::uint16_t>(static_cast<std::uint16_t>(t.name.size()));
    w.put_bytes(std::as_bytes(std::span(t.name.data(), t.name.size())));
    w.put<std::uint8_t>(static_cast<std::uint8_t>(t.dtype.size()));
    w.put_bytes(std::as_bytes(std::span(t.dtype.data(), t.dtype.size())));
    w.put<std::uint8_t>(static_cast<std::uint8_t>(t.shape.size()));
    for (std::uint64_t d : t.shape) w.put<std::uint64_t>(d);
    w.put<std::uint64_t>(t.offset);
    w.put<std::uint64_t>(t.size);
  }
  for (std::size_t i = 0; i < m.chunks.size(); ++i) {
    const data_chunk_entry& c = m.chunks[i];
    w.put<std::uint64_t>(c.offset);
    w.put<std::uint64_t>(c.length);
    w.put_bytes(c.digest);
    if (delta) {
      const delta_chunk_entry& d = m.delta_chunks[i];
      w.put<std::uint8_t>(static_cast<std::uint8_t>(d.encoding));
      w.put<std::uint64_t>(d.wire_length);
      w.put_bytes(d.wire_digest);
    }
  }
  for (const auto& p : m.parity) {
    w.put<std::uint64_t>(p.stripe);
    w.put<std::uint64_t>(p.length);
    w.put_bytes(p.digest);
  }
  w.put_bytes(m.merkle_root);
  w.put_bytes(origin.id().key);
  DTRAIN_ASSERT(w.ok() && w.size() == body);

  const auto sig = origin.sign(std::span(buf).first(ctx + body));
  std::memcpy(buf.data() + ctx + body, sig.data(), sig.size());
  buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(ctx));
  return buf;
}

result<manifest> open_manifest(std::span<const std::byte> bytes, std::span<const crypto::peer_id> trusted_origins) {
  // 1. Structure. Every count is checked against what remains before anything is
  //    allocated; the reader never reads past the input.
  if (bytes.size() < 4 || load_le<std::uint32_t>(bytes.data()) != manifest_magic)
    return data_loss("not a shard manifest: the first 4 bytes are not \"DTSM\"");
  if (bytes.size() < 6)
    return data_loss("shard manifest truncated to " + str(bytes.size()) + " bytes, inside the format version");
  const auto format = load_le<std::uint16_t>(bytes.data() + 4);
  if (format == 0) return data_loss("shard manifest format version 0 is invalid");
  if (format > manifest_format_version_delta)
    return unimplemented("shard manifest format version " + str(format) + " is newer than this build reads (" +
                         str(manifest_format_version_delta) + ")");
  const bool delta_format = format == manifest_format_version_delta;
  const std::uint64_t data_entry = delta_format ? delta_chunk_entry_bytes : chunk_entry_bytes;
  if (bytes.size() < manifest_header_bytes + manifest_trailer_bytes)
    return data_loss("shard manifest truncated: " + str(bytes.size()) + " bytes, the header and trailer alone take " +
                     str(manifest_header_bytes + manifest_trailer_bytes));

  byte_reader r{bytes.first(bytes.size() - manifest_trailer_bytes)};
  manifest m;
  (void)r.get<std::uint32_t>();
  (void)r.get<std::uint16_t>();
  m.algo = static_cast<hash_algo>(r.get<std::uint8_t>());
  m.delta = static_cast<delta_codec>(r.get<std::uint8_t>());
  m.k = r.get<std::uint8_t>();
  m.m = r.get<std::uint8_t>();
  const auto reserved = r.get<std::uint16_t>();
  const std::uint32_t tensor_count = r.get<std::uint32_t>();
  m.version = r.get<std::uint64_t>();
  m.created_unix = r.get<std::uint64_t>();
  m.delta_base = r.get<std::uint64_t>();
  m.total_size = r.get<std::uint64_t>();
  m.chunk_size = r.get<std::uint64_t>();
  const std::uint32_t chunk_count = r.get<std::uint32_t>();
  const std::uint32_t parity_count = r.get<std::uint32_t>();
  DTRAIN_ASSERT(r.ok() && r.position() == manifest_header_bytes);
  if (reserved != 0) return data_loss("shard manifest: reserved header bytes 10..11 are not zero");
  if (delta_format != (m.delta != delta_codec::none))
    return data_loss("shard manifest: format version " + str(format) + " with delta codec " +
                     str(static_cast<std::uint8_t>(m.delta)) +
                     " (version 2 is exactly the delta-coded manifests, version 1 the others)");
  const std::uint64_t tables_bytes = std::uint64_t{chunk_count} * data_entry + std::uint64_t{parity_count} * chunk_entry_bytes;

  // Counts are u32, so these products fit 64 bits.
  const std::uint64_t tables_min = std::uint64_t{tensor_count} * tensor_min_bytes + tables_bytes;
  if (tables_min > r.remaining())
    return data_loss("shard manifest truncated: " + str(tensor_count) + " tensors, " + str(chunk_count) + " chunks and " +
                     str(parity_count) + " parity chunks need at least " + str(tables_min) + " bytes of tables, " +
                     str(r.remaining()) + " remain");

  m.tensors.reserve(tensor_count);
  for (std::uint32_t i = 0; i < tensor_count; ++i) {
    tensor_entry t;
    const auto name_len = r.get<std::uint16_t>();
    const auto name = r.take(name_len);
    const auto dtype_len = r.get<std::uint8_t>();
    const auto dtype = r.take(dtype_len);
    const auto rank = r.get<std::uint8_t>();
    if (!r.ok() || r.remaining() < std::size_t{rank} * 8 + 16)
      return data_loss("shard manifest truncated inside tensor " + str(i));
    t.name.assign(reinterpret_cast<const char*>(name.data()), name.size());
    t.dtype.assign(reinterpret_cast<const char*>(dtype.data()), dtype.size());
    t.shape.resize(rank);
    for (auto& d : t.shape) d = r.get<std::uint64_t>();
    t.offset = r.get<std::uint64_t>();
    t.size = r.get<std::uint64_t>();
    m.tensors.push_back(std::move(t));
  }
  // The tensor table's variable part may have eaten into the chunk tables' minimum.
  if (!r.ok() || r.remaining() != tables_bytes)
    return data_loss("shard manifest: the chunk tables take " + str(tables_bytes) + " bytes, " +
                     str(r.ok() ? r.remaining() : 0) + " remain before the trailer" +
                     (r.ok() && r.remaining() > tables_bytes
                          ? " (trailing bytes)"
                          : " (truncated)"));
  m.chunks.resize(chunk_count);
  if (delta_format) m.delta_chunks.resize(chunk_count);
  for (std::size_t i = 0; i < m.chunks.size(); ++i) {
    data_chunk_entry& c = m.chunks[i];
    c.offset = r.get<std::uint64_t>();
    c.length = r.get<std::uint64_t>();
    const auto d = r.take(32);
    std::memcpy(c.digest.data(), d.data(), 32);
    if (delta_format) {
      delta_chunk_entry& e = m.delta_chunks[i];
      e.encoding = static_cast<chunk_encoding>(r.get<std::uint8_t>());
      e.wire_length = r.get<std::uint64_t>();
      const auto wd = r.take(32);
      std::memcpy(e.wire_digest.data(), wd.data(), 32);
    }
  }
  m.parity.resize(parity_count);
  for (auto& p : m.parity) {
    p.stripe = r.get<std::uint64_t>();
    p.length = r.get<std::uint64_t>();
    const auto d = r.take(32);
    std::memcpy(p.digest.data(), d.data(), 32);
  }
  DTRAIN_ASSERT(r.ok() && r.remaining() == 0);
  const std::size_t trailer = bytes.size() - manifest_trailer_bytes;
  std::memcpy(m.merkle_root.data(), bytes.data() + trailer, 32);
  std::memcpy(m.origin.key.data(), bytes.data() + trailer + 32, 32);

  // 2. The signature, over context ‖ everything before it.
  const std::size_t body = bytes.size() - 64;
  crypto::signature sig;
  std::memcpy(sig.data(), bytes.data() + body, sig.size());
  {
    const std::string_view context = manifest_signing_context_for(format);
    const std::size_t ctx = context.size();
    std::vector<std::byte> msg(ctx + body);
    std::memcpy(msg.data(), context.data(), ctx);
    std::memcpy(msg.data() + ctx, bytes.data(), body);
    if (!crypto::verify(m.origin, msg, sig))
      return denied("shard manifest signature does not verify under its origin key " + m.origin.short_hex());
  }

  // 3. The origin.
  if (!trusted_origins.empty()) {
    bool trusted = false;
    for (const auto& o : trusted_origins) trusted = trusted || o == m.origin;
    if (!trusted) return denied("shard manifest signed by " + m.origin.hex() + ", which is not a trusted origin");
  }

  // 4. Consistency.
  DTRAIN_RETURN_IF_ERROR(check_manifest(m));
  return m;
}

}  // namespace dtrain::shard
