// lib/net/gossip_frame.h (private): what the gossip collectives (neighbor_average,
// push_sum, noloco_pairing) share: the frame around their codec payloads (byte layout in
// docs/formats/collective_messages.md), the post-everything-then-wait exchange and the
// schedule check. The arithmetic is robust_aggregate.h's, the option checks
// collective_detail.h's.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dtrain/core/bytes.h"
#include "dtrain/core/status.h"
#include "dtrain/net/transport.h"
#include "dtrain/topology/mixing.h"
#include "dtrain/topology/schedule.h"

namespace dtrain::net::gossip_detail {

/// Which collective wrote a frame, so that two collectives wrongly sharing a channel fail
/// loudly (data_loss) instead of mixing each other's vectors.
enum class gossip_kind : std::uint8_t { neighbor = 1, push_sum = 2, noloco = 3 };

inline constexpr std::uint32_t gossip_magic = 0x53475444u;  // bytes "DTGS"
inline constexpr std::uint8_t gossip_version = 1;
inline constexpr std::size_t gossip_max_slots = 2;

/// Frame flags (byte 6).
inline constexpr std::uint8_t flag_failed = 1;  ///< the sender could not contribute; receivers abort
inline constexpr std::uint8_t flag_nonfinite_slot0 = 2;  ///< slot 0 omitted: sender's vector held NaN/Inf
inline constexpr std::uint8_t flag_nonfinite_slot1 = 4;  ///< slot 1 omitted: same

constexpr std::uint8_t nonfinite_flag(std::size_t slot) noexcept {
  return static_cast<std::uint8_t>(flag_nonfinite_slot0 << slot);
}

/// Header bytes of a frame with `slots` payload slots: magic u32, version u8, kind u8,
/// flags u8, slots u8, weight f64, then one u64 payload length per slot (little-endian).
constexpr std::size_t frame_header_bytes(std::size_t slots) noexcept { return 16 + 8 * slots; }

/// Writes a frame header into out[0, frame_header_bytes(lens.size())).
inline void write_frame_header(std::span<std::byte> out, gossip_kind kind, std::uint8_t flags, double weight,
                               std::span<const std::size_t> lens) noexcept {
  DTRAIN_ASSERT(lens.size() >= 1 && lens.size() <= gossip_max_slots);
  DTRAIN_ASSERT(out.size() >= frame_header_bytes(lens.size()));
  byte_writer w(out.first(frame_header_bytes(lens.size())));
  w.put<std::uint32_t>(gossip_magic);
  w.put<std::uint8_t>(gossip_version);
  w.put<std::uint8_t>(static_cast<std::uint8_t>(kind));
  w.put<std::uint8_t>(flags);
  w.put<std::uint8_t>(static_cast<std::uint8_t>(lens.size()));
  w.put<double>(weight);
  for (std::size_t len : lens) w.put<std::uint64_t>(len);
  DTRAIN_ASSERT(w.ok());
}

/// A parsed frame; payload[k] is empty when the slot was omitted (flags say why).
struct frame_view {
  std::uint8_t flags = 0;
  double weight = 0;
  std::span<const std::byte> payload[gossip_max_slots];
};

/// Parses and checks a frame received from peer `from`.
/// Errors: aborted when the sender flagged that it could not contribute; unimplemented
/// for a newer frame version; data_loss for a short frame, wrong magic, version 0, kind,
/// unknown flags or slot count, lengths that do not add up to
/// the message, a non-finite or negative weight, or an omitted slot that is not flagged.
inline result<frame_view> parse_frame(std::span<const std::byte> msg, gossip_kind kind, std::size_t slots,
                                      rank_t from) {
  const auto bad = [from](const char* what) {
    return data_loss("gossip frame from peer " + std::to_string(from) + ": " + what);
  };
  byte_reader r(msg);
  const auto magic = r.get<std::uint32_t>();
  const auto version = r.get<std::uint8_t>();
  const auto k = r.get<std::uint8_t>();
  const auto flags = r.get<std::uint8_t>();
  const auto nslots = r.get<std::uint8_t>();
  const auto weight = r.get<double>();
  if (!r.ok()) return bad("shorter than its header");
  if (magic != gossip_magic) return bad("bad magic");
  if (version == 0) return bad("version 0");
  if (version > gossip_version) {
    return unimplemented("gossip frame from peer " + std::to_string(from) + ": version " + std::to_string(version) +
                         " is newer than " + std::to_string(gossip_version));
  }
  if (k != static_cast<std::uint8_t>(kind)) return bad("written by another collective (channel clash?)");
  if ((flags & flag_failed) != 0) {
    return aborted("peer " + std::to_string(from) + " could not contribute to this round; redo it");
  }
  if (nslots != slots) return bad("unexpected number of payload slots");
  const std::uint8_t known = static_cast<std::uint8_t>(flag_failed | (((1u << slots) - 1u) << 1));
  if ((flags & ~known) != 0) return bad("unknown flags");
  if (!std::isfinite(weight) || weight < 0) return bad("weight is negative or not finite");
  frame_view v;
  v.flags = flags;
  v.weight = weight;
  std::uint64_t lens[gossip_max_slots] = {};
  for (std::size_t s = 0; s < slots; ++s) lens[s] = r.get<std::uint64_t>();
  if (!r.ok()) return bad("shorter than its header");
  for (std::size_t s = 0; s < slots; ++s) {
    if (lens[s] > r.remaining()) return bad("payload lengths exceed the message");
    v.payload[s] = r.take(static_cast<std::size_t>(lens[s]));
    if ((flags & nonfinite_flag(s)) != 0 && lens[s] != 0) return bad("flagged slot carries a payload");
  }
  if (r.remaining() != 0) return bad("trailing bytes after the payloads");
  return v;
}

/// Posts every receive and send of one exchange, then retires them all. A failed post
/// does not stop the others, so neighbours that do not depend on the failing link still
/// finish their round; every posted op is retired before wait() returns.
class gossip_exchange {
 public:
  /// Allocates room for up to `max_recvs` receives and `max_sends` sends.
  void reserve(std::size_t max_recvs, std::size_t max_sends) {
    recvs_.reserve(max_recvs);
    recv_from_.reserve(max_recvs);
    recv_posted_.reserve(max_recvs);
    recv_len_.reserve(max_recvs);
    recv_buf_.reserve(max_recvs);
    sends_.reserve(max_sends);
  }
  void clear() noexcept {
    recvs_.clear();
    recv_from_.clear();
    recv_posted_.clear();
    recv_len_.clear();
    recv_buf_.clear();
    sends_.clear();
    first_ = ok_status();
  }
  /// Receive number k (in posting order) from `from` into `buf`.
  void post_recv(transport& t, rank_t from, tag_t tag, std::span<std::byte> buf) {
    DTRAIN_ASSERT(recvs_.size() < recvs_.capacity());
    auto o = t.post_recv(from, tag, buf);
    recvs_.push_back(o.ok() ? *o : op{});
    recv_from_.push_back(from);
    recv_posted_.push_back(o.ok() ? 1 : 0);
    if (!o.ok()) note(o.status());
    recv_len_.push_back(0);
    recv_buf_.push_back(buf);
  }
  void post_send(transport& t, rank_t to, tag_t tag, std::span<const std::byte> frame) {
    DTRAIN_ASSERT(sends_.size() < sends_.capacity());
    auto o = t.post_send(to, tag, frame);
    if (o.ok()) {
      sends_.push_back(*o);
    } else {
      note(o.status());
    }
  }
  /// Waits for every posted op (receives first) and returns the first error: a failed
  /// post, then a failed wait in posting order; a message longer than its receive buffer
  /// (resource_exhausted from the transport) becomes data_loss naming the peer.
  status wait(transport& t, deadline d) {
    for (std::size_t k = 0; k < recvs_.size(); ++k) {
      if (recv_posted_[k] == 0) continue;
      auto n = t.wait(recvs_[k], d);
      if (n.ok()) {
        recv_len_[k] = *n;
      } else if (n.status().code() == status_code::resource_exhausted) {
        // Longer than any frame this collective sends: a corrupt or foreign message.
        note(data_loss("message from peer " + std::to_string(recv_from_[k]) + " is longer than a frame (" +
                       n.status().message() + ")"));
      } else {
        note(n.status());
      }
    }
    for (const op& o : sends_) {
      auto n = t.wait(o, d);
      if (!n.ok()) note(n.status());
    }
    return first_;
  }
  /// Length of receive k (valid after a successful wait()).
  std::size_t received(std::size_t k) const noexcept { return recv_len_[k]; }
  /// The bytes of receive k (valid after a successful wait(), while its buffer lives).
  std::span<const std::byte> message(std::size_t k) const noexcept { return recv_buf_[k].first(recv_len_[k]); }

