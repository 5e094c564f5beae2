// The multi-relay client's request loop (fetch_run.h): relay choice, ranges, hedging,
// parity standing in for failed chunks, bounded retries, batch verification and blame.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "dtrain/crypto/constant_time.h"
#include "dtrain/shard/chunk_hash.h"
#include "dtrain/shard/layout.h"
#include "dtrain/shard/resume.h"
#include "fetch_run.h"

namespace dtrain::shard::client_detail {

std::optional<std::size_t> fetch_run::candidate(std::size_t stripe) const {
  std::optional<std::size_t> best;
  std::size_t best_attempts = 0;
  auto consider = [&](std::size_t c) {
    const auto& cs = chunks_[c];
    if (cs.ph != phase::idle || dec_->has_chunk(c) || cs.attempts >= o_.max_attempts_per_chunk) return;
    if (!best || cs.attempts < best_attempts) {
      best = c;
      best_attempts = cs.attempts;
    }
  };
  for (std::size_t c : stripe_members(stripe)) consider(c);  // data first, then parity
  return best;
}

bool fetch_run::fresh_candidate(std::size_t stripe) const {
  for (std::size_t c : stripe_members(stripe)) {
    if (chunks_[c].ph == phase::idle && !dec_->has_chunk(c) && chunks_[c].attempts == 0) return true;
  }
  return false;
}

void fetch_run::plan() {
  // Drop requests for chunks that are no longer needed (rebuilt, or a completed stripe's parity).
  std::vector<std::size_t> useless;
  for (const auto& [id, rq] : reqs_) {
    if (chunk_useless(rq.chunk)) useless.push_back(rq.chunk);
  }
  for (std::size_t c : useless) {
    cancel_chunk(c);
    chunks_[c].ph = dec_->has_chunk(c) ? phase::held : phase::idle;
  }
  if (dec_->complete()) return;
  const auto missing = dec_->missing_chunks();
  if (man_.m == 0) {
    for (std::size_t c : missing) {
      if (normal_in_flight_ >= o_.parallel) return;
      auto& cs = chunks_[c];
      if (cs.ph != phase::idle) continue;
      if (cs.attempts >= o_.max_attempts_per_chunk) {
        fail_ = data_loss("chunk " + std::to_string(c) + " failed " + std::to_string(cs.attempts) +
                          " times and there is no parity");
        return;
      }
      start_chunk(c);
      if (!fail_.ok()) return;
    }
    return;
  }
  std::size_t i = 0;
  while (i < missing.size() && normal_in_flight_ < o_.parallel) {
    const std::size_t s = missing[i] / man_.k;
    std::size_t need = 0;
    while (i < missing.size() && missing[i] / man_.k == s) {
      ++need;
      ++i;
    }
    std::size_t active = 0;
    for (std::size_t c : stripe_members(s)) {
      if (chunks_[c].ph == phase::active) ++active;
    }
    while (active < need && normal_in_flight_ < o_.parallel) {
      auto c = candidate(s);
      if (!c) {
        if (active == 0) {
          fail_ = data_loss("stripe " + std::to_string(s) + ": too few chunks could be fetched to rebuild it (" +
                            std::to_string(o_.max_attempts_per_chunk) + " attempts per chunk)");
        }
        break;
      }
      start_chunk(*c);
      if (!fail_.ok()) return;
      ++active;
    }
    if (!fail_.ok()) return;
  }
}

void fetch_run::start_chunk(std::size_t c) {
  auto& cs = chunks_[c];
  const std::uint64_t len = man_.chunk_length(c);
  cs.ph = phase::active;
  cs.pieces.clear();
  give_buffer(cs.buf);
  cs.buf = take_buffer(static_cast<std::size_t>(len));
  cs.len = static_cast<std::size_t>(len);
  if (len > o_.split_bytes) {
    for (std::uint64_t off = 0; off < len; off += o_.split_bytes) cs.pieces.push_back({off, std::min(o_.split_bytes, len - off)});
  } else {
    cs.pieces.push_back({0, len});
  }
  cs.pieces_left = cs.pieces.size();
  std::optional<std::size_t> pinned;
  if (cs.pin) {
    pinned = board_.pick(cs.failed_on);
    cs.pin = false;
  }
  for (std::size_t p = 0; p < cs.pieces.size(); ++p) {
    if (!start_piece(c, p, false, std::nullopt, pinned)) return;
  }
}

bool fetch_run::start_piece(std::size_t c, std::size_t p, bool hedge, std::optional<std::size_t> avoid_also,
                            std::optional<std::size_t> relay) {
  auto& cs = chunks_[c];
  std::optional<std::size_t> r = relay;
  if (r && !board_.up(*r)) r.reset();
  if (!r) {
    std::vector<std::size_t> avoid = cs.failed_on;
    if (avoid_also) avoid.push_back(*avoid_also);
    r = board_.pick(avoid);
    if (!r && !hedge) r = board_.pick(avoid_also ? std::span<const std::size_t>(&*avoid_also, 1) : std::span<const std::size_t>());
  }
  if (!r) {
    if (!hedge) fail_ = unavailable("every relay is down");
    return false;
  }
  const auto& pc = cs.pieces[p];
  http_request q = make_request(o_, chunk_url(*r, c), pc.length);
  if (cs.pieces.size() > 1) q.range = byte_range{pc.first, pc.length};
  // The first copy of a piece writes straight into the chunk buffer. A hedge gets a body
  // of its own: two copies writing into the same bytes could leave the loser's bytes
  // after the winner's (at most one non-hedge copy of a piece is in flight at a time).
  if (!hedge) {
    q.into = cs.bytes().subspan(static_cast<std::size_t>(pc.first), static_cast<std::size_t>(pc.length));
  }
  const auto id = f_.start(std::move(q));
  board_.on_start(*r);
  reqs_.emplace(id, request_info{c, p, *r, steady::now(), hedge, false});
  ++cs.pieces[p].copies;
  if (hedge) {
    ++hedges_in_flight_;
  } else {
    ++normal_in_flight_;
  }
  return true;
}

void fetch_run::cancel_chunk(std::size_t c) {
  std::vector<std::uint64_t> ids;
  for (const auto& [id, rq] : reqs_) {
    if (rq.chunk == c) ids.push_back(id);
  }
  for (auto id : ids) {
    const auto& rq = reqs_.at(id);
    request_done(rq);
    f_.cancel(id);
    reqs_.erase(id);
  }
  ready_.erase(std::remove(ready_.begin(), ready_.end(), c), ready_.end());
  auto& cs = chunks_[c];
  cs.pieces.clear();
  cs.pieces_left = 0;
  give_buffer(cs.buf);  // no request writes into it any more: all were cancelled above
}

void fetch_run::abandon_chunk(std::size_t c) {
  cancel_chunk(c);
  chunks_[c].ph = dec_->has_chunk(c) ? phase::held : phase::idle;
}

void fetch_run::on_result(http_result& res) {
  auto it = reqs_.find(res.id);
  if (it == reqs_.end()) return;  // cancelled by us, or a late manifest/latest answer
  const request_info rq = it->second;
  reqs_.erase(it);
  request_done(rq);
  auto& cs = chunks_[rq.chunk];
  const bool live = cs.ph == phase::active && rq.piece < cs.pieces.size();
  if (live) --cs.pieces[rq.piece].copies;
  if (res.st.ok() && live && res.body_size != cs.pieces[rq.piece].length) {
    // A whole-chunk request answered with a shorter body (a longer one stops at the buffer).
    res.st = data_loss(chunk_url(rq.relay, rq.chunk) + ": " + std::to_string(res.body_size) + " bytes for a chunk of " +
                       std::to_string(cs.pieces[rq.piece].length));
  }
  if (res.st.ok()) {
    rep_.bytes_downloaded += res.body_size;
    board_.on_success(rq.relay, res.body_size, res.seconds);
    timer_.record(res.body_size, res.seconds);
    if (!live || cs.pieces[rq.piece].done) return;
    auto& pc = cs.pieces[rq.piece];
    if (rq.is_hedge) {  // a hedge's body is its own (start_piece); the original wrote in place
      std::memcpy(cs.buf.data() + pc.first, res.body.data(), res.body.size());
    }
    pc.done = true;
    pc.source = rq.relay;
    --cs.pieces_left;
    // The first copy wins: cancel the other copies of this piece.
    std::vector<std::uint64_t> dup;
    for (const auto& [id, other] : reqs_) {
      if (other.chunk == rq.chunk && other.piece == rq.piece) dup.push_back(id);
    }
    const auto now = steady::now();
    for (auto id : dup) {
      const auto& loser = reqs_.at(id);
      // The original lost to its hedge: score what it managed (a relay that never answers
      // must lose its optimistic prior). A hedge that lost had just started: no sample.
      if (!loser.is_hedge) board_.on_lost_race(loser.relay, pc.length, std::chrono::duration<double>(now - loser.t0).count());
      request_done(loser);
      reqs_.erase(id);
      f_.cancel(id);
      --pc.copies;
    }
    if (cs.pieces_left == 0) complete_chunk(rq.chunk);
    return;
  }
  if (res.st.code() == status_code::cancelled) return;
  ++rep_.retries;
  board_.on_failure(rq.relay);
  if (res.st.code() == status_code::data_loss) {  // longer body or wrong range length: the relay misbehaves
    board_.add_bad_chunk(rq.relay);
    rep_.bad_chunks.emplace_back(o_.relays[rq.relay], rq.chunk);
  }
  // Refused or reset: the relay is down. Its other requests are dropped at once and
  // their chunks replaced (parity from other relays), without waiting for timeouts.
  if (res.http_status == 0 && res.st.code() == status_code::unavailable) relay_down(rq.relay);
  if (live && cs.ph == phase::active && rq.piece < cs.pieces.size() && !cs.pieces[rq.piece].done &&
      cs.pieces[rq.piece].copies == 0)
    piece_failed(rq.chunk, rq.piece, rq.relay);
}

void fetch_run::piece_failed(std::size_t c, std::size_t p, std::size_t r) {
  auto& cs = chunks_[c];
  ++cs.attempts;
  note_failed_on(c, r);
  const bool replace = man_.m > 0 && fresh_candidate(stripe_of(c));
  if (cs.pieces.size() == 1 || replace || cs.attempts >= o_.max_attempts_per_chunk) {
    // A single request, or a stripe with an untried chunk: let plan() pick the next
    // chunk (parity stands in at once; no waiting on this one).
    abandon_chunk(c);
    return;
  }
  start_piece(c, p, false, std::nullopt, std::nullopt);
}

void fetch_run::relay_down(std::size_t r) {
  if (!board_.up(r)) return;
  board_.mark_down(r);
  std::vector<std::uint64_t> ids;
  for (const auto& [id, rq] : reqs_) {
    if (rq.relay == r) ids.push_back(id);
  }
  for (auto id : ids) {
    auto it = reqs_.find(id);
    if (it == reqs_.end()) continue;  // gone with an abandoned chunk
    const request_info rq = it->second;
    reqs_.erase(it);
    f_.cancel(id);
    request_done(rq);
    auto& cs = chunks_[rq.chunk];
    if (cs.ph != phase::active || rq.piece >= cs.pieces.size()) continue;
    --cs.pieces[rq.piece].copies;
    ++rep_.retries;
    if (!cs.pieces[rq.piece].done && cs.pieces[rq.piece].copies == 0) piece_failed(rq.chunk, rq.piece, r);
  }
}

void fetch_run::complete_chunk(std::size_t c) {
  ready_.push_back(c);
  if (ready_.size() >= verify_batch_) verify_ready();
}

void fetch_run::verify_ready() {
  if (ready_.empty()) return;
  std::vector<std::size_t> batch;
  batch.swap(ready_);
  std::vector<decoder::chunk_input> in;
  in.reserve(batch.size());
  for (std::size_t c : batch) in.push_back({c, chunks_[c].bytes()});
  adding_ = batch;
  const std::vector<status> st = dec_->add_chunks(in);
  if (!write_error_.ok()) {
    adding_.clear();
    fail_ = write_error_;
    return;
  }
  // adding_ stays set while settling: after_add must not cancel the batch's own chunks
  // (their writes are in just_written_ too); each is settled below.
  for (std::size_t i = 0; i < batch.size() && fail_.ok(); ++i) settle_chunk(batch[i], st[i]);
  adding_.clear();
}

// The outcome of adding chunk c, whose bytes are in its buffer.
void fetch_run::settle_chunk(std::size_t c, const status& st) {
  auto& cs = chunks_[c];
  // Settling an earlier chunk of the batch may have rebuilt this one from parity and
  // cancelled it (after_add): nothing left to do.
  if (cs.ph != phase::active) return;
  if (st.ok()) {
    check_suspect(c, cs.bytes());  // the bytes as they travel: settles an earlier bad copy's blame
    cs.ph = phase::held;
    cs.pieces.clear();
    give_buffer(cs.buf);
    ++verified_;
    after_add();
    return;
  }
  if (st.code() == status_code::data_loss && dec_->has_chunk(c)) {
    // Held, yet data_loss: either this copy verified and its stripe's parity then
    // rebuilt a bad chunk (the origin's fault; the decoder now asks for that stripe's
    // data chunks), or parity had already rebuilt the chunk earlier in this batch and
    // this copy failed its digest (its relay's fault). The copy's own digest tells.
    const auto b = cs.bytes();
    const bool bad_copy =
        b.size() != man_.chunk_length(c) || !crypto::constant_time_equal(hash_chunk(man_.algo, b), man_.digest(c));
    if (bad_copy) {
      ++rep_.retries;
      blame(c, false);
    }
    cs.ph = phase::held;
    cs.pieces.clear();
    give_buffer(cs.buf);
    after_add();
    return;
  }
  if (st.code() != status_code::data_loss) {
    fail_ = st;
    return;
  }
  // A digest mismatch: blame the relay that sent it, fetch it elsewhere or replace it.
  ++rep_.retries;
  ++cs.attempts;
  blame(c, true);
  cs.pieces.clear();
  give_buffer(cs.buf);
  cs.ph = phase::idle;
}

// Chunk c's copy failed its digest. One source: that relay is blamed. Several (ranges):
// each takes a failure sample; with `keep`, the bad bytes are kept and the chunk is
// fetched again from one relay, and when a good copy arrives the ranges that differ name
// the liars (check_suspect). Without `keep` (the chunk is already held) no one is named.
void fetch_run::blame(std::size_t c, bool keep) {
  auto& cs = chunks_[c];
  std::vector<std::size_t> sources;
  for (const auto& pc : cs.pieces) {
    if (std::find(sources.begin(), sources.end(), pc.source) == sources.end()) sources.push_back(pc.source);
  }
  if (sources.size() == 1) {
    board_.on_bad_chunk(sources[0]);
    rep_.bad_chunks.emplace_back(o_.relays[sources[0]], c);
    note_failed_on(c, sources[0]);
  } else {
    for (std::size_t r : sources) board_.on_suspect(r);
    if (!keep) return;
    const auto b = cs.bytes();
    suspects_[c] = suspect_copy{cs.pieces, std::vector<std::byte>(b.begin(), b.end())};
    cs.pin = true;
  }
}

void fetch_run::after_add() {
  for (std::size_t i : just_written_) {
    if (std::find(adding_.begin(), adding_.end(), i) != adding_.end()) continue;  // settled by verify_ready
    if (chunks_[i].ph == phase::active) cancel_chunk(i);
    chunks_[i].ph = phase::held;
  }
  just_written_.clear();
}

void fetch_run::check_suspect(std::size_t c, std::span<const std::byte> good) {
  auto it = suspects_.find(c);
  if (it == suspects_.end()) return;
  for (const auto& pc : it->second.pieces) {
    const auto a = good.subspan(static_cast<std::size_t>(pc.first), static_cast<std::size_t>(pc.length));
    const auto b = std::span<const std::byte>(it->second.bytes).subspan(static_cast<std::size_t>(pc.first),
                                                                         static_cast<std::size_t>(pc.length));
    if (!std::equal(a.begin(), a.end(), b.begin())) {
      board_.add_bad_chunk(pc.source);
      rep_.bad_chunks.emplace_back(o_.relays[pc.source], c);
    }
  }
  suspects_.erase(it);
}

void fetch_run::hedge() {
  if (o_.hedge_factor <= 0 || board_.up_count() < 2) return;
  const auto now = steady::now();
  const double min_s = std::chrono::duration<double>(o_.hedge_min).count();
  std::vector<std::uint64_t> slow;
  for (const auto& [id, rq] : reqs_) {
    if (rq.is_hedge || rq.hedged) continue;
    const auto& cs = chunks_[rq.chunk];
    if (cs.ph != phase::active || cs.pieces[rq.piece].copies > 1) continue;
    const double waited = std::chrono::duration<double>(now - rq.t0).count();
    if (waited > timer_.hedge_after(cs.pieces[rq.piece].length, o_.hedge_factor, min_s)) slow.push_back(id);
  }
  for (auto id : slow) {
    if (hedges_in_flight_ >= o_.parallel) return;
    auto it = reqs_.find(id);
    if (it == reqs_.end()) continue;
    it->second.hedged = true;
    const request_info rq = it->second;
    if (start_piece(rq.chunk, rq.piece, true, rq.relay, std::nullopt)) ++rep_.hedged;
  }
}


status fetch_run::run() {
  DTRAIN_RETURN_IF_ERROR(open_files());
  load_resume();
  while (fail_.ok() && !dec_->complete()) {
    if ((o_.should_stop && o_.should_stop()) || (o_.stop_after_chunks && verified_ >= *o_.stop_after_chunks)) {
      fail_ = make_status(status_code::cancelled, "fetch stopped after " + std::to_string(verified_) + " chunks");
      break;
    }
    plan();
    if (!fail_.ok() || dec_->complete()) break;
    if (reqs_.empty() && !ready_.empty()) {  // nothing else to wait for: verify what is here
      verify_ready();
      continue;
    }
    if (reqs_.empty()) {
      fail_ = board_.up_count() == 0 ? unavailable("every relay is down")
                                     : data_loss("no chunk left to try (every candidate failed its attempts)");
      break;
    }
    auto results = f_.poll(std::chrono::milliseconds(20));
    for (auto& res : results) {
      if (!fail_.ok()) break;
      on_result(res);
    }
    if (fail_.ok() && reqs_.empty()) verify_ready();
    hedge();
    if (fail_.ok() && (unsaved_ >= 64 || (unsaved_ > 0 && steady::now() - last_save_ > std::chrono::seconds(1)))) {
      (void)save_resume(false);  // best effort: a lost resume file only costs re-downloading
    }
  }
  for (const auto& p : reqs_) f_.cancel(p.first);
  reqs_.clear();
  // Stopped on request: keep what already arrived (verified, written, in the resume file).
  if (fail_.code() == status_code::cancelled) {
    status stop = std::exchange(fail_, ok_status());
    verify_ready();
    if (fail_.ok()) fail_ = std::move(stop);
  }
  if (!fail_.ok()) {
    if (fd_.fd >= 0) (void)save_resume(true);
    return fail_;
  }
  return finish();
}

}  // namespace dtrain::shard::client_detail
