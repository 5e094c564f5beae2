// Helpers shared by every transport: blocking send/recv and wait_all.
#include "dtrain/net/transport.h"

namespace dtrain::net {

std::uint64_t transport_stats::total_sent() const noexcept {
  std::uint64_t s = 0;
  for (auto b : sent) s += b;
  return s;
}

std::uint64_t transport_stats::total_received() const noexcept {
  std::uint64_t s = 0;
  for (auto b : received) s += b;
  return s;
}

status send(transport& t, rank_t to, tag_t tag, std::span<const std::byte> data, deadline d) {
  auto o = t.post_send(to, tag, data);
  if (!o.ok()) return o.status();
  auto n = t.wait(*o, d);
  return n.ok() ? ok_status() : n.status();
}

result<std::size_t> recv(transport& t, rank_t from, tag_t tag, std::span<std::byte> buf, deadline d) {
  auto o = t.post_recv(from, tag, buf);
  if (!o.ok()) return o.status();
  return t.wait(*o, d);
}

status wait_all(transport& t, std::span<const op> ops, deadline d) {
  status first;
  for (const op& o : ops) {
    auto n = t.wait(o, d);
    if (!n.ok() && first.ok()) first = n.status();
  }
  return first;
}

}  // namespace dtrain::net
