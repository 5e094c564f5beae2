// dtrain/net/tcp/options.h: knobs of the TCP transport: streams per peer pair, striping,
// socket buffers, limits on what a peer may send, connection timeouts and the link shaper.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "dtrain/net/tcp/shaper.h"

namespace dtrain::net::tcp {

struct tcp_options {
  /// TCP connections per peer pair (1..64). Messages larger than stripe_bytes are cut into
  /// stripes dealt round-robin over the streams: more streams fill long fat pipes.
  unsigned streams = 1;
  /// Stripe size (bytes, >= 4096). Each stripe carries its own header and checksum.
  std::uint32_t stripe_bytes = 1u << 20;
  /// SO_SNDBUF/SO_RCVBUF per socket; 0 keeps the kernel's autotuning.
  int socket_buffer_bytes = 4 << 20;
  /// Longest message a peer may send us; a longer one is a protocol error (connection
  /// closed). post_send() of a longer message fails with invalid_argument.
  std::uint64_t max_message_bytes = std::uint64_t{1} << 36;
  /// Bytes of messages that arrived before their receive was posted, per peer, each
  /// counted as its length + 64. Beyond it the transport stops reading from that peer (TCP
  /// back-pressure) until receives drain it. One message (up to max_message_bytes) is
  /// always admitted into an empty backlog, so a message above the cap cannot deadlock;
  /// backlog memory is allocated as bytes arrive, never from a length a header claims.
  std::uint64_t unexpected_cap_bytes = 64u << 20;
  /// How long an accepted connection may take to send its hello.
  std::chrono::milliseconds hello_timeout{10'000};
  /// A group with a lost member cannot finish a collective: when true (the default), the
  /// first lost peer breaks the whole endpoint (every pending and later operation fails
  /// with aborted, naming the lost rank) and the loss is reported to the other members
  /// (a peer_lost frame), so every survivor learns of it within one round trip instead of
  /// waiting for its own deadline. Rebuild the group (a new transport over the survivors)
  /// to go on. When false, only operations with the lost peer fail (gossip-style groups).
  bool fail_group_on_peer_loss = true;
  /// Shapes every outgoing link (simulated WAN); disabled by default.
  shaper_options shaper{};
};

}  // namespace dtrain::net::tcp
