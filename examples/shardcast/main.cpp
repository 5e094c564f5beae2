// examples/shardcast: checkpoint distribution during training. A DiLoCo trainer (K
// workers as threads, the tiny GPT) publishes its parameters as a signed, erasure-coded
// checkpoint version after every outer step into an origin directory served by nginx;
// relays (dtrain::shard::relay, each served by its own nginx) mirror it; N peers
// (threads) fetch every version through the relays, check it against the origin's key,
// load the parameters and evaluate the validation loss. Faults on demand: a relay's nginx
// stopped mid-run, a relay serving a corrupted chunk. Guide: docs/shardcast.md.
//
//   dtrain_shardcast                                   # 6 outer steps, 3 peers, 2 relays
//   dtrain_shardcast --kill-relay-at 3 --corrupt-relay # faults; exit 1 if a peer ends wrong
//   dtrain_shardcast --rs 4,2 --peers 4 --outer-steps 10
//   dtrain_shardcast --delta                           # versions 2.. delta-coded against the previous one
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dtrain/core/hash.h"
#include "dtrain/crypto/identity.h"
#include "dtrain/diloco/engine.h"
#include "dtrain/net/transport_inproc.h"
#include "dtrain/optim/outer_sgd.h"
#include "dtrain/shard/client.h"
#include "dtrain/shard/layout.h"
#include "dtrain/shard/manifest.h"
#include "dtrain/shard/origin.h"
#include "dtrain/shard/relay.h"
#include "nginx_util.h"
#include "sim/simulate.h"
#include "testbed/adamw.h"
#include "testbed/corpus.h"
#include "testbed/eval.h"
#include "testbed/tiny_gpt.h"

namespace {

namespace fs = std::filesystem;
namespace sh = dtrain::shard;
using dtrain::status;
using clk = std::chrono::steady_clock;

struct options {
  std::size_t outer_steps = 6;
  std::size_t peers = 3;
  std::size_t relays = 2;
  std::uint64_t kill_relay_at = 0;  // 0: never
  bool corrupt_relay = false;
  std::size_t k = 10, m = 4;
  std::size_t workers = 2;
  std::uint32_t inner_steps = 20;
  std::size_t batch = 8;
  double lr = 3e-3;
  std::uint64_t seed = 0;
  std::uint64_t chunk_size = 16384;
  std::string workdir;
  bool quiet = false;
  bool delta = false;
};

void usage() {
  std::fprintf(stderr,
               "usage: dtrain_shardcast [--outer-steps N] [--peers N] [--relays N] [--kill-relay-at V] [--corrupt-relay]\n"
               "                        [--rs K,M] [--workers K] [--H H] [--batch B] [--lr LR] [--seed S]\n"
               "                        [--chunk-size BYTES] [--workdir DIR] [--quiet] [--delta]\n"
               "  --quiet             print failed peer fetches only, not one line per peer and version\n"
               "  --delta             publish each version delta-coded (XOR + zstd) against the previous one\n"
               "  --kill-relay-at V   stop relay 0's nginx just before version V is published\n"
               "  --corrupt-relay     the last relay serves one data chunk with a flipped byte in every version\n"
               "  --rs K,M            Reed-Solomon data,parity chunks per stripe (0,0: no parity)\n");
}

bool parse(int argc, char** argv, options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--corrupt-relay") { o.corrupt_relay = true; continue; }
    if (k == "--quiet") { o.quiet = true; continue; }
    if (k == "--delta") { o.delta = true; continue; }
    if (k == "--help" || k == "-h" || i + 1 >= argc) { usage(); return false; }
    const std::string v = argv[++i];
    if (k == "--workdir") { o.workdir = v; continue; }
    if (k == "--rs") {
      unsigned a = 0, b = 0;
      char extra = 0;
      if (std::sscanf(v.c_str(), "%u,%u%c", &a, &b, &extra) != 2 || (a == 0) != (b == 0) || a + b > 255) {
        std::fprintf(stderr, "--rs: K,M with K + M <= 255 (0,0 for none)\n");
        return false;
      }
      o.k = a;
      o.m = b;
      continue;
    }
    char* end = nullptr;
    const double num = std::strtod(v.c_str(), &end);
    if (end == v.c_str() || *end != '\0' || !(num >= 0)) {
      std::fprintf(stderr, "%s: a non-negative number expected\n", k.c_str());
      return false;
    }
    if (k == "--outer-steps") o.outer_steps = static_cast<std::size_t>(num);
    else if (k == "--peers") o.peers = static_cast<std::size_t>(num);
    else if (k == "--relays") o.relays = static_cast<std::size_t>(num);
    else if (k == "--kill-relay-at") o.kill_relay_at = static_cast<std::uint64_t>(num);
    else if (k == "--workers") o.workers = static_cast<std::size_t>(num);
    else if (k == "--H") o.inner_steps = static_cast<std::uint32_t>(num);
    else if (k == "--batch") o.batch = static_cast<std::size_t>(num);
    else if (k == "--lr") o.lr = num;
    else if (k == "--seed") o.seed = static_cast<std::uint64_t>(num);
    else if (k == "--chunk-size") o.chunk_size = static_cast<std::uint64_t>(num);
    else { std::fprintf(stderr, "unknown option %s\n", k.c_str()); usage(); return false; }
  }
  if (o.outer_steps == 0 || o.peers == 0 || o.peers > 64 || o.relays == 0 || o.relays > 16 || o.workers == 0 ||
      o.inner_steps == 0 || o.batch == 0 || o.chunk_size == 0) {
    std::fprintf(stderr, "dtrain_shardcast: --outer-steps, --peers (<= 64), --relays (<= 16), --workers, --H, --batch, "
                         "--chunk-size must be >= 1\n");
    return false;
  }
  if ((o.kill_relay_at > 0 || o.corrupt_relay) && o.relays < 2) {
    std::fprintf(stderr, "dtrain_shardcast: --kill-relay-at and --corrupt-relay need --relays >= 2\n");
    return false;
  }
  return true;
}

