// The multi-relay client's fetch loop: relay choice, ranges, hedging, parity standing
// in for failed chunks, bounded retries, the resume file; and fetch() around it.
#include "dtrain/shard/client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <unordered_map>

#include "client_detail.h"
#include "dtrain/crypto/constant_time.h"
#include "dtrain/shard/chunk_hash.h"
#include "dtrain/shard/decoder.h"
#include "dtrain/shard/http.h"
#include "dtrain/shard/layout.h"
#include "dtrain/shard/manifest.h"
#include "dtrain/shard/resume.h"

namespace dtrain::shard {

namespace {

using namespace client_detail;
namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

constexpr std::size_t npos = static_cast<std::size_t>(-1);

// ---- the fetch loop ----------------------------------------------------------------

struct piece {
  std::uint64_t first = 0;
  std::uint64_t length = 0;
  bool done = false;
  std::size_t source = npos;  // relay whose copy was used
  std::size_t copies = 0;     // requests in flight for it
};

enum class phase : std::uint8_t { idle, active, held };

struct chunk_state {
  phase ph = phase::idle;
  std::size_t attempts = 0;           // failed attempts (requests or whole-chunk digest failures)
  std::vector<std::size_t> failed_on; // relays that failed it
  bool pin = false;                   // next time, all ranges from one relay
  std::vector<piece> pieces;
  std::size_t pieces_left = 0;
  std::vector<std::byte> buf;  // from the buffer pool; may be longer than the chunk
  std::size_t len = 0;         // the chunk's length: its bytes are buf[0, len)
  std::span<std::byte> bytes() {
    DTRAIN_ASSERT(len <= buf.size() && "chunk buffer shorter than the chunk");
    return std::span<std::byte>(buf).first(len);
  }
};

struct request_info {
  std::size_t chunk = 0;
  std::size_t piece = 0;
  std::size_t relay = 0;
  steady::time_point t0;
  bool is_hedge = false;
  bool hedged = false;
};

// A chunk whose ranges came from several relays and failed its digest: kept until a good
// copy of the chunk shows which range was wrong.
struct suspect_copy {
  std::vector<piece> pieces;
  std::vector<std::byte> bytes;
};

class fetch_run {
 public:
  fetch_run(const fetch_options& o, http_fetcher& f, manifest_pick mp, fetch_report& rep, relay_scoreboard& board,
            request_timer& timer)
      : o_(o), f_(f), mp_(std::move(mp)), man_(mp_.man), rep_(rep), board_(board), timer_(timer) {}

  status run();

 private:
  std::size_t n_data() const { return man_.chunks.size(); }
  std::size_t stripe_of(std::size_t c) const {
    return c < n_data() ? c / man_.k : (c - n_data()) / man_.m;
  }
  std::string chunk_url(std::size_t r, std::size_t c) const {
    return layout_url(o_.relays[r], layout_chunk_path(man_.version, c));
  }
  std::size_t data_index_at(std::uint64_t offset) const {
    auto it = std::lower_bound(man_.chunks.begin(), man_.chunks.end(), offset,
                               [](const data_chunk_entry& e, std::uint64_t off) { return e.offset < off; });
    return static_cast<std::size_t>(it - man_.chunks.begin());
  }
  std::vector<std::size_t> stripe_members(std::size_t s) const {
    std::vector<std::size_t> v;
    const std::size_t first = s * man_.k;
    const std::size_t count = std::min<std::size_t>(man_.k, n_data() - first);
    for (std::size_t i = 0; i < count; ++i) v.push_back(first + i);
    for (std::size_t j = 0; j < man_.m; ++j) v.push_back(n_data() + s * man_.m + j);
    return v;
  }
  bool stripe_complete(std::size_t s) const {
    const std::size_t first = s * man_.k;
    const std::size_t count = std::min<std::size_t>(man_.k, n_data() - first);
    for (std::size_t i = 0; i < count; ++i)
      if (!dec_->has_chunk(first + i)) return false;
    return true;
  }
  bool chunk_useless(std::size_t c) const {
    if (dec_->has_chunk(c)) return true;
    return man_.m > 0 && c >= n_data() && stripe_complete(stripe_of(c));
  }

  status open_files();
  void load_resume();
  status save_resume(bool durable);
  status finish();
  status on_write(std::uint64_t offset, std::span<const std::byte> bytes);

