// Ring all-gather of byte blocks (equal or caller-given sizes) and the size exchange that
// precedes a variable-size gather, on the segmented forwarding pipeline.
#include "dtrain/net/allgather.h"

#include <cstring>
#include <limits>
#include <string>

#include "dtrain/core/bytes.h"
#include "segment_pipeline.h"

namespace dtrain::net {

namespace {

// Tag steps (docs/collectives.md): data messages 0x8000 | (k mod 2^15), the size exchange
// 0x4000 | (k mod 2^14); k is the message's index in the stream between two neighbours.
constexpr std::uint32_t kDataBase = 0x8000u, kDataMask = 0x7FFFu;
constexpr std::uint32_t kSizeBase = 0x4000u, kSizeMask = 0x3FFFu;

status run_gather(transport& t, std::span<const std::byte> mine, const detail::block_layout& l,
                  std::span<std::byte> out, const allgather_options& o, std::uint32_t step_base,
                  std::uint32_t step_mask, std::string_view who) {
  const deadline d = after(o.timeout);
  const rank_t r = t.rank();
  const std::size_t n = t.size();
  std::byte* slot = out.data() + l.offset(r);
  if (mine.data() != slot && detail::overlaps(mine.data(), mine.size(), out.data(), out.size()))
    return invalid_argument(std::string(who) + ": mine overlaps out other than as this peer's own slot");
  if (!mine.empty() && mine.data() != slot) std::memcpy(slot, mine.data(), mine.size());
  if (n == 1) return ok_status();

  detail::pipeline p;
  p.from = static_cast<rank_t>((r + n - 1) % n);
  p.to = static_cast<rank_t>((r + 1) % n);
  p.own = detail::segment_walk(l, r, 1, o.max_segment_bytes).count();
  // Receive blocks r-1, r-2, ..., r-(n-1); send r, r-1, ..., r-(n-2): after its own block
  // a peer forwards, segment by segment, what it received.
  detail::segment_walk recv(l, p.from, n - 1, o.max_segment_bytes);
  detail::segment_walk send(l, r, n - 1, o.max_segment_bytes);
  return detail::run_pipeline(t, out, p, recv, send, d, who, o.channel, o.sequence, step_base, step_mask);
}

}  // namespace

status allgather(transport& t, std::span<const std::byte> mine, std::span<std::byte> out,
                 const allgather_options& o) {
  constexpr std::string_view who = "allgather";
  DTRAIN_RETURN_IF_ERROR(detail::check_segment_options(who, o.timeout, o.channel, o.max_segment_bytes));
  const std::size_t n = t.size(), b = mine.size();
  if (b != 0 && (out.size() % n != 0 || out.size() / n != b))
    return invalid_argument("allgather: out holds " + std::to_string(out.size()) + " bytes, expected n * " +
                            std::to_string(b) + " with n = " + std::to_string(n));
  if (b == 0 && !out.empty())
    return invalid_argument("allgather: mine is empty but out holds " + std::to_string(out.size()) + " bytes");
  detail::block_layout l;
  l.block = b;
  l.n = n;
  l.total = out.size();
  return run_gather(t, mine, l, out, o, kDataBase, kDataMask, who);
}

status allgatherv(transport& t, std::span<const std::byte> mine, std::span<const std::size_t> counts,
                  std::span<std::byte> out, const allgather_options& o) {
  constexpr std::string_view who = "allgatherv";
  DTRAIN_RETURN_IF_ERROR(detail::check_segment_options(who, o.timeout, o.channel, o.max_segment_bytes));
  const std::size_t n = t.size();
  if (counts.size() != n)
    return invalid_argument("allgatherv: counts holds " + std::to_string(counts.size()) + " entries, expected " +
                            std::to_string(n));
  std::size_t total = 0;
  for (const std::size_t c : counts) {
    if (c > std::numeric_limits<std::size_t>::max() - total)
      return invalid_argument("allgatherv: the sum of counts overflows");
    total += c;
  }
  if (mine.size() != counts[t.rank()])
    return invalid_argument("allgatherv: mine holds " + std::to_string(mine.size()) + " bytes, counts[rank] is " +
                            std::to_string(counts[t.rank()]));
  if (out.size() != total)
    return invalid_argument("allgatherv: out holds " + std::to_string(out.size()) + " bytes, counts sum to " +
                            std::to_string(total));
  detail::block_layout l;
  l.counts = counts;
  l.n = n;
  l.total = total;
  return run_gather(t, mine, l, out, o, kDataBase, kDataMask, who);
}

status allgather_sizes(transport& t, std::size_t mine, std::span<std::size_t> sizes, const allgather_options& o) {
  constexpr std::string_view who = "allgather_sizes";
  // The exchange runs in place on the bytes of `sizes`, one 8-byte little-endian slot each.
  static_assert(sizeof(std::size_t) == 8, "allgather_sizes assumes a 64-bit size_t");
  DTRAIN_RETURN_IF_ERROR(detail::check_segment_options(who, o.timeout, o.channel, o.max_segment_bytes));
  const std::size_t n = t.size();
  if (sizes.size() != n)
    return invalid_argument("allgather_sizes: sizes holds " + std::to_string(sizes.size()) + " entries, expected " +
                            std::to_string(n));
  auto bytes = std::as_writable_bytes(sizes);
  auto slot = bytes.subspan(t.rank() * 8, 8);
  store_le<std::uint64_t>(slot.data(), mine);
  detail::block_layout l;
  l.block = 8;
  l.n = n;
  l.total = bytes.size();
  DTRAIN_RETURN_IF_ERROR(run_gather(t, slot, l, bytes, o, kSizeBase, kSizeMask, who));
  for (std::size_t j = 0; j < n; ++j) sizes[j] = static_cast<std::size_t>(load_le<std::uint64_t>(bytes.data() + 8 * j));
  return ok_status();
}

}  // namespace dtrain::net