std::string hash_of(std::span<const float> p) { return dtrain::xxh3_128(std::as_bytes(p)).hex(); }

// Flips one byte of a file in place (the relay's copy of a chunk, after its verified write).
bool flip_byte(const fs::path& p, std::uint64_t offset) {
  const int fd = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  unsigned char b = 0;
  bool ok = ::pread(fd, &b, 1, static_cast<off_t>(offset)) == 1;
  b = static_cast<unsigned char>(b ^ 0x5a);
  ok = ok && ::pwrite(fd, &b, 1, static_cast<off_t>(offset)) == 1;
  ::close(fd);
  return ok;
}

std::vector<std::byte> read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  if (!c.empty()) std::memcpy(out.data(), c.data(), c.size());
  return out;
}

// ---- the trainer: K DiLoCo workers (threads) over the in-process transport -------------

struct worker {
  std::unique_ptr<dtrain::testbed::tiny_gpt> model;
  std::unique_ptr<dtrain::testbed::adamw> inner;
  std::unique_ptr<dtrain::diloco::diloco_engine> engine;
  std::vector<std::uint8_t> tokens;
};

class trainer {
 public:
  static dtrain::result<std::unique_ptr<trainer>> create(const options& o, const dtrain::testbed::data_source& data) {
    auto t = std::unique_ptr<trainer>(new trainer(o, data));
    t->rc_.workers = o.workers;
    t->rc_.batch = o.batch;
    t->rc_.inner_steps = o.inner_steps;
    t->rc_.inner.lr = o.lr;
    t->rc_.seed = o.seed;
    t->rc_.collective = "ring";
    t->mc_ = dtrain::sim::model_config(t->rc_, data);
    t->ws_.resize(o.workers);
    for (std::size_t r = 0; r < o.workers; ++r) {
      worker& w = t->ws_[r];
      auto m = dtrain::testbed::tiny_gpt::create(t->mc_);
      if (!m.ok()) return m.status();
      w.model = std::make_unique<dtrain::testbed::tiny_gpt>(std::move(*m));
      auto a = dtrain::testbed::adamw::create(w.model->param_count(), t->rc_.inner);
      if (!a.ok()) return a.status();
      w.inner = std::make_unique<dtrain::testbed::adamw>(std::move(*a));
      DTRAIN_RETURN_IF_ERROR(w.inner->set_decay_mask(dtrain::testbed::decay_mask(w.model->param_layout())));
      w.tokens.resize(o.batch * data.sequence_length());
      dtrain::diloco::diloco_options dopt;
      dopt.inner_steps = o.inner_steps;
      std::vector<std::span<float>> tensors;
      auto p = w.model->params();
      for (const auto& ti : w.model->param_layout()) tensors.push_back(p.subspan(ti.offset, ti.size()));
      dtrain::net::transport& tr = t->fabric_.endpoint(static_cast<dtrain::net::rank_t>(r));
      const dtrain::sim::run_config& rc = t->rc_;
      auto e = dtrain::diloco::diloco_engine::create(
          std::move(tensors),
          [&rc, &tr](std::size_t count, std::uint32_t channel) {
            return dtrain::sim::make_averager(rc, tr, count, channel, nullptr);
          },
          dopt, dtrain::diloco::sgd_factory(dtrain::optim::sgd_options::diloco()));
      if (!e.ok()) return e.status();
      w.engine = std::move(*e);
    }
    return t;
  }

