// Broadcast: a binomial tree for one small message, a pipelined chain of segments (on the
// forwarding pipeline shared with the all-gather) for everything else.
#include "dtrain/net/broadcast.h"

#include <algorithm>
#include <array>
#include <limits>
#include <string>

#include "segment_pipeline.h"

namespace dtrain::net {

namespace {

constexpr std::string_view kWho = "broadcast";
// Tag steps (docs/collectives.md): the tree's one message per edge uses step 1; chain
// segment k uses 0x8000 | (k mod 2^15).
constexpr std::uint32_t kTreeStep = 1;
constexpr std::uint32_t kChainBase = 0x8000u, kChainMask = 0x7FFFu;

status tree(transport& t, rank_t root, std::span<std::byte> data, const broadcast_options& o, deadline d) {
  const std::size_t n = t.size();
  const std::size_t v = (t.rank() + n - root) % n;  // rank relative to the root
  auto real = [&](std::size_t u) { return static_cast<rank_t>((u + root) % n); };
  const tag_t tag = make_tag(o.channel, o.sequence, kTreeStep);

  // Virtual rank v > 0 hears from v minus its lowest set bit, then serves v + m for every
  // power of two m below that bit (the root: below n), largest subtree first.
  std::size_t top = 1;
  if (v == 0) {
    while (top < n - top) top *= 2;  // largest power of two < n (n >= 2 here)
  } else {
    const std::size_t low = v & (~v + 1);
    auto got = recv(t, real(v - low), tag, data, d);
    if (!got.ok() && got.status().code() != status_code::resource_exhausted) return got.status();
    if (!got.ok() || *got != data.size())
      return invalid_argument("broadcast: rank " + std::to_string(real(v - low)) + " sent " +
                              (got.ok() ? std::to_string(*got) + " bytes" : std::string("more bytes")) +
                              " where this peer expected " + std::to_string(data.size()) +
                              ": the sizes differ between peers");
    top = low / 2;
  }
  std::array<op, 64> ops{};
  std::size_t posted = 0;
  status first;
  for (std::size_t m = top; m >= 1 && first.ok(); m /= 2) {
    if (v + m >= n) continue;
    auto s = t.post_send(real(v + m), tag, data);
    if (!s.ok()) {
      first = s.status();
      break;
    }
    ops[posted++] = *s;
  }
  // Retire every send; after the first error the rest are cancelled at once.
  for (std::size_t i = 0; i < posted; ++i) {
    auto w = t.wait(ops[i], first.ok() ? d : deadline::min());
    if (!w.ok() && first.ok()) first = w.status();
  }
  return first;
}

}  // namespace

broadcast_algorithm broadcast_choice(std::size_t bytes, const broadcast_options& o) noexcept {
  return bytes == 0 || bytes <= std::min(o.tree_max_bytes, o.max_segment_bytes) ? broadcast_algorithm::binomial_tree
                                                                                 : broadcast_algorithm::chain;
}

std::string_view broadcast_algorithm_name(broadcast_algorithm a) noexcept {
  return a == broadcast_algorithm::binomial_tree ? "binomial_tree" : "chain";
}

status broadcast(transport& t, rank_t root, std::span<std::byte> data, const broadcast_options& o) {
  DTRAIN_RETURN_IF_ERROR(detail::check_segment_options(kWho, o.timeout, o.channel, o.max_segment_bytes));
  const std::size_t n = t.size();
  if (root >= n)
    return invalid_argument("broadcast: root " + std::to_string(root) + " is not a rank of a group of " +
                            std::to_string(n));
  const deadline d = after(o.timeout);
  if (n == 1) return ok_status();
  if (broadcast_choice(data.size(), o) == broadcast_algorithm::binomial_tree) return tree(t, root, data, o, d);

  // Chain in rank order starting at the root: v receives from v - 1 and forwards each
  // segment to v + 1 as soon as it has arrived.
  const std::size_t v = (t.rank() + n - root) % n;
  auto real = [&](std::size_t u) { return static_cast<rank_t>((u + root) % n); };
  detail::pipeline p;
  if (v > 0) p.from = real(v - 1);
  if (v + 1 < n) p.to = real(v + 1);
  p.own = v == 0 ? std::numeric_limits<std::size_t>::max() : 0;
  detail::block_layout l;
  l.block = data.size();
  l.n = 1;
  l.total = data.size();
  const detail::segment_walk walk(l, 0, 1, o.max_segment_bytes);
  return detail::run_pipeline(t, data, p, walk, walk, d, kWho, o.channel, o.sequence, kChainBase, kChainMask);
}

}  // namespace dtrain::net
