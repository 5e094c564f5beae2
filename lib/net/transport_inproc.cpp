// The in-process fabric: tag matching under one mutex, the copy itself outside it.
#include "dtrain/net/transport_inproc.h"

#include <cstring>
#include <string>

namespace dtrain::net {

// ---- inproc_transport ---------------------------------------------------------------

inproc_transport::inproc_transport(inproc_fabric& f, rank_t r, std::size_t n)
    : fabric_(f), rank_(r), sent_(n), received_(n) {}

std::size_t inproc_transport::size() const noexcept { return fabric_.size(); }

result<op> inproc_transport::post_send(rank_t to, tag_t tag, std::span<const std::byte> data) {
  return fabric_.post(rank_, to, tag, true, data.data(), nullptr, data.size());
}

result<op> inproc_transport::post_recv(rank_t from, tag_t tag, std::span<std::byte> buf) {
  return fabric_.post(rank_, from, tag, false, nullptr, buf.data(), buf.size());
}

result<std::size_t> inproc_transport::wait(op o, deadline d) { return fabric_.wait(rank_, o, d); }

void inproc_transport::abort() noexcept {
  std::unique_lock lock(fabric_.mu_);
  aborted_ = true;
  fabric_.fail_matching(
      lock, [](const inproc_fabric::op_rec& rec, rank_t r) { return rec.owner == r; }, rank_,
      aborted("transport aborted on rank " + std::to_string(rank_)));
}

void inproc_transport::reset() noexcept {
  std::lock_guard lock(fabric_.mu_);
  aborted_ = false;
}

transport_stats inproc_transport::stats() const {
  transport_stats s;
  s.sent.reserve(sent_.size());
  s.received.reserve(received_.size());
  for (const auto& b : sent_) s.sent.push_back(b.load(std::memory_order_relaxed));
  for (const auto& b : received_) s.received.push_back(b.load(std::memory_order_relaxed));
  return s;
}

// ---- inproc_fabric ------------------------------------------------------------------

inproc_fabric::inproc_fabric(std::size_t n) : dead_(n, false) {
  DTRAIN_ASSERT(n > 0 && n < (std::size_t{1} << 31));
  endpoints_.reserve(n);
  for (std::size_t r = 0; r < n; ++r)
    endpoints_.emplace_back(new inproc_transport(*this, static_cast<rank_t>(r), n));
}

inproc_fabric::~inproc_fabric() = default;

inproc_transport& inproc_fabric::endpoint(rank_t r) noexcept {
  DTRAIN_ASSERT(r < endpoints_.size());
  return *endpoints_[r];
}

bool inproc_fabric::alive(rank_t r) const noexcept {
  std::lock_guard lock(mu_);
  return r < dead_.size() && !dead_[r];
}

void inproc_fabric::kill(rank_t r) noexcept {
  DTRAIN_ASSERT(r < endpoints_.size());
  std::unique_lock lock(mu_);
  dead_[r] = true;
  fail_matching(
      lock, [](const op_rec& rec, rank_t k) { return rec.owner == k || rec.peer == k; }, r,
      aborted("peer " + std::to_string(r) + " gone"));
}

void inproc_fabric::revive(rank_t r) noexcept {
  DTRAIN_ASSERT(r < endpoints_.size());
  std::lock_guard lock(mu_);
  dead_[r] = false;
}

void inproc_fabric::fail_matching(std::unique_lock<std::mutex>& lock, bool (*pred)(const op_rec&, rank_t),
                                  rank_t r, const dtrain::status& why) {
  DTRAIN_ASSERT(lock.owns_lock());
  for (auto* queues : {&sends_, &recvs_}) {
    for (auto it = queues->begin(); it != queues->end();) {
      auto& q = it->second;
      for (auto qi = q.begin(); qi != q.end();) {
        op_rec& rec = ops_.at(*qi);
        if (pred(rec, r)) {
          rec.state = op_state::done;
          rec.error = why;
          qi = q.erase(qi);
        } else {
          ++qi;
        }
      }
      it = q.empty() ? queues->erase(it) : std::next(it);
    }
  }
  cv_.notify_all();
}

void inproc_fabric::unqueue(std::uint64_t id, const op_rec& rec) {
  auto& queues = rec.is_send ? sends_ : recvs_;
  const key k = rec.is_send ? key{rec.owner, rec.peer, rec.tag} : key{rec.peer, rec.owner, rec.tag};
  auto it = queues.find(k);
  DTRAIN_ASSERT(it != queues.end());
  auto& q = it->second;
  for (auto qi = q.begin(); qi != q.end(); ++qi) {
    if (*qi == id) {
      q.erase(qi);
      break;
    }
  }
  if (q.empty()) queues.erase(it);
}

result<op> inproc_fabric::post(rank_t owner, rank_t peer, tag_t tag, bool is_send, const std::byte* src,
                               std::byte* dst, std::size_t len) {
  if (peer >= endpoints_.size() || peer == owner)
    return invalid_argument("inproc: bad peer " + std::to_string(peer) + " for rank " + std::to_string(owner) +
                            " of " + std::to_string(endpoints_.size()));
  std::unique_lock lock(mu_);
  if (endpoints_[owner]->aborted_) return aborted("transport aborted on rank " + std::to_string(owner));
  if (dead_[owner]) return aborted("rank " + std::to_string(owner) + " is dead");
  if (dead_[peer]) return aborted("peer " + std::to_string(peer) + " gone");

  const std::uint64_t id = next_id_++;
  op_rec& mine = ops_[id];  // element references survive rehashing
  mine.owner = owner;
  mine.peer = peer;
  mine.tag = tag;
  mine.is_send = is_send;
  mine.src = src;
  mine.dst = dst;
  mine.len = len;

  const key k = is_send ? key{owner, peer, tag} : key{peer, owner, tag};
  auto& others = is_send ? recvs_ : sends_;
  auto it = others.find(k);
  if (it == others.end()) {
    (is_send ? sends_ : recvs_)[k].push_back(id);
    return op{id};
  }
  const std::uint64_t match = it->second.front();
  it->second.pop_front();
  if (it->second.empty()) others.erase(it);

  op_rec& s = is_send ? mine : ops_.at(match);
  op_rec& r = is_send ? ops_.at(match) : mine;
  s.state = r.state = op_state::copying;
  const bool fits = s.len <= r.len;
  // Neither op can be retired while copying (wait() blocks on that state), so both
  // buffers stay valid without the lock.
  lock.unlock();
  if (fits && s.len > 0) std::memcpy(r.dst, s.src, s.len);
  lock.lock();
  s.state = r.state = op_state::done;
  s.transferred = s.len;
  if (fits) {
    r.transferred = s.len;
    endpoints_[s.owner]->sent_[r.owner].fetch_add(s.len, std::memory_order_relaxed);
    endpoints_[r.owner]->received_[s.owner].fetch_add(s.len, std::memory_order_relaxed);
  } else {
    r.error = resource_exhausted("inproc: message of " + std::to_string(s.len) + " bytes from rank " +
                                 std::to_string(s.owner) + " exceeds the receive buffer of " +
                                 std::to_string(r.len) + " bytes");
  }
  cv_.notify_all();
  return op{id};
}

result<std::size_t> inproc_fabric::wait(rank_t owner, op o, deadline d) {
  std::unique_lock lock(mu_);
  auto it = ops_.find(o.id);
  if (it == ops_.end() || it->second.owner != owner)
    return invalid_argument("inproc: op " + std::to_string(o.id) + " is not pending on rank " + std::to_string(owner));
  op_rec& rec = it->second;
  for (;;) {
    if (rec.state == op_state::done) {
      result<std::size_t> out = rec.error.ok() ? result<std::size_t>(rec.transferred) : result<std::size_t>(rec.error);
      ops_.erase(o.id);
      return out;
    }
    if (rec.state == op_state::queued) {
      if (clock::now() >= d) {
        unqueue(o.id, rec);
        const bool was_send = rec.is_send;
        const rank_t peer = rec.peer;
        ops_.erase(o.id);
        return dtrain::status(status_code::deadline_exceeded,
                              std::string("inproc: ") + (was_send ? "send to" : "receive from") + " rank " +
                                  std::to_string(peer) + " timed out");
      }
      if (d == deadline::max())
        cv_.wait(lock);
      else
        cv_.wait_until(lock, d);
    } else {
      cv_.wait(lock);  // copying: finishes in bounded time
    }
  }
}

}  // namespace dtrain::net
