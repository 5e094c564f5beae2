// lib/net/segment_pipeline.h: the segmented, pipelined forwarding engine behind the ring
// all-gather and the chain broadcast: one stream of segments received from one peer, one
// stream sent to another, where a send may forward a segment received earlier. Not
// installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "dtrain/core/status.h"
#include "dtrain/net/transport.h"

namespace dtrain::net::detail {

/// Sizes of the n blocks of a buffer laid end to end: all `block` bytes (counts empty) or
/// counts[j] bytes each.
struct block_layout {
  std::span<const std::size_t> counts;
  std::size_t block = 0;
  std::size_t n = 1;
  std::size_t total = 0;  ///< sum of the block sizes

  std::size_t size(std::size_t j) const noexcept { return counts.empty() ? block : counts[j]; }
  /// Offset of block j (O(j) for variable sizes; called once per walk).
  std::size_t offset(std::size_t j) const noexcept;
};

/// Segments of the blocks first, first - 1, ..., first - blocks + 1 (mod n), in that order,
/// each block cut into ceil(size / segment) pieces of `segment` bytes (the last one
/// shorter); empty blocks yield no segment. Moving to the next block is O(1).
class segment_walk {
 public:
  segment_walk(const block_layout& l, std::size_t first, std::size_t blocks, std::size_t segment) noexcept;

  /// Number of segments the walk yields in all.
  std::size_t count() const noexcept;
  /// Whether every segment was visited.
  bool done() const noexcept { return left_ == 0; }
  /// Offset and length of the current segment in the buffer. @pre !done()
  std::size_t offset() const noexcept { return offset_ + pos_; }
  std::size_t length() const noexcept;
  void advance() noexcept;

 private:
  void previous_block() noexcept;
  void skip_empty() noexcept;
  const block_layout* l_;
  std::size_t first_, blocks_, segment_;
  std::size_t block_ = 0, offset_ = 0, pos_ = 0, left_ = 0;
};

/// One peer's part in a forwarding pipeline over `buf`.
struct pipeline {
  static constexpr rank_t none = ~rank_t{0};
  rank_t from = none;  ///< receives the `recv` segments from this peer (none: no receives)
  rank_t to = none;    ///< sends the `send` segments to this peer (none: no sends)
  /// The first `own` sends need nothing; send k >= own forwards receive k - own, so it is
  /// posted only once that receive completed.
  std::size_t own = 0;
};

/// Segments in flight per direction (posted, not yet retired): at most this many receives
/// and this many sends, so a peer's buffers in flight stay within 2 * depth segments.
inline constexpr std::size_t pipeline_depth = 4;

/// Runs the pipeline: message k of each stream is tagged make_tag(channel, sequence,
/// step_base | (k & step_mask)) (equal tags match in posting order, so the wrap is
/// harmless), receives land in `buf` at their segment, sends read `buf`. Ops are retired in
/// index order (receive k before send k); with every peer doing so no cycle of waits can
/// form (the peer waiting on the smallest index can always proceed).
/// Errors: aborted / deadline_exceeded from the transport; invalid_argument when a
/// received message's length differs from its segment's (sizes or segment sizes differ
/// between peers). On any error every posted op is retired (cancelled) before returning.
status run_pipeline(transport& t, std::span<std::byte> buf, const pipeline& p, segment_walk recv, segment_walk send,
                    deadline d, std::string_view who, std::uint32_t channel, std::uint32_t sequence,
                    std::uint32_t step_base, std::uint32_t step_mask);

/// The checks the segmented collectives share: timeout > 0, channel < 2^24, segment >= 1.
/// Errors: invalid_argument naming `who` and the field.
status check_segment_options(std::string_view who, std::chrono::milliseconds timeout, std::uint32_t channel,
                             std::size_t max_segment_bytes);

/// Whether [a, a + na) and [b, b + nb) share a byte (empty ranges share none).
bool overlaps(const std::byte* a, std::size_t na, const std::byte* b, std::size_t nb) noexcept;

}  // namespace dtrain::net::detail
