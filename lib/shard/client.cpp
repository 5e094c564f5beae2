// The public multi-relay client: shard::client (relay memory across fetches, the
// forward-only stable marker) and fetch(); one fetch is a fetch_run (fetch_run.h).
#include "dtrain/shard/client.h"

#include <utility>

#include "client_detail.h"
#include "fetch_run.h"

namespace dtrain::shard {

using namespace client_detail;

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
  // `latest` and the manifest are asked of the relays that are up (revived above when
  // none was); only if none of them has a valid manifest are the down ones asked too.
  fetch_options ask = o_;
  ask.relays.clear();
  for (std::size_t r = 0; r < board_.size(); ++r)
    if (board_.up(r)) ask.relays.push_back(o_.relays[r]);
  auto find = [&](const fetch_options& which) {
    return version ? fetch_manifest(*f, which, *version, rep.bad_manifests) : find_latest(*f, which, rep.bad_manifests);
  };
  auto mp = find(ask);
  if (!mp.ok() && ask.relays.size() < o_.relays.size()) {
    mp = find(o_);
    if (mp.ok()) {  // a relay held down answered: all of them get their chance again
      for (std::size_t r = 0; r < board_.size(); ++r) {
        board_.revive(r);
        down_since_[r].reset();
      }
    }
  }
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
