// examples/diloco_sim: K workers (threads) train the tiny GPT with DDP, with DiLoCo, and
// with DiLoCo under chosen codecs, collectives and topologies, at equal compute. A live
// progress line shows ETA, loss and bytes; a table closes the run.
//
//   dtrain_diloco_sim                                  # the default line-up (a few minutes)
//   dtrain_diloco_sim --runs "ddp;diloco;diloco:codec=fp4;diloco:collective=gossip,topology=ring"
//   dtrain_diloco_sim --workers 8 --steps 2000 --H 100 --text FILE
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

#include "sim/simulate.h"
#include "testbed/corpus.h"

namespace {

using dtrain::sim::run_config;

const char* kDefaultRuns =
    "ddp;"
    "diloco;"
    "diloco:label=fedavg,outer_lr=1,momentum=0;"
    "diloco:codec=minmax:bits=8;"
    "diloco:codec=fp4;"
    "diloco:label=sparseloco,collective=sparse,codec=topk:chunk=4096:k=32:values=q2,ef=0.95,outer_lr=1,momentum=0;"
    "diloco:collective=gossip,topology=one_peer_exponential";

void usage() {
  std::fprintf(stderr,
               "usage: dtrain_diloco_sim [--workers K] [--steps N] [--batch B] [--H H] [--lr LR] [--seed S]\n"
               "                         [--pretrain N] [--final-lr FRACTION] [--eval-every N] [--text FILE] [--runs SPECS]\n"
               "SPECS: runs separated by ';', each 'ddp' or 'diloco' with optional ':key=value,...'\n"
               "  keys: label, codec (':' inside a codec spec stands for ','), collective\n"
               "  (ring|butterfly|sparse|gossip|push_sum|noloco), topology, H, outer_lr, momentum,\n"
               "  ef (beta; enables error feedback), fragments, overlap, alpha, lr (inner peak), steps\n"
               "default: %s\n",
               kDefaultRuns);
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const std::size_t end = s.find(sep, start);
    const std::string_view piece = s.substr(start, end == std::string_view::npos ? s.size() - start : end - start);
    if (!piece.empty()) out.emplace_back(piece);
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

bool parse_double(const std::string& v, double& out) {
  char* end = nullptr;
  out = std::strtod(v.c_str(), &end);
  return end != v.c_str() && *end == '\0' && std::isfinite(out);
}

// "diloco:codec=fp4,H=100" -> config; false with a message on a bad spec.
bool parse_run(const std::string& spec, const run_config& base, run_config& c, std::string& err) {
  c = base;
  const auto colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  if (kind == "ddp") c.method = dtrain::sim::method::ddp;
  else if (kind == "diloco") c.method = dtrain::sim::method::diloco;
  else { err = "unknown method '" + kind + "'"; return false; }
  std::string label = kind;
  if (colon != std::string::npos) {
    for (const auto& kv : split(std::string_view(spec).substr(colon + 1), ',')) {
      const auto eq = kv.find('=');
      if (eq == std::string::npos) { err = "expected key=value in '" + kv + "'"; return false; }
      const std::string key = kv.substr(0, eq);
      std::string val = kv.substr(eq + 1);
      double d = 0;
      auto num = [&](double lo, double hi) {
        if (!parse_double(val, d) || d < lo || d > hi) { err = "bad value for " + key + ": '" + val + "'"; return false; }
        return true;
      };
      if (key == "label") { c.label = val; continue; }
      if (key == "codec") {
        // Codec specs use ',' and ':' themselves: "topk:chunk=4096:k=64" -> "topk:chunk=4096,k=64".
        const auto first = val.find(':');
        if (first != std::string::npos)
          for (std::size_t i = first + 1; i < val.size(); ++i)
            if (val[i] == ':') val[i] = ',';
        c.codec = val;
      } else if (key == "collective") c.collective = val;
      else if (key == "topology") c.topology = val;
      else if (key == "H") { if (!num(1, 1e6)) return false; c.inner_steps = static_cast<std::uint32_t>(d); }
      else if (key == "outer_lr") { if (!num(0, 100)) return false; c.outer_lr = d; }
      else if (key == "momentum") { if (!num(0, 1)) return false; c.outer_momentum = d; }
      else if (key == "ef") { if (!num(0, 1)) return false; c.error_feedback = true; c.ef_beta = static_cast<float>(d); }
      else if (key == "fragments") { if (!num(1, 1e4)) return false; c.fragments = static_cast<std::uint32_t>(d); }
      else if (key == "overlap") { if (!num(0, 1e6)) return false; c.overlap_steps = static_cast<std::uint32_t>(d); }
      else if (key == "lr") { if (!num(0, 10)) return false; c.inner.lr = d; }
      else if (key == "steps") { if (!num(1, 1e9)) return false; c.steps = static_cast<std::size_t>(d); }
      else if (key == "alpha") { if (!num(0, 1)) return false; c.merge_alpha = static_cast<float>(d); }
      else { err = "unknown key '" + key + "'"; return false; }
      if (key != "label") label += " " + key + "=" + val;
    }
  }
  if (c.label.empty() || c.label == base.label) c.label = label;
  return true;
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) { b /= 1000; ++u; }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", b, units[u]);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  run_config base;
  // Defaults as bench/compare (docs/compare.md): DDP and DiLoCo share the inner settings
  // and start from one pretrained checkpoint.
  base.steps = 600;
  base.batch = 16;
  base.inner_steps = 50;
  base.inner.lr = 5e-3;
  base.pretrain_steps = 1000;
  std::string runs = kDefaultRuns, text;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&](double lo, double hi, double& out) {
      if (i + 1 >= argc || !parse_double(argv[i + 1], out) || out < lo || out > hi) {
        std::fprintf(stderr, "bad or missing value for %s\n", a.c_str());
        std::exit(2);
      }
      ++i;
    };
    double d = 0;
    if (a == "--workers") { next(1, 256, d); base.workers = static_cast<std::size_t>(d); }
    else if (a == "--steps") { next(1, 1e9, d); base.steps = static_cast<std::size_t>(d); }
    else if (a == "--batch") { next(1, 1024, d); base.batch = static_cast<std::size_t>(d); }
    else if (a == "--H") { next(1, 1e6, d); base.inner_steps = static_cast<std::uint32_t>(d); }
    else if (a == "--lr") { next(0, 10, d); base.inner.lr = d; }
    else if (a == "--seed") { next(0, 1e15, d); base.seed = static_cast<std::uint64_t>(d); }
    else if (a == "--final-lr") { next(0, 1, d); base.final_lr_fraction = d; }
    else if (a == "--pretrain") { next(0, 1e9, d); base.pretrain_steps = static_cast<std::size_t>(d); }
    else if (a == "--eval-every") { next(1, 1e9, d); base.eval_every = static_cast<std::size_t>(d); }
    else if (a == "--text" && i + 1 < argc) text = argv[++i];
    else if (a == "--runs" && i + 1 < argc) runs = argv[++i];
    else if (a == "--help" || a == "-h") { usage(); return 0; }
    else { std::fprintf(stderr, "unknown argument %s\n", a.c_str()); usage(); return 2; }
  }
  base.eval_every = std::min(base.eval_every, base.steps);

  auto data = dtrain::testbed::open_source(text, base.model.context);
  if (!data.ok()) {
    std::fprintf(stderr, "data: %s\n", data.status().to_string().c_str());
    return 1;
  }
  const auto floor = (*data)->validation_floor();
  std::vector<run_config> configs;
  for (const auto& spec : split(runs, ';')) {
    run_config c;
    std::string err;
    if (!parse_run(spec, base, c, err)) {
      std::fprintf(stderr, "run '%s': %s\n", spec.c_str(), err.c_str());
      return 2;
    }
    configs.push_back(c);
  }
  std::printf("dtrain diloco_sim: %zu workers x %zu steps x batch %zu (after %zu pretraining steps), H=%u, tiny GPT on %s\n",
              base.workers, base.steps, base.batch, base.pretrain_steps, base.inner_steps,
              text.empty() ? "the synthetic language" : text.c_str());
  if (floor) std::printf("loss floor on the validation set (the true distribution's loss): %.4f nats/char\n", *floor);

  std::vector<float> checkpoint;
  if (base.pretrain_steps > 0) {
    std::fprintf(stderr, "pretraining one worker for %zu steps (the shared starting checkpoint)...\n",
                 base.pretrain_steps);
    auto p = dtrain::sim::pretrain(base, **data);
    if (!p.ok()) {
      std::fprintf(stderr, "pretraining failed: %s\n", p.status().to_string().c_str());
      return 1;
    }
    checkpoint = std::move(*p);
    for (auto& c : configs) c.initial_params = checkpoint;
  }
  const bool tty = isatty(fileno(stderr)) != 0;
  struct row {
    std::string label;
    double loss, bytes, seconds;
    std::string evaluated;
  };
  std::vector<row> rows;
  for (std::size_t i = 0; i < configs.size(); ++i) {
    const run_config& c = configs[i];
    auto progress = [&](const run_config& rc, const dtrain::sim::point& p) {
      const double frac = static_cast<double>(p.step) / static_cast<double>(rc.steps);
      const double eta = frac > 0 ? p.seconds * (1 - frac) / frac : 0;
      const int width = 24, filled = static_cast<int>(frac * width);
      std::string bar(static_cast<std::size_t>(filled), '#');
      bar.resize(width, '.');
      std::fprintf(stderr, "%s[%zu/%zu] %-28.28s [%s] %3.0f%% step %zu loss %.4f sent %s ETA %.0fs%s",
                   tty ? "\r\033[K" : "", i + 1, configs.size(), rc.label.c_str(), bar.c_str(), 100 * frac, p.step,
                   p.val_loss, human_bytes(p.bytes_per_worker).c_str(), eta, tty ? "" : "\n");
      std::fflush(stderr);
    };
    auto r = dtrain::sim::run(c, **data, progress);
    if (tty) std::fprintf(stderr, "\n");
    if (!r.ok()) {
      std::fprintf(stderr, "run '%s' failed: %s\n", c.label.c_str(), r.status().to_string().c_str());
      return 1;
    }
    rows.push_back({c.label, r->final_loss, r->bytes_per_worker, r->seconds, r->evaluated});
  }

  double ddp_bytes = 0;
  for (std::size_t i = 0; i < configs.size(); ++i)
    if (configs[i].method == dtrain::sim::method::ddp) ddp_bytes = rows[i].bytes;
  std::printf("\n| run | val loss | above floor | sent per worker | vs DDP | time | evaluated |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const auto& r : rows) {
    char gap[32] = "-", ratio[32] = "-";
    if (floor) std::snprintf(gap, sizeof gap, "%.4f", r.loss - *floor);
    if (ddp_bytes > 0 && r.bytes > 0) std::snprintf(ratio, sizeof ratio, "%.0fx less", ddp_bytes / r.bytes);
    std::printf("| %s | %.4f | %s | %s | %s | %.1f s | %s |\n", r.label.c_str(), r.loss, gap,
                human_bytes(r.bytes).c_str(), ratio, r.seconds, r.evaluated.c_str());
  }
  return 0;
}
