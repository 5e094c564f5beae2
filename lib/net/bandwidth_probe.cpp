// Pairwise bandwidth probe over a round-robin tournament, the all-gather of its rows, and
// the group view that applies the bottleneck ring order.
#include "dtrain/net/bandwidth_probe.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <string>

namespace dtrain::net {

namespace {

// Tag steps (sequence 0). Messages between two peers in one direction under one tag
// match in posting order, so the repeats and rounds can share them.
constexpr std::uint32_t kPing = 1, kPingAck = 2, kData = 3, kDataAck = 4, kRow = 5;
constexpr std::size_t kPingBytes = 8;
constexpr double kMinSeconds = 1e-6;  // floor of transfer - ping (see bandwidth_probe())

// A deadline that has already passed: waiting with it retires (cancels) an op at once.
constexpr deadline kPassed = deadline::min();

double seconds_since(clock::time_point t0) {
  return std::chrono::duration<double>(clock::now() - t0).count();
}

status longer_than_expected(rank_t from, const status& why) {
  if (why.code() != status_code::resource_exhausted) return why;
  return data_loss("bandwidth_probe: rank " + std::to_string(from) + " sent a longer message than the protocol's (" +
                   why.message() + ")");
}

// Sender side of one timed exchange: post the ack receive, send `msg`, wait for both;
// returns the seconds from posting to the ack.
result<double> timed_exchange(transport& t, rank_t to, std::uint32_t channel, std::uint32_t step,
                              std::span<const std::byte> msg, std::span<std::byte> ack, deadline d) {
  const auto t0 = clock::now();
  auto ra = t.post_recv(to, make_tag(channel, 0, step + 1), ack);
  if (!ra.ok()) return ra.status();
  auto rs = t.post_send(to, make_tag(channel, 0, step), msg);
  if (!rs.ok()) {
    t.wait(*ra, kPassed).status().ignore();
    return rs.status();
  }
  auto ns = t.wait(*rs, d);
  auto na = t.wait(*ra, ns.ok() ? d : kPassed);
  const double s = seconds_since(t0);
  if (!ns.ok()) return ns.status();
  if (!na.ok()) return longer_than_expected(to, na.status());
  if (*na != ack.size())
    return data_loss("bandwidth_probe: ack from rank " + std::to_string(to) + " holds " + std::to_string(*na) +
                     " bytes, expected " + std::to_string(ack.size()));
  return s;
}

// Receiver side: receive exactly `expect` bytes, then send the ack.
status serve_exchange(transport& t, rank_t from, std::uint32_t channel, std::uint32_t step, std::span<std::byte> buf,
                      std::span<const std::byte> ack, deadline d) {
  auto n = recv(t, from, make_tag(channel, 0, step), buf, d);
  if (!n.ok()) return longer_than_expected(from, n.status());
  if (*n != buf.size())
    return data_loss("bandwidth_probe: rank " + std::to_string(from) + " sent " + std::to_string(*n) +
                     " bytes, expected " + std::to_string(buf.size()));
  return send(t, from, make_tag(channel, 0, step + 1), ack, d);
}

void put_f64(std::byte* p, double v) noexcept {
  const auto u = std::bit_cast<std::uint64_t>(v);
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::byte>((u >> (8 * i)) & 0xFFu);
}

double get_f64(const std::byte* p) noexcept {
  std::uint64_t u = 0;
  for (int i = 0; i < 8; ++i) u |= std::uint64_t{std::to_integer<std::uint8_t>(p[i])} << (8 * i);
  return std::bit_cast<double>(u);
}

// Every peer's row, from the same bytes on every peer (its own row included).
status all_gather_rows(transport& t, std::uint32_t channel, std::span<const double> row, std::vector<double>& out,
                       deadline d) {
  const std::size_t n = t.size(), row_bytes = 8 * n;
  const rank_t me = t.rank();
  std::vector<std::byte> all(row_bytes * n);
  for (std::size_t j = 0; j < n; ++j) put_f64(all.data() + me * row_bytes + 8 * j, row[j]);
  const std::span<const std::byte> mine(all.data() + me * row_bytes, row_bytes);

  std::vector<op> ops;
  std::vector<rank_t> peer;
  ops.reserve(2 * n);
  peer.reserve(2 * n);
  status st;
  const tag_t tag = make_tag(channel, 0, kRow);
  for (rank_t p = 0; p < n && st.ok(); ++p) {
    if (p == me) continue;
    auto o = t.post_recv(p, tag, std::span(all).subspan(p * row_bytes, row_bytes));
    if (!o.ok()) {
      st = o.status();
      break;
    }
    ops.push_back(*o);
    peer.push_back(p);
  }
  const std::size_t receives = ops.size();
  for (rank_t p = 0; p < n && st.ok(); ++p) {
    if (p == me) continue;
    auto o = t.post_send(p, tag, mine);
    if (!o.ok()) {
      st = o.status();
      break;
    }
    ops.push_back(*o);
    peer.push_back(p);
  }
  for (std::size_t i = 0; i < ops.size(); ++i) {
    auto len = t.wait(ops[i], st.ok() ? d : kPassed);
    if (!st.ok()) continue;
    if (!len.ok())
      st = longer_than_expected(peer[i], len.status());
    else if (i < receives && *len != row_bytes)
      st = data_loss("bandwidth_probe: the row of rank " + std::to_string(peer[i]) + " holds " +
                     std::to_string(*len) + " bytes, expected " + std::to_string(row_bytes));
  }
  DTRAIN_RETURN_IF_ERROR(st);

  out.assign(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      const double v = get_f64(all.data() + i * row_bytes + 8 * j);
      const bool okv = i == j ? v == 0.0 : (std::isfinite(v) && v > 0.0);
      if (!okv)
        return data_loss("bandwidth_probe: the row of rank " + std::to_string(i) + " holds an invalid entry " +
                         std::to_string(v) + " at column " + std::to_string(j));
      out[i * n + j] = v;
    }
  return ok_status();
}

}  // namespace

std::size_t probe_rounds(std::size_t n) noexcept {
  if (n <= 1) return 0;
  return n % 2 == 0 ? n - 1 : n;
}

rank_t round_robin_partner(std::size_t n, std::size_t round, rank_t peer) noexcept {
  DTRAIN_ASSERT(peer < n && round < probe_rounds(n));
  const std::size_t m = n % 2 == 0 ? n - 1 : n;  // odd; "peer" m is the fixed one (the bye for odd n)
  std::size_t partner;
  if (peer == m) {
    partner = round;
  } else {
    const std::size_t y = (2 * round + m - peer) % m;  // 2 round - peer (mod m), peer < m
    partner = y == peer ? m : y;
  }
  return partner >= n ? peer : static_cast<rank_t>(partner);
}

result<bandwidth_matrix> bandwidth_probe(transport& t, const probe_options& o) {
  if (o.bytes == 0) return invalid_argument("bandwidth_probe: bytes must be >= 1");
  if (o.repeats == 0) return invalid_argument("bandwidth_probe: repeats must be >= 1");
  if (o.timeout.count() <= 0) return invalid_argument("bandwidth_probe: timeout must be > 0");
  if (o.channel >= (1u << 24)) return invalid_argument("bandwidth_probe: channel must be < 2^24");
  const std::size_t n = t.size();
  const rank_t me = t.rank();
  const deadline d = after(o.timeout);
  std::vector<double> row(n, 0.0);

  if (n > 1) {
    std::vector<std::byte> payload(o.bytes), inbuf(o.bytes);
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::byte>((i * 131u + 7u) & 0xFFu);
    std::byte ping[kPingBytes] = {}, ping_in[kPingBytes] = {}, ack[1] = {std::byte{1}}, ack_in[1] = {};
    for (std::size_t r = 0; r < probe_rounds(n); ++r) {
      const rank_t p = round_robin_partner(n, r, me);
      if (p == me) continue;
      const rank_t lo = std::min(me, p), hi = std::max(me, p);
      for (const rank_t sender : {lo, hi}) {
        // An untimed ping first: the partner may still be busy with its previous round,
        // and that wait must not count as transfer time.
        if (sender == me) {
          auto warm = timed_exchange(t, p, o.channel, kPing, ping, ack_in, d);
          if (!warm.ok()) return warm.status();
        } else {
          DTRAIN_RETURN_IF_ERROR(serve_exchange(t, p, o.channel, kPing, ping_in, ack, d));
        }
        double best_ping = std::numeric_limits<double>::infinity(), best_data = best_ping;
        for (std::size_t k = 0; k < o.repeats; ++k) {
          if (sender == me) {
            auto tp = timed_exchange(t, p, o.channel, kPing, ping, ack_in, d);
            if (!tp.ok()) return tp.status();
            auto td = timed_exchange(t, p, o.channel, kData, payload, ack_in, d);
            if (!td.ok()) return td.status();
            best_ping = std::min(best_ping, *tp);
            best_data = std::min(best_data, *td);
          } else {
            DTRAIN_RETURN_IF_ERROR(serve_exchange(t, p, o.channel, kPing, ping_in, ack, d));
            DTRAIN_RETURN_IF_ERROR(serve_exchange(t, p, o.channel, kData, inbuf, ack, d));
          }
        }
        if (sender == me)
          row[p] = static_cast<double>(o.bytes) / std::max(best_data - best_ping, kMinSeconds);
      }
    }
  }

  bandwidth_matrix m;
  m.n = n;
  DTRAIN_RETURN_IF_ERROR(all_gather_rows(t, o.channel, row, m.bytes_per_s, d));
  return m;
}

result<ring_plan> ring_view(transport& t, const bandwidth_matrix& m, const topology::ring_order_options& ro) {
  const std::size_t n = t.size();
  if (m.n != n)
    return invalid_argument("ring_view: the matrix is for " + std::to_string(m.n) + " peers, the transport has " +
                            std::to_string(n));
  if (m.bytes_per_s.size() != n * n)
    return invalid_argument("ring_view: the matrix holds " + std::to_string(m.bytes_per_s.size()) +
                            " entries, expected " + std::to_string(n * n));
  auto ring = topology::best_ring_order(m.bytes_per_s, n, ro);
  if (!ring.ok()) return ring.status();
  auto view = group_transport::create(t, std::span<const rank_t>(ring->order));
  if (!view.ok()) return view.status();
  ring_plan plan;
  plan.ring = std::move(*ring);
  plan.view = std::move(*view);
  return plan;
}

}  // namespace dtrain::net
