// dtrain/membership/view.h: a membership view: the epoch, the data-plane session id and
// the members in rank order, each with its data address and peer group.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "dtrain/membership/identity.h"
#include "dtrain/net/tcp/address.h"

namespace dtrain::membership {

/// One member of a view.
struct member {
  peer_id id;
  net::tcp::address data_address;  ///< where its data-plane transport listens
  std::uint32_t group = 0;         ///< its peer group (replica group); 0 by default

  friend bool operator==(const member&, const member&) = default;
};

/// What every member agrees on between two membership changes. Rank = position in
/// `members`. Two views with the same epoch from the same coordinator are identical.
struct view {
  std::uint64_t epoch = 0;    ///< bumped on every change; 0 = no view yet
  std::uint64_t session = 0;  ///< random per epoch: use it as the data-plane session id
  std::vector<member> members;

  /// The rank of `id`, or nullopt when it is not a member.
  std::optional<std::size_t> rank_of(const peer_id& id) const noexcept {
    for (std::size_t i = 0; i < members.size(); ++i)
      if (members[i].id == id) return i;
    return std::nullopt;
  }
  bool contains(const peer_id& id) const noexcept { return rank_of(id).has_value(); }

  /// The members of `group`, in rank order, with this view's epoch and session: the
  /// ranks a group collective runs over (rank in the sub-view = rank_of on it).
  view group_view(std::uint32_t group) const {
    view g{epoch, session, {}};
    for (const auto& m : members)
      if (m.group == group) g.members.push_back(m);
    return g;
  }

  friend bool operator==(const view&, const view&) = default;
};

}  // namespace dtrain::membership