  // H inner steps on every worker, ending with the engine's outer step (all workers then
  // hold the same parameters).
  status outer_step() {
    std::mutex mu;
    status first;
    auto body = [&](std::size_t r) {
      worker& w = ws_[r];
      for (std::uint32_t h = 0; h < rc_.inner_steps; ++h) {
        const std::uint64_t s = step_ + h;
        status st = data_.train_batch(rc_.seed, r, s, w.tokens);
        if (st.ok()) {
          auto loss = w.model->forward_backward(w.tokens, rc_.batch);
          if (!loss.ok()) st = loss.status();
        }
        if (st.ok()) st = w.inner->step(w.model->params(), w.model->grads());
        if (st.ok()) st = w.engine->after_inner_step();
        if (!st.ok()) {
          std::lock_guard lock(mu);
          if (first.ok()) first = st;
          for (std::size_t i = 0; i < ws_.size(); ++i) fabric_.endpoint(static_cast<dtrain::net::rank_t>(i)).abort();
          return;
        }
      }
    };
    std::vector<std::thread> ts;
    for (std::size_t r = 1; r < ws_.size(); ++r) ts.emplace_back(body, r);
    body(0);
    for (auto& t : ts) t.join();
    step_ += rc_.inner_steps;
    return first;
  }

  dtrain::testbed::tiny_gpt& model() { return *ws_[0].model; }
  const dtrain::testbed::gpt_config& model_config() const { return mc_; }

 private:
  trainer(const options& o, const dtrain::testbed::data_source& data) : data_(data), fabric_(o.workers) {}
  const dtrain::testbed::data_source& data_;
  dtrain::net::inproc_fabric fabric_;
  dtrain::sim::run_config rc_;
  dtrain::testbed::gpt_config mc_;
  std::vector<worker> ws_;
  std::uint64_t step_ = 0;
};

// ---- shared state between the trainer (main thread), relays and peers ------------------

struct peer_line {
  bool ok = false;
  std::string error;
  std::uint64_t bytes = 0;
  double seconds = 0;
  std::size_t from_parity = 0;
  std::vector<std::uint64_t> bad_per_relay;
  std::size_t hedged = 0, retries = 0;
  double loss = 0;
  bool match = false;
};

