// lib/shard/fetch_run.h: one fetch of one version by the multi-relay client: the state
// (chunks, pieces, requests in flight, the buffer pool, the batch waiting for
// verification) and the steps. fetch_run.cpp holds the request loop (relay choice,
// ranges, hedging, parity standing in, verification and blame); fetch_files.cpp the
// partial file, the resume file and the final rename; client.cpp the public client
// around it. Not installed. Rules: docs/shard.md "Distribution: the client".
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "client_detail.h"
#include "dtrain/core/status.h"
#include "dtrain/shard/client.h"
#include "dtrain/shard/decoder.h"
#include "dtrain/shard/http.h"
#include "dtrain/shard/layout.h"
#include "dtrain/shard/manifest.h"
#include "dtrain/shard/relay_scoring.h"

namespace dtrain::shard::client_detail {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

inline constexpr std::size_t npos = static_cast<std::size_t>(-1);

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
  // A request left reqs_ (completed, cancelled or dropped): one fewer in flight.
  void request_done(const request_info& rq) { --(rq.is_hedge ? hedges_in_flight_ : normal_in_flight_); }
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

}  // namespace dtrain::shard::client_detail
