// relay.cpp: mirror an upstream root: latest -> manifest (opened, signature checked) ->
// every chunk (verified before it is written) -> rename -> latest -> prune.
#include "dtrain/shard/relay.h"

#include <algorithm>
#include <deque>
#include <thread>
#include <unordered_map>
#include <utility>

#include "dtrain/shard/chunk_hash.h"
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
        failure = with_context(st, what + " (after " + std::to_string(attempts[i]) + " attempts)");
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
