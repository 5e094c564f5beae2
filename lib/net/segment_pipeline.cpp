// The segmented forwarding pipeline shared by the ring all-gather and the chain broadcast.
#include "segment_pipeline.h"

#include <algorithm>
#include <array>
#include <string>

namespace dtrain::net::detail {

namespace {
std::size_t ceil_div(std::size_t a, std::size_t b) noexcept { return a / b + (a % b != 0 ? 1 : 0); }
}  // namespace

std::size_t block_layout::offset(std::size_t j) const noexcept {
  if (counts.empty()) return j * block;
  std::size_t o = 0;
  for (std::size_t i = 0; i < j; ++i) o += counts[i];
  return o;
}

segment_walk::segment_walk(const block_layout& l, std::size_t first, std::size_t blocks, std::size_t segment) noexcept
    : l_(&l), first_(first), blocks_(blocks), segment_(segment), block_(first), left_(blocks) {
  DTRAIN_ASSERT(segment >= 1 && (blocks == 0 || first < l.n));
  if (left_ > 0) offset_ = l.offset(first);
  skip_empty();
}

std::size_t segment_walk::count() const noexcept {
  std::size_t c = 0, j = first_;
  for (std::size_t b = 0; b < blocks_; ++b) {
    c += ceil_div(l_->size(j), segment_);
    j = (j + l_->n - 1) % l_->n;
  }
  return c;
}

std::size_t segment_walk::length() const noexcept { return std::min(segment_, l_->size(block_) - pos_); }

void segment_walk::previous_block() noexcept {
  // Step to the previous block (wrapping); its offset follows from the current one.
  if (block_ == 0) {
    block_ = l_->n - 1;
    offset_ = l_->total - l_->size(block_);
  } else {
    --block_;
    offset_ -= l_->size(block_);
  }
}

void segment_walk::skip_empty() noexcept {
  while (left_ > 0 && l_->size(block_) == 0) {
    --left_;
    if (left_ == 0) break;
    previous_block();
  }
}

void segment_walk::advance() noexcept {
  DTRAIN_ASSERT(!done());
  pos_ += segment_;
  if (pos_ < l_->size(block_)) return;
  pos_ = 0;
  --left_;
  if (left_ == 0) return;
  previous_block();
  skip_empty();
}

status run_pipeline(transport& t, std::span<std::byte> buf, const pipeline& p, segment_walk recv, segment_walk send,
                    deadline d, std::string_view who, std::uint32_t channel, std::uint32_t sequence,
                    std::uint32_t step_base, std::uint32_t step_mask) {
  constexpr std::size_t D = pipeline_depth;
  const std::size_t R = p.from == pipeline::none ? 0 : recv.count();
  const std::size_t S = p.to == pipeline::none ? 0 : send.count();
  std::array<op, D> rq{}, sq{};
  std::array<std::size_t, D> rlen{};
  std::size_t rp = 0, rr = 0, sp = 0, sr = 0;  // posted / retired, per direction
  auto tag = [&](std::size_t k) {
    return make_tag(channel, sequence, step_base | static_cast<std::uint32_t>(k & step_mask));
  };
  // Retires whatever is still posted: an already-passed deadline cancels unmatched ops.
  auto cancel = [&] {
    for (; rr < rp; ++rr) t.wait(rq[rr % D], deadline::min()).status().ignore();
    for (; sr < sp; ++sr) t.wait(sq[sr % D], deadline::min()).status().ignore();
  };

  while (rr < R || sr < S) {
    while (rp < R && rp < rr + D) {
      auto o = t.post_recv(p.from, tag(rp), buf.subspan(recv.offset(), recv.length()));
      if (!o.ok()) {
        cancel();
        return o.status();
      }
      rq[rp % D] = *o;
      rlen[rp % D] = recv.length();
      recv.advance();
      ++rp;
    }
    while (sp < S && sp < sr + D && (sp < p.own || sp - p.own < rr)) {
      auto o = t.post_send(p.to, tag(sp), buf.subspan(send.offset(), send.length()));
      if (!o.ok()) {
        cancel();
        return o.status();
      }
      sq[sp % D] = *o;
      send.advance();
      ++sp;
    }
    // Retire the op with the smallest index, the receive first on a tie.
    if (rr < R && (sr >= S || rr <= sr)) {
      DTRAIN_ASSERT(rr < rp);
      const std::size_t want = rlen[rr % D];
      auto n = t.wait(rq[rr % D], d);
      ++rr;
      if (!n.ok() || *n != want) {
        cancel();
        if (n.ok() || n.status().code() == status_code::resource_exhausted)
          return invalid_argument(std::string(who) + ": rank " + std::to_string(p.from) + " sent " +
                                  (n.ok() ? std::to_string(*n) + " bytes" : std::string("more bytes")) +
                                  " where this peer expected a segment of " + std::to_string(want) +
                                  ": the sizes or max_segment_bytes differ between peers");
        return n.status();
      }
    } else {
      DTRAIN_ASSERT(sr < sp);
      auto n = t.wait(sq[sr % D], d);
      ++sr;
      if (!n.ok()) {
        cancel();
        return n.status();
      }
    }
  }
  return ok_status();
}

status check_segment_options(std::string_view who, std::chrono::milliseconds timeout, std::uint32_t channel,
                             std::size_t max_segment_bytes) {
  const std::string w(who);
  if (timeout.count() <= 0) return invalid_argument(w + ": timeout must be > 0");
  if (channel >= (1u << 24)) return invalid_argument(w + ": channel must be < 2^24 (make_tag)");
  if (max_segment_bytes == 0) return invalid_argument(w + ": max_segment_bytes must be >= 1");
  return ok_status();
}

bool overlaps(const std::byte* a, std::size_t na, const std::byte* b, std::size_t nb) noexcept {
  if (na == 0 || nb == 0) return false;
  const auto x = reinterpret_cast<std::uintptr_t>(a), y = reinterpret_cast<std::uintptr_t>(b);
  return x < y + nb && y < x + na;
}

}  // namespace dtrain::net::detail
