// dtrain/net/transport_inproc.h: the in-process transport. A fabric of n endpoints
// whose peers are threads of one process; a message is copied once, straight from the
// sender's buffer into the receiver's. Used by the multi-peer tests, the simulator and
// the benchmarks; kill() injects a crash.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "dtrain/net/transport.h"

namespace dtrain::net {

class inproc_fabric;

/// One peer's endpoint of an inproc_fabric. Obtain it from inproc_fabric::endpoint().
class inproc_transport final : public transport {
 public:
  rank_t rank() const noexcept override { return rank_; }
  std::size_t size() const noexcept override;
  result<op> post_send(rank_t to, tag_t tag, std::span<const std::byte> data) override;
  result<op> post_recv(rank_t from, tag_t tag, std::span<std::byte> buf) override;
  result<std::size_t> wait(op o, deadline d) override;
  void abort() noexcept override;
  void reset() noexcept override;
  transport_stats stats() const override;

 private:
  friend class inproc_fabric;
  inproc_transport(inproc_fabric& f, rank_t r, std::size_t n);

  inproc_fabric& fabric_;
  rank_t rank_;
  bool aborted_ = false;  // guarded by the fabric's mutex
  std::vector<std::atomic<std::uint64_t>> sent_;
  std::vector<std::atomic<std::uint64_t>> received_;
};

/// n in-process endpoints that can all talk to each other. Thread-safe. The fabric must
/// outlive every thread that uses its endpoints.
class inproc_fabric {
 public:
  explicit inproc_fabric(std::size_t n);
  ~inproc_fabric();
  inproc_fabric(const inproc_fabric&) = delete;
  inproc_fabric& operator=(const inproc_fabric&) = delete;

  std::size_t size() const noexcept { return endpoints_.size(); }
  /// Endpoint of rank r. @pre r < size()
  inproc_transport& endpoint(rank_t r) noexcept;

  /// Simulates a crash of rank r: its pending operations and every pending operation of
  /// a peer that involves r fail with `aborted` ("peer r gone"), and so do later ones.
  /// Operations whose copy already began complete normally first.
  void kill(rank_t r) noexcept;
  /// Brings a killed rank back (a restarted peer): later operations with it work again.
  void revive(rank_t r) noexcept;
  bool alive(rank_t r) const noexcept;

 private:
  friend class inproc_transport;

  enum class op_state : std::uint8_t { queued, copying, done };
  struct op_rec {
    rank_t owner = 0;  // endpoint that posted it
    rank_t peer = 0;
    tag_t tag = 0;
    bool is_send = false;
    const std::byte* src = nullptr;  // send
    std::byte* dst = nullptr;        // recv
    std::size_t len = 0;             // bytes of the send, capacity of the recv
    op_state state = op_state::queued;
    std::size_t transferred = 0;
    dtrain::status error;
  };
  // Queues of unmatched ops, keyed by (sender, receiver, tag), in posting order.
  using key = std::tuple<rank_t, rank_t, tag_t>;

  result<op> post(rank_t owner, rank_t peer, tag_t tag, bool is_send, const std::byte* src,
                  std::byte* dst, std::size_t len);
  result<std::size_t> wait(rank_t owner, op o, deadline d);
  void fail_matching(std::unique_lock<std::mutex>& lock, bool (*pred)(const op_rec&, rank_t), rank_t r,
                     const dtrain::status& why);
  void unqueue(std::uint64_t id, const op_rec& rec);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t next_id_ = 1;
  std::unordered_map<std::uint64_t, op_rec> ops_;
  std::map<key, std::deque<std::uint64_t>> sends_;  // unmatched sends
  std::map<key, std::deque<std::uint64_t>> recvs_;  // unmatched receives
  std::vector<bool> dead_;
  std::vector<std::unique_ptr<inproc_transport>> endpoints_;
};

}  // namespace dtrain::net