struct board {
  std::mutex mu;
  std::condition_variable cv;
  std::uint64_t announced = 0;                 // peers may fetch versions <= this
  bool stop = false;
  std::map<std::uint64_t, std::string> expected_hash;  // version -> trainer's parameter hash
  std::vector<std::uint64_t> relay_version;    // each relay's latest after its last sync
  std::vector<std::map<std::uint64_t, peer_line>> lines;  // per peer: version -> outcome
  std::vector<std::string> relay_events;       // corruption notes, sync errors
};

// A peer: for every announced version, fetch it through the relays (retrying while the
// relays catch up), open the manifest against the origin's key, load the tensors by name
// into its own model, compare the parameter hash with the trainer's, evaluate.
void peer_main(std::size_t id, const options& o, board& b, const std::vector<std::string>& relay_urls,
               const dtrain::crypto::peer_id& origin, const fs::path& out_dir, const dtrain::testbed::gpt_config& mc,
               const dtrain::testbed::data_source& data) {
  auto m = dtrain::testbed::tiny_gpt::create(mc);
  // One client for the whole run: what it learns about the relays (speed, a dead one)
  // carries over from version to version.
  sh::fetch_options fo;
  fo.relays = relay_urls;
  fo.trusted_origins = {origin};
  fo.out_dir = out_dir;
  fo.keep_versions = 2;  // the previous version stays: the base of a delta-coded one
  fo.request_timeout = std::chrono::milliseconds(5000);
  fo.connect_timeout = std::chrono::milliseconds(1000);
  fo.seed = id * 1000;
  auto cl = sh::client::create(fo);
  if (!cl.ok()) {
    std::fprintf(stderr, "peer %zu: %s\n", id, cl.status().to_string().c_str());
    return;
  }
  std::vector<std::uint64_t> bad_before(relay_urls.size(), 0);
  for (std::uint64_t v = 1; v <= o.outer_steps; ++v) {
    {
      std::unique_lock lock(b.mu);
      b.cv.wait(lock, [&] { return b.stop || b.announced >= v; });
      if (b.stop && b.announced < v) return;
    }
    peer_line line;
    const auto t0 = clk::now();
    dtrain::result<sh::fetch_report> r = dtrain::unavailable("not tried");
    for (int attempt = 0; attempt < 20; ++attempt) {
      r = cl->fetch(v);
      if (r.ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    line.seconds = std::chrono::duration<double>(clk::now() - t0).count();
    if (!r.ok()) {
      line.error = "fetch: " + r.status().to_string();
    } else {
      line.bytes = r->bytes_downloaded;
      line.from_parity = r->chunks_from_parity;
      line.hedged = r->hedged;
      line.retries = r->retries;
      for (std::size_t i = 0; i < r->relays.size(); ++i) {  // the client's counts are cumulative
        line.bad_per_relay.push_back(r->relays[i].bad_chunks - bad_before[i]);
        bad_before[i] = r->relays[i].bad_chunks;
      }
      const fs::path vdir = out_dir / ("v" + std::to_string(v));
      auto man = sh::open_manifest(read_all(vdir / "manifest"), std::span(&origin, 1));
      const auto ckpt = read_all(vdir / "checkpoint");
      if (!m.ok()) line.error = "model: " + m.status().to_string();
      else if (!man.ok()) line.error = "manifest: " + man.status().to_string();
      else if (ckpt.size() != m->param_count() * sizeof(float)) line.error = "checkpoint size differs from the model";
      else {
        // Load by name: every tensor of the model must be in the manifest, at its place.
        auto params = m->params();
        const auto layout = m->param_layout();
        std::size_t loaded = 0;
        for (const auto& te : man->tensors) {
          const auto it = std::find_if(layout.begin(), layout.end(), [&](const auto& ti) { return ti.name == te.name; });
          if (it == layout.end() || te.size != it->size() * sizeof(float) || te.dtype != "f32" ||
              te.offset + te.size > ckpt.size()) {
            line.error = "manifest tensor '" + te.name + "' does not fit the model";
            break;
          }
          std::memcpy(params.data() + it->offset, ckpt.data() + te.offset, te.size);
          ++loaded;
        }
        if (line.error.empty() && loaded != layout.size()) line.error = "manifest lacks some tensors";
        if (line.error.empty()) {
          std::string want;
          {
            std::lock_guard lock(b.mu);
            want = b.expected_hash[v];
          }
          line.match = hash_of(m->params()) == want;
          auto l = dtrain::testbed::eval_loss(*m, data);
          line.loss = l.ok() ? static_cast<double>(*l) : -1;
          line.ok = line.match;
          if (!line.match) line.error = "parameters differ from the trainer's";
        }
      }
    }
    std::lock_guard lock(b.mu);
    b.lines[id][v] = std::move(line);
    b.cv.notify_all();
  }
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  if (!parse(argc, argv, o)) return 2;

  auto data = dtrain::testbed::open_source("", 32);
  if (!data.ok()) {
    std::fprintf(stderr, "data: %s\n", data.status().to_string().c_str());
    return 1;
  }
  auto tr = trainer::create(o, **data);
  if (!tr.ok()) {
    std::fprintf(stderr, "trainer: %s\n", tr.status().to_string().c_str());
    return 1;
  }

  // Directories: <work>/origin, <work>/relay<i>, <work>/peer<i>.
  fs::path work = o.workdir;
  const bool own_work = work.empty();
  if (own_work) {
    std::string t = (fs::temp_directory_path() / "dtrain-shardcast-XXXXXX").string();
    if (::mkdtemp(t.data()) == nullptr) {
      std::fprintf(stderr, "mkdtemp failed\n");
      return 1;
    }
    work = t;
  }
  std::error_code ec;
  fs::create_directories(work, ec);
  struct cleanup {
    fs::path p;
    bool on;
    ~cleanup() {
      std::error_code e;
      if (on) fs::remove_all(p, e);
    }
  } clean{work, own_work};

  const auto origin_key = dtrain::crypto::identity::generate();
  sh::encode_options enc;
  enc.chunk_size = o.chunk_size;
  enc.algo = sh::hash_algo::blake2b_256;
  enc.k = o.k;
  enc.m = o.m;
  sh::publisher_options po{.root = work / "origin", .origin = origin_key, .keep_versions = 3, .encoding = enc};
  po.delta_from_previous = o.delta;
  auto pub = sh::publisher::create(po);
  if (!pub.ok()) {
    std::fprintf(stderr, "publisher: %s\n", pub.status().to_string().c_str());
    return 1;
  }
  auto origin_srv = dtrain::test::nginx_server::start(po.root);
  if (!origin_srv.ok()) {
    std::fprintf(stderr, "origin nginx: %s\n", origin_srv.status().to_string().c_str());
    return 1;
  }

  board b;
  b.relay_version.assign(o.relays, 0);
  b.lines.resize(o.peers);
  std::vector<dtrain::test::nginx_server> relay_srv;
  std::vector<std::string> relay_urls;
  std::vector<std::jthread> relay_threads;
  const std::size_t corrupt_idx = o.relays - 1;
  for (std::size_t i = 0; i < o.relays; ++i) {
    const fs::path root = work / ("relay" + std::to_string(i));
    sh::relay_options ro;
    ro.upstream_url = origin_srv->url();
    ro.root = root;
    ro.trusted_origins = {origin_key.id()};
    ro.keep_versions = 3;
    ro.timeout = std::chrono::milliseconds(5000);
    ro.on_sync = [&b, &o, &origin_key, i, root, corrupt_idx](const dtrain::result<sh::relay_sync_report>& r) {
      if (!r.ok()) {
        // "nothing published yet" before the first version is normal.
        if (r.status().code() != dtrain::status_code::unavailable) {
          std::lock_guard lock(b.mu);
          b.relay_events.push_back("relay " + std::to_string(i) + " sync: " + r.status().to_string());
        }
        return;
      }
      if (!r->updated) return;
      std::string note;
      if (o.corrupt_relay && i == corrupt_idx) {
        // After the relay verified and wrote the version: flip a byte of one data chunk.
        const fs::path vdir = root / ("v" + std::to_string(r->version));
        auto man = sh::open_manifest(read_all(vdir / "manifest"), std::span(&origin_key.id(), 1));
        if (man.ok() && !man->chunks.empty()) {
          const std::size_t c = static_cast<std::size_t>(r->version * 7 % man->chunks.size());
          const bool flipped = flip_byte(vdir / "chunk" / std::to_string(c), man->chunk_length(c) / 2);
          note = "relay " + std::to_string(i) + (flipped ? " now serves a corrupted chunk " : " could not corrupt chunk ") +
                 std::to_string(c) + " of version " + std::to_string(r->version);
        }
      }
      std::lock_guard lock(b.mu);
      if (!note.empty()) b.relay_events.push_back(note);
      b.relay_version[i] = r->version;
      b.cv.notify_all();
    };
    auto rel = sh::relay::create(std::move(ro));
    if (!rel.ok()) {
      std::fprintf(stderr, "relay %zu: %s\n", i, rel.status().to_string().c_str());
      return 1;
    }
    auto srv = dtrain::test::nginx_server::start(root);
    if (!srv.ok()) {
      std::fprintf(stderr, "relay %zu nginx: %s\n", i, srv.status().to_string().c_str());
      return 1;
    }
    relay_urls.push_back(srv->url());
    relay_srv.push_back(std::move(*srv));
    relay_threads.emplace_back(
        [r = std::make_shared<sh::relay>(std::move(*rel))](std::stop_token st) {
          (void)r->run(st, std::chrono::milliseconds(20));
        });
  }

  std::printf("dtrain shardcast: DiLoCo tiny GPT (%zu params, %zu workers, H=%u) publishing at every outer step\n",
              (*tr)->model().param_count(), o.workers, o.inner_steps);
  std::printf("origin %s; relays", origin_srv->url().c_str());
  for (const auto& u : relay_urls) std::printf(" %s", u.c_str());
  std::printf("; %zu peers; RS(%zu,%zu), chunks of %" PRIu64 " B, BLAKE2b; origin key %s\n", o.peers, o.k, o.m,
              o.chunk_size, origin_key.id().short_hex().c_str());
  if (o.corrupt_relay) std::printf("fault: relay %zu serves one corrupted data chunk per version\n", corrupt_idx);
  if (o.kill_relay_at) std::printf("fault: relay 0's nginx stops before version %" PRIu64 "\n", o.kill_relay_at);

  std::vector<std::thread> peers;
  for (std::size_t p = 0; p < o.peers; ++p)
    peers.emplace_back(peer_main, p, std::cref(o), std::ref(b), std::cref(relay_urls), std::cref(origin_key.id()),
                       work / ("peer" + std::to_string(p)), (*tr)->model_config(), std::cref(**data));

  int exit_code = 0;
  std::size_t printed_events = 0;
  auto print_events = [&] {
    std::lock_guard lock(b.mu);
    for (; printed_events < b.relay_events.size(); ++printed_events)
      std::printf("  [%s]\n", b.relay_events[printed_events].c_str());
  };
  auto eval_model = dtrain::testbed::tiny_gpt::create((*tr)->model_config());
  const auto t_start = clk::now();
  for (std::uint64_t v = 1; v <= o.outer_steps && exit_code == 0; ++v) {
    if (auto st = (*tr)->outer_step(); !st.ok()) {
      std::fprintf(stderr, "training: %s\n", st.to_string().c_str());
      exit_code = 1;
      break;
    }
    if (v == o.kill_relay_at) {
      relay_srv[0].stop();
      std::printf("  [relay 0's nginx stopped: %s refuses connections]\n", relay_urls[0].c_str());
    }
    // Publish the parameters as named f32 tensors.
    auto& model = (*tr)->model();
    std::vector<sh::tensor_desc> tensors;
    for (const auto& ti : model.param_layout())
      tensors.push_back(sh::make_tensor(ti.name, dtrain::dtype::f32, {ti.rows, ti.cols}));
    {
      std::lock_guard lock(b.mu);
      b.expected_hash[v] = hash_of(model.params());
    }
    const auto tp = clk::now();
    auto pv = pub->publish_tensors(tensors, std::as_bytes(model.params()), v);
    const double pub_s = std::chrono::duration<double>(clk::now() - tp).count();
    if (!pv.ok()) {
      std::fprintf(stderr, "publish: %s\n", pv.status().to_string().c_str());
      exit_code = 1;
      break;
    }
    float trainer_loss = -1;
    if (eval_model.ok()) {
      std::copy(model.params().begin(), model.params().end(), eval_model->params().begin());
      auto l = dtrain::testbed::eval_loss(*eval_model, **data);
      if (l.ok()) trainer_loss = *l;
    }
    // Wait for every relay to mirror it, then let the peers fetch it and wait for them.
    {
      std::unique_lock lock(b.mu);
      const bool mirrored = b.cv.wait_for(lock, std::chrono::seconds(30), [&] {
        return std::all_of(b.relay_version.begin(), b.relay_version.end(), [&](std::uint64_t x) { return x >= v; });
      });
      if (!mirrored) b.relay_events.push_back("a relay did not mirror version " + std::to_string(v) + " in 30 s");
      b.announced = v;
      b.cv.notify_all();
    }
    print_events();
    std::printf("version %" PRIu64 ": trainer step %" PRIu64 ", val loss %.4f, published in %.3f s\n", v,
                v * o.inner_steps, static_cast<double>(trainer_loss), pub_s);
    {
      std::unique_lock lock(b.mu);
      b.cv.wait(lock, [&] {
        return std::all_of(b.lines.begin(), b.lines.end(), [&](const auto& m) { return m.count(v) > 0; });
      });
    }
    for (std::size_t p = 0; p < o.peers; ++p) {
      std::lock_guard lock(b.mu);
      const peer_line& l = b.lines[p][v];
      if (!l.ok) {
        std::printf("  peer %zu v%" PRIu64 ": FAILED after %.3f s: %s\n", p, v, l.seconds, l.error.c_str());
        continue;
      }
      if (o.quiet) continue;
      std::string bad;
      for (std::size_t r = 0; r < l.bad_per_relay.size(); ++r)
        bad += (r ? "/" : "") + std::to_string(l.bad_per_relay[r]);
      std::printf("  peer %zu v%" PRIu64 ": %" PRIu64 " B in %.3f s, %zu chunks from parity, bad chunks per relay %s, "
                  "%zu retries, %zu hedged, val loss %.4f, params %s\n",
                  p, v, l.bytes, l.seconds, l.from_parity, bad.c_str(), l.retries, l.hedged, l.loss,
                  l.match ? "match" : "DIFFER");
    }
    std::fflush(stdout);
  }
  {
    std::lock_guard lock(b.mu);
    b.stop = true;
    b.cv.notify_all();
  }
  for (auto& t : peers) t.join();
  relay_threads.clear();  // request stop and join
  print_events();

  // Verdict: every peer must hold every version, with the trainer's parameters.
  std::size_t good = 0, total = 0, bad_chunks = 0, from_parity = 0;
  for (const auto& pl : b.lines)
    for (const auto& [v, l] : pl) {
      ++total;
      good += l.ok ? 1 : 0;
      from_parity += l.from_parity;
      for (auto x : l.bad_per_relay) bad_chunks += x;
    }
  const std::size_t want = o.peers * o.outer_steps;
  const bool all_good = exit_code == 0 && good == want && total == want;
  std::printf("%s: %zu of %zu (peer, version) fetches ended with the trainer's parameters; %zu bad chunks detected, "
              "%zu data chunks rebuilt from parity; %.1f s\n",
              all_good ? "OK" : "FAILED", good, want, bad_chunks, from_parity,
              std::chrono::duration<double>(clk::now() - t_start).count());
  return all_good ? 0 : 1;
}