  /// One gossip round for a node with view `v`: clear(), receive k from v.recv[k].first
  /// into recv_frames[k * frame_cap, (k + 1) * frame_cap), send `frame` to every
  /// v.send, then wait(). Needs recv_frames.size() >= v.recv.size() * frame_cap.
  /// Errors: wait()'s.
  status exchange(transport& t, const topology::node_view& v, tag_t tag, std::span<std::byte> recv_frames,
                  std::size_t frame_cap, std::span<const std::byte> frame, deadline d) {
    DTRAIN_ASSERT(recv_frames.size() >= v.recv.size() * frame_cap);
    clear();
    for (std::size_t k = 0; k < v.recv.size(); ++k) {
      post_recv(t, v.recv[k].first, tag, recv_frames.subspan(k * frame_cap, frame_cap));
    }
    for (rank_t to : v.send) post_send(t, to, tag, frame);
    return wait(t, d);
  }

 private:
  void note(const status& s) {
    if (first_.ok()) first_ = s;
  }
  std::vector<op> recvs_;
  std::vector<rank_t> recv_from_;
  std::vector<std::uint8_t> recv_posted_;  // 0: the post failed, nothing to wait for
  std::vector<std::size_t> recv_len_;
  std::vector<std::span<std::byte>> recv_buf_;
  std::vector<op> sends_;
  status first_;
};

enum class stochastic { rows, columns };

/// Checks that `s` suits a transport of `n` peers: not empty, every round an n x n
/// matrix that passes mixing::validate() and is row (or column) stochastic within
/// topology::stochastic_tolerance. Errors: invalid_argument naming the round.
inline status check_schedule(const topology::schedule& s, std::size_t n, stochastic kind, const char* who) {
  const std::string w(who);
  if (s.period() == 0) return invalid_argument(w + ": schedule is empty");
  for (std::size_t p = 0; p < s.period(); ++p) {
    const topology::mixing& m = s.rounds[p];
    const std::string round = w + ": schedule round " + std::to_string(p);
    if (m.n != n) {
      return invalid_argument(round + " has n = " + std::to_string(m.n) + " but the transport has " +
                              std::to_string(n) + " peers");
    }
    if (status st = m.validate(); !st.ok()) return invalid_argument(round + ": " + st.message());
    status st = kind == stochastic::rows ? topology::is_row_stochastic(m) : topology::is_column_stochastic(m);
    if (!st.ok()) return invalid_argument(round + ": " + st.message());
  }
  return ok_status();
}

}  // namespace dtrain::net::gossip_detail
