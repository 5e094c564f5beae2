// dtrain/net/tcp/rendezvous.h: the simplest way for a fixed group to learn each other's
// addresses without a coordinator: each rank publishes its address as a file in a shared
// directory and reads everyone else's (Gloo's FileStore idea). For dynamic groups use the
// membership coordinator (dtrain/membership/).
#pragma once

#include <string>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/net/tcp/address.h"
#include "dtrain/net/transport.h"

namespace dtrain::net::tcp {

/// Writes `mine` to `dir`/`prefix`.`rank` (atomically: temporary file, then rename) and
/// polls until all `size` ranks' files exist; returns the addresses in rank order.
/// Errors: invalid_argument (rank >= size, size 0); unavailable when `dir` is not
/// writable; deadline_exceeded naming the missing ranks; data_loss for a file that does
/// not parse as an address.
result<std::vector<address>> file_rendezvous(const std::string& dir, const std::string& prefix, rank_t rank,
                                             std::size_t size, const address& mine, deadline by);

}  // namespace dtrain::net::tcp