  void plan();
  std::optional<std::size_t> candidate(std::size_t stripe) const;
  bool fresh_candidate(std::size_t stripe) const;
  void start_chunk(std::size_t c);
  bool start_piece(std::size_t c, std::size_t p, bool hedge, std::optional<std::size_t> avoid_also, std::optional<std::size_t> relay);
  void cancel_chunk(std::size_t c);
  void abandon_chunk(std::size_t c);
  void on_result(http_result& res);
  void piece_failed(std::size_t c, std::size_t p, std::size_t r);
  void complete_chunk(std::size_t c);
  void verify_ready();
  void settle_chunk(std::size_t c, const status& st);
  void blame(std::size_t c, bool keep);
  void after_add();
  void check_suspect(std::size_t c, std::span<const std::byte> good);
  void relay_down(std::size_t r);
  void hedge();
  // Chunk buffers are recycled rather than allocated per chunk: a fresh multi-MiB
  // allocation costs a page fault per 4 KiB on first touch (and on VMs whose host backs
  // guest memory lazily, a host fault as well), more than receiving the bytes.
  std::vector<std::byte> take_buffer(std::size_t len) {
    std::vector<std::byte> b;
    if (!spare_.empty()) {
      b = std::move(spare_.back());
      spare_.pop_back();
    }
    if (b.size() < len) b.resize(len);
    return b;
  }
  void give_buffer(std::vector<std::byte>& b) {
    if (!b.empty() && spare_.size() < 2 * o_.parallel + 4) spare_.push_back(std::move(b));
    b = {};
  }
  void note_failed_on(std::size_t c, std::size_t r) {
    auto& v = chunks_[c].failed_on;
    if (std::find(v.begin(), v.end(), r) == v.end()) v.push_back(r);
  }

  const fetch_options& o_;
  http_fetcher& f_;
  manifest_pick mp_;
  const manifest& man_;
  fetch_report& rep_;
  relay_scoreboard& board_;  // the client's: carried across fetches
  request_timer& timer_;
  std::optional<decoder> dec_;

