// dtrain/net/transport_tcp.h: the transport interface over TCP (asio): S streams per peer
// pair with striping, framed and checksummed messages (docs/formats/tcp_frames.md), tag
// matching into caller buffers, a deadline on every operation, lost peers reported as
// `aborted`, and an optional link shaper. Design: docs/design/net_tcp.md; use: docs/net_tcp.md.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "dtrain/net/tcp/address.h"
#include "dtrain/net/tcp/context.h"
#include "dtrain/net/transport.h"

namespace dtrain::net {

namespace tcp::detail {
struct transport_impl;
}

class tcp_transport final : public transport {
 public:
  /// Connects a group: `peers[r]` is rank r's advertised address (peers[rank] is this
  /// process's own and is not dialled). Rank i dials every rank below it (each with
  /// ctx.options().streams connections) and accepts from every rank above it; `session`
  /// (the same on every member, unique per group and epoch, e.g. from the coordinator)
  /// tells this group's connections from any other's on the shared listener.
  /// Returns once every connection is up; dialling is retried until `connect_by`.
  /// Errors: invalid_argument (rank >= peers.size(), fewer than 1 peer, session already in
  /// use on this context, unresolvable address); unavailable naming the ranks that did not
  /// connect by the deadline.
  static result<std::unique_ptr<tcp_transport>> create(tcp::tcp_context& ctx, std::uint64_t session, rank_t rank,
                                                       const std::vector<tcp::address>& peers, deadline connect_by);

  /// leave(), then closes every connection (also connections still being dialled, so a
  /// transport whose create() failed is torn down at once). Pending operations must have
  /// been retired with wait().
  ~tcp_transport() override;

  rank_t rank() const noexcept override;
  std::size_t size() const noexcept override;
  /// As transport::post_send(). Additionally invalid_argument for data longer than
  /// options().max_message_bytes.
  result<op> post_send(rank_t to, tag_t tag, std::span<const std::byte> data) override;
  result<op> post_recv(rank_t from, tag_t tag, std::span<std::byte> buf) override;
  /// As transport::wait(). Additionally data_loss when the peer sent a frame that failed its
  /// checksum or broke the protocol (the connection is then closed and the peer is gone).
  /// A receive cancelled by its deadline while a stripe was being read into its buffer, or a
  /// send cancelled after part of it was written, closes that peer's connection (its framing
  /// can no longer be trusted): later operations with that peer fail with aborted.
  result<std::size_t> wait(op o, deadline d) override;
  void abort() noexcept override;
  void reset() noexcept override;
  /// Payload bytes of completed operations only: a send counts once all of it was handed to
  /// the kernel, a receive once its message is in the caller's buffer; failed, cancelled,
  /// dropped and still-backlogged messages do not count.
  transport_stats stats() const override;

  /// Sends a goodbye on every stream after the data already queued (waiting up to 1 s for
  /// it to drain), then closes them. Peers closing their side in answer are not crashes:
  /// leaving never breaks this endpoint's group nor sends peer_lost frames. Peers' operations with this rank fail with aborted
  /// ("left"), but a goodbye does not break their group: unlike a crash (EOF without
  /// goodbye), their operations with the other ranks go on. Idempotent.
  void leave() noexcept;
  /// Fault injection: closes every connection at once, without goodbye, as a crash looks
  /// to the peers. Every operation of this endpoint then fails with aborted.
  void drop_connections() noexcept;
  /// False once `r` is known gone (EOF, socket error, protocol error, goodbye).
  bool peer_alive(rank_t r) const noexcept;

 private:
  explicit tcp_transport(std::shared_ptr<tcp::detail::transport_impl> impl) noexcept;
  std::shared_ptr<tcp::detail::transport_impl> impl_;
};

}  // namespace dtrain::net
