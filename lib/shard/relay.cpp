// relay.cpp: mirror an upstream root: latest -> manifest (opened, signature checked) ->
// every chunk (verified before it is written; one upstream keeps failing to deliver is rebuilt from
// its stripe's parity and verified the same way) -> rename -> latest -> prune.
#include "dtrain/shard/relay.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <thread>
#include <unordered_map>
#include <utility>

#include "client_detail.h"
#include "dtrain/crypto/constant_time.h"
#include "dtrain/shard/chunk_hash.h"
#include "dtrain/shard/chunker.h"
#include "dtrain/shard/erasure.h"
#include "dtrain/shard/layout.h"
#include "dtrain/shard/manifest.h"

namespace dtrain::shard {

namespace fs = std::filesystem;

struct relay::state {
  relay_options opts;
  http_fetcher fetcher;
  std::uint64_t latest = 0;
};

relay::relay(std::unique_ptr<state> s) noexcept : s_(std::move(s)) {}
relay::relay(relay&&) noexcept = default;
relay& relay::operator=(relay&&) noexcept = default;
relay::~relay() = default;

std::uint64_t relay::latest() const noexcept { return s_ ? s_->latest : 0; }
const fs::path& relay::root() const noexcept {
  DTRAIN_ASSERT(s_ && "use of a moved-from relay");
  return s_->opts.root;
}

result<relay> relay::create(relay_options opts) {
  if (opts.upstream_url.empty()) return invalid_argument("relay: empty upstream_url");
  if (opts.root.empty()) return invalid_argument("relay: empty root");
  if (opts.keep_versions == 0 || opts.parallel == 0 || opts.chunk_attempts == 0) {
    return invalid_argument("relay: keep_versions, parallel and chunk_attempts must be >= 1");
  }
  std::error_code ec;
  fs::create_directories(opts.root, ec);
  if (ec) return unavailable("relay: create " + opts.root.string() + ": " + ec.message());
  DTRAIN_RETURN_IF_ERROR(remove_stale_temps(opts.root));
  auto latest = read_latest(opts.root);
  if (!latest.ok()) return std::move(latest).status();
  auto fetcher = http_fetcher::create(opts.parallel);
  if (!fetcher.ok()) return std::move(fetcher).status();
  auto s = std::make_unique<state>(state{std::move(opts), std::move(fetcher).value(), *latest});
  return relay(std::move(s));
}

namespace {

status with_context(const status& st, const std::string& what) {
  return {st.code(), what + ": " + st.message()};
}

// Cancels every request still out and collects them, so the fetcher is clean for the
// next sync.
void drain(http_fetcher& f, const std::unordered_map<std::uint64_t, std::size_t>& out) {
  for (const auto& [id, idx] : out) f.cancel(id);
  while (f.in_flight() > 0) (void)f.poll(std::chrono::milliseconds(100));
}

// Reads exactly dst.size() bytes of file p (a chunk this sync verified and wrote), with
// the shard layer's own file helpers (client_detail.h). A short or unreadable file is
// unavailable: a local filesystem problem, not bad bytes from upstream.
status read_exact(const fs::path& p, std::span<std::byte> dst) {
  const client_detail::unique_fd f(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (f.fd < 0) return client_detail::errno_status("open " + p.string(), errno);
  status st = client_detail::pread_all(f.fd, dst, 0, "read " + p.string());
  if (!st.ok()) return unavailable(st.message());
  return st;
}

// A chunk whose chunk_attempts all failed, waiting to be rebuilt from parity.
struct lost_chunk {
  std::size_t index = 0;  // global
  status why;             // its last failure, with the chunk and URL named
};

std::size_t stripe_of(const stripe_layout& l, std::size_t i) noexcept {
  return i < l.data_chunks ? i / l.k : (i - l.data_chunks) / l.m;
}

// Rebuilds the lost chunks of stripe s (sorted by index; at most m of them) from the
// first k others, which this sync has verified and written to chunk_dir, and writes
// each rebuilt chunk through w once its length, zero padding and digest match the
// manifest. Memory: one stripe, (k + m) x the stripe length. A short stripe's data
// chunks past the end are the all-zero chunks the code assumes (never lost, never read).
// Errors: data_loss naming the first rebuilt chunk that fails its check (the origin
// signed parity inconsistent with its data); unavailable when a written chunk cannot be
// read back or the rebuilt one cannot be written.
status rebuild_stripe(const manifest& man, const stripe_layout& l, const rs_code& code, std::size_t s,
                      std::span<const lost_chunk> lost, const fs::path& chunk_dir, version_writer& w) {
  const std::size_t k = l.k;
  const std::size_t m = l.m;
  const std::size_t first = l.stripe_first(s);
  const std::size_t count = l.stripe_data_count(s);
  const auto len = static_cast<std::size_t>(l.stripe_length[s]);
  DTRAIN_ASSERT(!lost.empty() && lost.size() <= m);
  // Stripe-local index r: data r < k (r >= count: a virtual zero chunk), parity k + j.
  const auto global = [&](std::size_t r) { return r < k ? first + r : l.parity_index(s, r - k); };
  const auto local = [&](std::size_t i) { return i < l.data_chunks ? i - first : k + (i - l.parity_index(s, 0)); };
  std::vector<char> is_lost(k + m, 0);
  for (const lost_chunk& c : lost) {
    DTRAIN_ASSERT(local(c.index) < k + m && global(local(c.index)) == c.index);
    is_lost[local(c.index)] = 1;
  }

  std::vector<std::byte> buf((k + m) * len, std::byte{0});  // one zero-padded slot per chunk
  const auto slot = [&](std::size_t r) { return std::span<std::byte>(buf).subspan(r * len, len); };
  std::vector<std::size_t> present;
  std::vector<std::span<const std::byte>> in;
  present.reserve(k);
  in.reserve(k);
  for (std::size_t r = 0; r < k + m && present.size() < k; ++r) {
    if (is_lost[r] != 0) continue;
    if (r < count || r >= k) {  // a real chunk; a virtual one's slot is already zero
      const std::size_t g = global(r);
      DTRAIN_RETURN_IF_ERROR(read_exact(chunk_dir / std::to_string(g),
                                        slot(r).first(static_cast<std::size_t>(man.chunk_length(g)))));
    }
    present.push_back(r);
    in.push_back(slot(r));
  }
  DTRAIN_ASSERT(present.size() == k);  // at most m of the k + m are lost

  std::vector<std::size_t> missing_data;
  std::vector<std::span<std::byte>> out;
  bool parity_lost = false;
  for (std::size_t r = 0; r < k + m; ++r) {
    if (is_lost[r] == 0) continue;
    if (r >= k) {
      parity_lost = true;
      continue;
    }
    missing_data.push_back(r);
    out.push_back(slot(r));
  }
  if (!missing_data.empty()) DTRAIN_RETURN_IF_ERROR(code.reconstruct(present, in, missing_data, out));
  if (parity_lost) {
    // Every data slot now holds its chunk: the present ones were read, the lost ones
    // rebuilt (all non-lost data chunks come before any parity in `present`). Encoding
    // writes all m parity slots; only the lost ones are used below.
    std::vector<std::span<const std::byte>> data;
    std::vector<std::span<std::byte>> parity;
    for (std::size_t r = 0; r < k; ++r) data.push_back(slot(r));
    for (std::size_t j = 0; j < m; ++j) parity.push_back(slot(k + j));
    DTRAIN_RETURN_IF_ERROR(code.encode(data, parity));
  }

  // Verify every rebuilt chunk before writing any: real length, zero padding, digest.
  for (const lost_chunk& c : lost) {
    const std::size_t r = local(c.index);
    const auto real = static_cast<std::size_t>(man.chunk_length(c.index));
    const std::span<const std::byte> bytes = slot(r).first(real);
    const bool pad_zero = std::all_of(slot(r).begin() + static_cast<std::ptrdiff_t>(real), slot(r).end(),
                                      [](std::byte b) { return b == std::byte{0}; });
    if (!pad_zero || !crypto::constant_time_equal(hash_chunk(man.algo, bytes), man.digest(c.index))) {
      return data_loss(c.why.message() + "; rebuilt from stripe " + std::to_string(s) +
                       "'s other chunks it " + (pad_zero ? "fails its digest" : "has non-zero padding") +
                       " (the manifest's parity is inconsistent with its data)");
    }
  }
  for (const lost_chunk& c : lost) {
    const auto real = static_cast<std::size_t>(man.chunk_length(c.index));
    DTRAIN_RETURN_IF_ERROR(w.write_chunk(c.index, slot(local(c.index)).first(real)));
  }
  return ok_status();
}

}  // namespace

result<relay_sync_report> relay::sync_once() {
  DTRAIN_ASSERT(s_ && "use of a moved-from relay");
  state& s = *s_;
  relay_sync_report rep;
  rep.version = s.latest;

  http_request lreq;
  lreq.url = layout_url(s.opts.upstream_url, layout_latest_path());
  lreq.timeout = s.opts.timeout;
  lreq.max_bytes = 32;
  auto lres = s.fetcher.get(std::move(lreq));
  if (!lres.ok()) return std::move(lres).status();
  if (!lres->st.ok()) return with_context(lres->st, "relay: upstream latest");
  auto up = parse_latest(lres->body);
  if (!up.ok()) return with_context(up.status(), "relay: upstream latest");
  rep.upstream_version = *up;
  if (*up <= s.latest) return rep;
  const std::uint64_t version = *up;
  const std::string vname = "v" + std::to_string(version);

  http_request mreq;
  mreq.url = layout_url(s.opts.upstream_url, layout_manifest_path(version));
  mreq.timeout = s.opts.timeout;
  mreq.max_bytes = s.opts.max_manifest_bytes;
  auto mres = s.fetcher.get(std::move(mreq));
  if (!mres.ok()) return std::move(mres).status();
  if (!mres->st.ok()) return with_context(mres->st, "relay: manifest of " + vname);
  const std::vector<std::byte> manifest_bytes = std::move(mres->body);
  auto man = open_manifest(manifest_bytes, s.opts.trusted_origins);
  if (!man.ok()) return with_context(man.status(), "relay: manifest of " + vname);
  if (man->version != version) {
    return data_loss("relay: upstream " + vname + "/manifest states version " + std::to_string(man->version));
  }

  // A directory left by a crash between rename and `latest` is not trusted blindly:
  // nothing points at it, so it is removed and mirrored again.
  {
    std::error_code ec;
    fs::remove_all(s.opts.root / vname, ec);
    if (ec) return unavailable("relay: remove stale " + vname + ": " + ec.message());
  }
  auto w = version_writer::begin(s.opts.root, version);
  if (!w.ok()) return std::move(w).status();

  // With parity (m > 0) a chunk that keeps failing is rebuilt from its stripe after the
  // fetches; the sync fails early only once a stripe has lost more than m chunks.
  auto layout = manifest_stripes(*man);
  if (!layout.ok()) return with_context(layout.status(), "relay: manifest of " + vname);
  const bool coded = layout->m > 0;
  std::vector<lost_chunk> lost;
  std::vector<std::size_t> stripe_lost(layout->stripes(), 0);
  std::vector<char> stripe_bad_bytes(layout->stripes(), 0);  // a lost chunk was data_loss, not a transfer error

  const std::size_t n = man->total_chunks();
  std::deque<std::size_t> todo;
  for (std::size_t i = 0; i < n; ++i) todo.push_back(i);
  std::vector<std::size_t> attempts(n, 0);
  std::unordered_map<std::uint64_t, std::size_t> out;  // request id -> chunk
  status failure;

  while (failure.ok() && (!todo.empty() || !out.empty())) {
    while (out.size() < s.opts.parallel && !todo.empty()) {
      const std::size_t i = todo.front();
      todo.pop_front();
      http_request r;
      r.url = layout_url(s.opts.upstream_url, layout_chunk_path(version, i));
      r.timeout = s.opts.timeout;
      r.max_bytes = man->chunk_length(i);  // a longer body is data_loss while it arrives
      out.emplace(s.fetcher.start(std::move(r)), i);
    }
    for (http_result& r : s.fetcher.poll(std::chrono::milliseconds(200))) {
      const auto it = out.find(r.id);
      if (it == out.end()) continue;
      const std::size_t i = it->second;
      out.erase(it);
      if (!failure.ok()) continue;
      const std::string what = "relay: chunk " + std::to_string(i) + " of " + vname + " from " +
                               layout_url(s.opts.upstream_url, layout_chunk_path(version, i));
      status st = r.st;
      if (st.ok()) {
        if (r.body.size() != man->chunk_length(i)) {
          st = data_loss("length " + std::to_string(r.body.size()) + ", manifest says " +
                         std::to_string(man->chunk_length(i)));
          ++rep.bad_chunks;
        } else if (hash_chunk(man->algo, r.body) != man->digest(i)) {
          st = data_loss("digest mismatch");
          ++rep.bad_chunks;
        }
      } else if (st.code() == status_code::data_loss) {
        ++rep.bad_chunks;  // too long: a bad chunk too
      }
      if (st.ok()) {
        status ws = w->write_chunk(i, r.body);
        if (!ws.ok()) {
          failure = with_context(ws, what);
          continue;
        }
        ++rep.chunks_fetched;
        rep.bytes_fetched += r.body.size();
        continue;
      }
      if (++attempts[i] >= s.opts.chunk_attempts) {
        status why = with_context(st, what + " (after " + std::to_string(attempts[i]) + " attempts)");
        if (!coded) {
          failure = std::move(why);
          continue;
        }
        const std::size_t si = stripe_of(*layout, i);
        if (st.code() == status_code::data_loss) stripe_bad_bytes[si] = 1;
        lost.push_back({i, why});
        if (++stripe_lost[si] > layout->m) {
          std::string which;
          for (const lost_chunk& c : lost)
            if (stripe_of(*layout, c.index) == si) which += (which.empty() ? "" : ", ") + std::to_string(c.index);
          // Bad bytes upstream are data_loss; lost only to transfers, the transfer's error
          // (unavailable, deadline_exceeded, ...) says that a later sync may succeed.
          failure = status(stripe_bad_bytes[si] != 0 ? status_code::data_loss : why.code(),
                           why.message() + "; stripe " + std::to_string(si) + " cannot be rebuilt: chunks " + which +
                               " failed, more than its " + std::to_string(layout->m) + " parity chunks");
        }
        continue;
      }
      ++rep.retries;
      todo.push_back(i);
    }
  }
  if (!failure.ok()) {
    drain(s.fetcher, out);
    return failure;  // w's destructor removes the temp directory
  }

  if (!lost.empty()) {
    auto code = rs_code::create(layout->k, layout->m);
    if (!code.ok()) return with_context(code.status(), "relay: manifest of " + vname);
    std::sort(lost.begin(), lost.end(), [&](const lost_chunk& a, const lost_chunk& b) {
      const std::size_t sa = stripe_of(*layout, a.index);
      const std::size_t sb = stripe_of(*layout, b.index);
      return sa != sb ? sa < sb : a.index < b.index;
    });
    for (std::size_t b = 0; b < lost.size();) {
      const std::size_t si = stripe_of(*layout, lost[b].index);
      std::size_t e = b;
      while (e < lost.size() && stripe_of(*layout, lost[e].index) == si) ++e;
      const std::span<const lost_chunk> group(lost.data() + b, e - b);
      status st = rebuild_stripe(*man, *layout, *code, si, group, w->temp_dir() / "chunk", *w);
      if (!st.ok()) {
        if (st.code() == status_code::data_loss) return st;  // names the chunk already
        return with_context(st, "relay: rebuilding stripe " + std::to_string(si) + " of " + vname);
      }
      rep.chunks_rebuilt += group.size();
      b = e;
    }
  }

  DTRAIN_RETURN_IF_ERROR(w->write_manifest(manifest_bytes));
  DTRAIN_RETURN_IF_ERROR(w->commit());
  DTRAIN_RETURN_IF_ERROR(write_latest(s.opts.root, version));
  s.latest = version;
  rep.version = version;
  rep.updated = true;
  auto pruned = prune_versions(s.opts.root, s.opts.keep_versions, version);
  if (!pruned.ok()) return std::move(pruned).status();
  rep.pruned = std::move(pruned).value();
  return rep;
}

status relay::run(std::stop_token stop, std::chrono::milliseconds poll_interval) {
  DTRAIN_ASSERT(s_ && "use of a moved-from relay");
  while (!stop.stop_requested()) {
    auto r = sync_once();
    if (s_->opts.on_sync) s_->opts.on_sync(r);
    const auto until = std::chrono::steady_clock::now() + poll_interval;
    while (!stop.stop_requested() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
          std::chrono::milliseconds(50), until - std::chrono::steady_clock::now()));
    }
  }
  return ok_status();
}

}  // namespace dtrain::shard