  fs::path partial_, final_;
  unique_fd fd_;
  mapped_file base_;                    // delta coding: the base version's checkpoint
  chunk_digest manifest_digest_{};
  std::vector<std::uint8_t> written_;   // per data chunk: verified bytes in the file
  std::vector<chunk_state> chunks_;     // per global chunk
  std::unordered_map<std::uint64_t, request_info> reqs_;
  std::vector<std::vector<std::byte>> spare_;  // the buffer pool
  // Chunks whose bytes all arrived, waiting to be verified together (decoder::add_chunks:
  // BLAKE2b hashes four at a time); at most verify_batch_, flushed whenever nothing else
  // is in flight.
  std::vector<std::size_t> ready_;
  std::size_t verify_batch_ = 1;
  std::size_t normal_in_flight_ = 0;
  std::size_t hedges_in_flight_ = 0;
  std::map<std::size_t, suspect_copy> suspects_;
  std::vector<std::size_t> just_written_;
  std::vector<std::size_t> adding_;     // chunks being added (their own writes are not rebuilds)
  std::size_t skip_write_ = npos;       // resume: chunk already in the file
  bool resuming_ = false;
  status write_error_;
  status fail_;
  std::size_t verified_ = 0;
  std::size_t unsaved_ = 0;
  steady::time_point last_save_ = steady::now();
};

status fetch_run::open_files() {
  const std::string v = "v" + std::to_string(man_.version);
  partial_ = o_.out_dir / (v + ".partial");
  final_ = o_.out_dir / v;
  std::error_code ec;
  fs::create_directories(partial_, ec);
  if (ec) return fs_status("create " + partial_.string(), ec);
  DTRAIN_RETURN_IF_ERROR(write_file_atomic(partial_ / "manifest", mp_.bytes, true));
  const fs::path ck = partial_ / "checkpoint";
  fd_.fd = ::open(ck.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_.fd < 0) return errno_status("open " + ck.string(), errno);
  struct stat st {};
  if (::fstat(fd_.fd, &st) != 0) return errno_status("stat " + ck.string(), errno);
  if (static_cast<std::uint64_t>(st.st_size) != man_.total_size &&
      ::ftruncate(fd_.fd, static_cast<off_t>(man_.total_size)) != 0)
    return errno_status("truncate " + ck.string(), errno);
  manifest_digest_ = resume_manifest_digest(mp_.bytes);
  verify_batch_ = hash_chunks_batch(man_.algo);
  written_.assign(n_data(), 0);
  chunks_.assign(man_.total_chunks(), chunk_state{});
  if (man_.delta != delta_codec::none) {
    // Delta-coded chunks decode against the base version's checkpoint, which an earlier
    // fetch left in out_dir (keep_versions keeps it).
    const fs::path base = o_.out_dir / ("v" + std::to_string(man_.delta_base)) / "checkpoint";
    auto mapped = map_file(base);
    if (!mapped.ok()) {
      return failed_precondition("version " + std::to_string(man_.version) + " is delta-coded against version " +
                                 std::to_string(man_.delta_base) + ", which is not in " + o_.out_dir.string() +
                                 " (" + mapped.status().to_string() + "): fetch it first");
    }
    base_ = std::move(mapped).value();
  }
  auto d = decoder::create(
      man_, [this](std::uint64_t off, std::span<const std::byte> b) { return on_write(off, b); }, base_.bytes());
  if (!d.ok()) return d.status();
  dec_.emplace(std::move(d).value());
  // A rebuild reads the stripe's verified chunks back from the file rather than the
  // decoder keeping a copy of each one.
  dec_->set_read_back([this](std::uint64_t off, std::span<std::byte> into) {
    return pread_all(fd_.fd, into, off, "read back " + (partial_ / "checkpoint").string());
  });
  return ok_status();
}

status fetch_run::on_write(std::uint64_t offset, std::span<const std::byte> bytes) {
  const std::size_t i = data_index_at(offset);
  DTRAIN_ASSERT(i < n_data() && man_.chunks[i].offset == offset);
  if (i != skip_write_) {
    status st = pwrite_all(fd_.fd, bytes, offset, "write " + (partial_ / "checkpoint").string());
    if (!st.ok()) {
      write_error_ = st;
      return st;
    }
  }
  written_[i] = 1;
  ++unsaved_;
  // A chunk written while another one was being added came from parity. (A rebuild can
  // also write a chunk that waits later in the same batch: then it counts as fetched.)
  if (!resuming_ && std::find(adding_.begin(), adding_.end(), i) == adding_.end()) ++rep_.chunks_from_parity;
  if (!man_.delta_coded(i)) {
    check_suspect(i, bytes);  // plain chunks: written bytes are the bytes that travel
  } else if (std::find(adding_.begin(), adding_.end(), i) == adding_.end()) {
    suspects_.erase(i);  // rebuilt from parity: its wire bytes are not at hand, no one is named
  }  // (a delta-coded chunk being added settles its suspect with its wire bytes)
  just_written_.push_back(i);
  return ok_status();
}

void fetch_run::load_resume() {
  auto bytes = read_small_file(partial_ / "resume", resume_header_bytes + n_data() / 8 + 1);
  if (!bytes) return;
  auto rs = parse_resume(*bytes);
  if (!rs.ok() || rs->version != man_.version || rs->manifest_digest != manifest_digest_ || rs->done.size() != n_data()) return;
  resuming_ = true;
  std::vector<std::byte> buf;
  for (std::size_t i = 0; i < n_data(); ++i) {
    // A delta-coded chunk is verified on its wire bytes, which the file does not hold:
    // it is fetched again.
    if (rs->done[i] == 0 || dec_->has_chunk(i) || man_.delta_coded(i)) continue;
    buf.resize(static_cast<std::size_t>(man_.chunks[i].length));
    if (!pread_all(fd_.fd, buf, man_.chunks[i].offset, "read partial checkpoint").ok()) continue;
    skip_write_ = i;
    adding_ = {i};
    status st = dec_->add_chunk(i, buf);
    skip_write_ = npos;
    adding_.clear();
    if (st.ok()) rep_.resumed = true;
  }
  resuming_ = false;
  for (std::size_t c = 0; c < chunks_.size(); ++c) {
    if (dec_->has_chunk(c)) chunks_[c].ph = phase::held;
  }
  just_written_.clear();
  unsaved_ = 0;
}

status fetch_run::save_resume(bool durable) {
  resume_state s;
  s.version = man_.version;
  s.manifest_digest = manifest_digest_;
  s.done = written_;
  unsaved_ = 0;
  last_save_ = steady::now();
  return write_file_atomic(partial_ / "resume", encode_resume(s), durable);
}

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
    if (rq.is_hedge) {
      --hedges_in_flight_;
    } else {
      --normal_in_flight_;
    }
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
  if (rq.is_hedge) {
    --hedges_in_flight_;
  } else {
    --normal_in_flight_;
  }
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
      if (loser.is_hedge) {
        --hedges_in_flight_;
      } else {
        --normal_in_flight_;
      }
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
    if (rq.is_hedge) {
      --hedges_in_flight_;
    } else {
      --normal_in_flight_;
    }
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

status fetch_run::finish() {
  if (::fsync(fd_.fd) != 0) return errno_status("fsync checkpoint", errno);
  ::close(fd_.fd);
  fd_.fd = -1;
  std::error_code ec;
  fs::remove(partial_ / "resume", ec);
  DTRAIN_RETURN_IF_ERROR(fsync_path(partial_));
  fs::remove_all(final_, ec);  // a stale or different copy of this version
  if (ec) return fs_status("remove " + final_.string(), ec);
  fs::rename(partial_, final_, ec);
  if (ec) return fs_status("rename " + partial_.string(), ec);
  return fsync_path(o_.out_dir);
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
}  // namespace

result<client> client::create(fetch_options opts) {
  DTRAIN_RETURN_IF_ERROR(check_options(opts, true));
  relay_scoreboard board(opts.relays, opts.seed);
  client c(std::move(opts), std::move(board));
  c.down_since_.resize(c.o_.relays.size());
  return c;
}

result<std::uint64_t> client::latest_version() { return shard::latest_version(o_); }

result<fetch_report> client::fetch(std::optional<std::uint64_t> version) {
  const auto t0 = steady::now();
  // Relays down for long enough get another chance; the others stay out of this fetch.
  // With every relay down there is nothing to lose: all are tried again.
  if (board_.up_count() == 0) {
    for (std::size_t r = 0; r < board_.size(); ++r) {
      board_.revive(r);
      down_since_[r].reset();
    }
  }
  for (std::size_t r = 0; r < board_.size(); ++r) {
    if (board_.up(r)) continue;
    if (!down_since_[r]) down_since_[r] = t0;
    if (t0 - *down_since_[r] >= o_.down_retry_after) {
      board_.revive(r);
      down_since_[r].reset();
    }
  }
  auto f = http_fetcher::create(2 * o_.parallel + o_.relays.size());
  if (!f.ok()) return f.status();
  fetch_report rep;
  auto mp = version ? fetch_manifest(*f, o_, *version, rep.bad_manifests) : find_latest(*f, o_, rep.bad_manifests);
  if (!mp.ok()) return mp.status();
  rep.version = mp->man.version;
  std::error_code ec;
  fs::create_directories(o_.out_dir, ec);
  if (ec) return fs_status("create " + o_.out_dir.string(), ec);

  const fs::path final_dir = o_.out_dir / ("v" + std::to_string(rep.version));
  auto present = read_small_file(final_dir / "manifest", max_manifest_bytes);
  std::error_code size_ec;
  const auto size = fs::file_size(final_dir / "checkpoint", size_ec);
  if (present && *present == mp->bytes && !size_ec && size == mp->man.total_size) {
    rep.already_present = true;
  } else {
    fetch_run run(o_, *f, std::move(mp).value(), rep, board_, timer_);
    status st = run.run();
    for (std::size_t r = 0; r < board_.size(); ++r)
      if (!board_.up(r) && !down_since_[r]) down_since_[r] = steady::now();
    if (!st.ok()) return st;
  }
  rep.relays = board_.scores();
  // stable moves forward only (allow_rollback aside); an older version stays unmarked
  // and nothing is pruned, so the newer stable one is kept.
  const auto current = read_stable(o_.out_dir);
  if (o_.allow_rollback || !current || *current <= rep.version) {
    DTRAIN_RETURN_IF_ERROR(write_stable(o_.out_dir, rep.version));
    prune_output(o_.out_dir, rep.version, o_.keep_versions);
    rep.marked_stable = true;
  }
  rep.seconds = std::chrono::duration<double>(steady::now() - t0).count();
  return rep;
}

result<fetch_report> fetch(const fetch_options& opts, std::optional<std::uint64_t> version) {
  auto c = client::create(opts);
  if (!c.ok()) return c.status();
  return c->fetch(version);
}

}  // namespace dtrain::shard
