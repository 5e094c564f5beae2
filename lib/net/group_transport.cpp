// A transport view over a subset or permutation of an inner transport's ranks.
#include "dtrain/net/group_transport.h"

#include <string>

namespace dtrain::net {

result<std::unique_ptr<group_transport>> group_transport::create(transport& inner, std::span<const rank_t> members) {
  const std::size_t n = inner.size();
  if (members.empty()) return invalid_argument("group_transport: empty member list");
  std::vector<rank_t> to_view(n, static_cast<rank_t>(members.size()));
  for (std::size_t i = 0; i < members.size(); ++i) {
    const rank_t m = members[i];
    if (m >= n)
      return invalid_argument("group_transport: member " + std::to_string(i) + " is rank " + std::to_string(m) +
                              ", the inner transport has " + std::to_string(n) + " ranks");
    if (to_view[m] != members.size())
      return invalid_argument("group_transport: rank " + std::to_string(m) + " is listed twice");
    to_view[m] = static_cast<rank_t>(i);
  }
  const rank_t self = inner.rank();
  if (to_view[self] == members.size())
    return invalid_argument("group_transport: this endpoint (inner rank " + std::to_string(self) +
                            ") is not in the member list");
  const rank_t r = to_view[self];
  return std::unique_ptr<group_transport>(
      new group_transport(inner, std::vector<rank_t>(members.begin(), members.end()), std::move(to_view), r));
}

group_transport::group_transport(transport& inner, std::vector<rank_t> members, std::vector<rank_t> to_view,
                                 rank_t rank)
    : inner_(inner), members_(std::move(members)), to_view_(std::move(to_view)), rank_(rank) {}

rank_t group_transport::inner_rank(rank_t r) const noexcept {
  DTRAIN_ASSERT(r < members_.size());
  return members_[r];
}

rank_t group_transport::view_rank(rank_t inner_r) const noexcept {
  return inner_r < to_view_.size() ? to_view_[inner_r] : static_cast<rank_t>(members_.size());
}

namespace {
status bad_peer(const char* what, rank_t peer, rank_t self, std::size_t n) {
  return invalid_argument(std::string("group_transport: ") + what + " view rank " + std::to_string(peer) +
                          " from view rank " + std::to_string(self) + " of " + std::to_string(n));
}
}  // namespace

result<op> group_transport::post_send(rank_t to, tag_t tag, std::span<const std::byte> data) {
  if (to >= members_.size() || to == rank_) return bad_peer("send to", to, rank_, members_.size());
  return inner_.post_send(members_[to], tag, data);
}

result<op> group_transport::post_recv(rank_t from, tag_t tag, std::span<std::byte> buf) {
  if (from >= members_.size() || from == rank_) return bad_peer("receive from", from, rank_, members_.size());
  return inner_.post_recv(members_[from], tag, buf);
}

result<std::size_t> group_transport::wait(op o, deadline d) { return inner_.wait(o, d); }

void group_transport::abort() noexcept { inner_.abort(); }

void group_transport::reset() noexcept { inner_.reset(); }

transport_stats group_transport::stats() const {
  const transport_stats in = inner_.stats();
  transport_stats out;
  out.sent.assign(members_.size(), 0);
  out.received.assign(members_.size(), 0);
  for (std::size_t i = 0; i < members_.size(); ++i) {
    const rank_t m = members_[i];
    if (m < in.sent.size()) out.sent[i] = in.sent[m];
    if (m < in.received.size()) out.received[i] = in.received[m];
  }
  return out;
}

}  // namespace dtrain::net
