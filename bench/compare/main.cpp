// bench/compare: sweeps codec x topology x H on the tiny-GPT testbed, several seeds
// each, at equal compute; writes CSV and JSON, draws loss-vs-bytes and loss-vs-step
// plots with gnuplot (SVG), and checks the published qualitative results of DiLoCo and
// its compressors (docs/compare.md).
//
//   dtrain_compare [--out DIR] [--seeds N] [--steps N] [--workers K] [--pretrain N] [--quick]
//                  [--only GROUP,...] [--tune]
//                  [--grid-codecs "c1;c2" --grid-topologies t1,t2 --grid-H h1,h2]   (full cross product)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "sim/simulate.h"
#include "testbed/corpus.h"

namespace {

using dtrain::sim::method;
using dtrain::sim::run_config;

struct group {
  std::string name;   // short id used in files and claims
  std::string title;  // legend text
  std::string axis;   // which sweep it belongs to: headline, codec, topology, H
  run_config config;
};

struct stats {
  double mean = 0, sd = 0;
  std::size_t n = 0;
};

stats summarize(const std::vector<double>& v) {
  stats s;
  s.n = v.size();
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  if (v.size() > 1) {
    double q = 0;
    for (double x : v) q += (x - s.mean) * (x - s.mean);
    s.sd = std::sqrt(q / static_cast<double>(v.size() - 1));
  }
  return s;
}

// Paired comparison over seeds (every group of a seed starts from the same checkpoint
// and sees the same data): d_s = a_s - b_s. The noise band is twice the standard error
// of the mean difference, floored at `tol` nats so that a near-deterministic pair is not
// held to a zero-width band.
struct paired {
  double diff = 0, band = 0;
};
paired compare_paired(const std::vector<double>& a, const std::vector<double>& b, double tol) {
  std::vector<double> d;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) d.push_back(a[i] - b[i]);
  const stats s = summarize(d);
  paired p;
  p.diff = s.mean;
  p.band = std::max(s.n > 1 ? 2 * s.sd / std::sqrt(static_cast<double>(s.n)) : 0.0, tol);
  return p;
}

// Inner learning rates, tuned per method with --tune (docs/compare.md): DDP's batch is K
// times larger, so it takes a larger rate.
constexpr double kDdpLr = 5e-3;
constexpr double kDilocoLr = 5e-3;

// --tune: both methods over a grid of inner rates, one seed each.
std::vector<group> tuning_groups(const run_config& base) {
  std::vector<group> g;
  for (double lr : {2e-3, 3e-3, 5e-3, 1e-2}) {
    for (auto m : {method::ddp, method::diloco}) {
      run_config c = base;
      c.method = m;
      c.inner.lr = lr;
      char name[64];
      std::snprintf(name, sizeof name, "%s_lr%g", m == method::ddp ? "ddp" : "diloco", lr);
      c.label = name;
      g.push_back({name, name, "tune", c});
    }
  }
  return g;
}

std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const std::size_t end = s.find(sep, start);
    std::string piece = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!piece.empty()) out.push_back(piece);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

// --grid: the full cross product of codecs x topologies x H values, DiLoCo with Nesterov.
// "complete" uses the ring all-reduce; every other topology gossips (neighbor_average).
// The codec list is ';'-separated because codec specs contain ','.
std::vector<group> grid_groups(const run_config& base, const std::string& codecs, const std::string& topologies,
                               const std::string& hs) {
  std::vector<group> g;
  for (const auto& codec : split_list(codecs, ';'))
    for (const auto& topo : split_list(topologies, ','))
      for (const auto& h : split_list(hs, ',')) {
        run_config c = base;
        c.codec = codec;
        c.topology = topo;
        c.collective = topo == "complete" ? "ring" : "gossip";
        c.inner_steps = static_cast<std::uint32_t>(std::strtoul(h.c_str(), nullptr, 10));
        std::string name = codec + "|" + topo + "|H" + h;
        for (char& ch : name)
          if (ch == ',' || ch == ':' || ch == '=' || ch == ' ') ch = '_';
        c.label = name;
        g.push_back({name, codec + ", " + topo + ", H=" + h, "grid", c});
      }
  return g;
}

std::vector<group> default_groups(const run_config& base) {
  std::vector<group> g;
  auto add = [&](std::string name, std::string title, std::string axis, auto edit) {
    run_config c = base;
    c.label = name;
    edit(c);
    g.push_back({std::move(name), std::move(title), std::move(axis), c});
  };
  add("ddp", "DDP (gradient all-reduce every step)", "headline", [](run_config& c) {
    c.method = method::ddp;
    c.inner.lr = kDdpLr;
  });
  add("diloco", "DiLoCo H=50, Nesterov 0.7/0.9, fp32", "headline", [](run_config&) {});
  add("fedavg", "DiLoCo H=50, FedAvg (outer SGD lr 1)", "headline", [](run_config& c) {
    c.outer_lr = 1;
    c.outer_momentum = 0;
  });
  add("int8", "DiLoCo, int8 min-max ring", "codec", [](run_config& c) { c.codec = "minmax:bits=8"; });
  add("fp4", "DiLoCo, FP4 E3M0 ring", "codec", [](run_config& c) { c.codec = "fp4"; });
  add("sparseloco", "SparseLoCo: top-k 32/4096 2-bit, EF 0.95, sparse all-gather", "codec", [](run_config& c) {
    c.collective = "sparse";
    c.codec = "topk:chunk=4096,k=32,values=q2";
    c.error_feedback = true;
    c.ef_beta = 0.95f;
    c.outer_lr = 1;
    c.outer_momentum = 0;
  });
  add("gossip_ring", "DiLoCo, gossip on a ring", "topology", [](run_config& c) {
    c.collective = "gossip";
    c.topology = "ring";
  });
  add("gossip_exp", "DiLoCo, one-peer exponential gossip", "topology", [](run_config& c) {
    c.collective = "gossip";
    c.topology = "one_peer_exponential";
  });
  add("noloco", "NoLoCo random pairs", "topology", [](run_config& c) { c.collective = "noloco"; });
  add("H10", "DiLoCo H=10", "H", [](run_config& c) { c.inner_steps = 10; });
  add("H200", "DiLoCo H=200", "H", [](run_config& c) { c.inner_steps = 200; });
  return g;
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  return static_cast<bool>(f);
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  run_config base;
  base.workers = 4;
  base.steps = 600;
  base.batch = 16;
  base.inner_steps = 50;
  base.inner.lr = kDilocoLr;
  base.eval_every = 50;
  base.pretrain_steps = 1000;
  bool tune = false;
  std::string grid_codecs, grid_topologies = "complete", grid_h = "50";
  std::size_t seeds = 3;
  std::string out = "compare-out", only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value for %s\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--out") out = val();
    else if (a == "--seeds") seeds = std::strtoul(val().c_str(), nullptr, 10);
    else if (a == "--steps") base.steps = std::strtoul(val().c_str(), nullptr, 10);
    else if (a == "--workers") base.workers = std::strtoul(val().c_str(), nullptr, 10);
    else if (a == "--lr") base.inner.lr = std::strtod(val().c_str(), nullptr);
    else if (a == "--only") only = "," + val() + ",";
    else if (a == "--grid-codecs") grid_codecs = val();
    else if (a == "--grid-topologies") grid_topologies = val();
    else if (a == "--grid-H") grid_h = val();
    else if (a == "--pretrain") base.pretrain_steps = std::strtoul(val().c_str(), nullptr, 10);
    else if (a == "--tune") tune = true;
    else if (a == "--quick") { seeds = 1; base.steps = 100; base.pretrain_steps = 100; }
    else {
      std::fprintf(stderr, "usage: dtrain_compare [--out DIR] [--seeds N] [--steps N] [--workers K] [--lr LR] [--pretrain N] [--only g1,g2] [--tune] [--quick]\n"
                   "       [--grid-codecs \"identity;minmax:bits=8;fp4\" --grid-topologies complete,ring,torus --grid-H 10,50]\n");
      return 2;
    }
  }
  if (seeds == 0 || base.steps == 0 || base.workers == 0) {
    std::fprintf(stderr, "seeds, steps and workers must be >= 1\n");
    return 2;
  }
  base.eval_every = std::min<std::size_t>(base.eval_every, base.steps);
  ::mkdir(out.c_str(), 0755);

  auto data = dtrain::testbed::open_source("", base.model.context);
  if (!data.ok()) {
    std::fprintf(stderr, "data: %s\n", data.status().to_string().c_str());
    return 1;
  }
  // The true distribution's loss on the validation sequences eval_loss() scores.
  const double floor = (*data)->validation_floor().value_or(0.0);

  std::vector<group> groups;
  auto candidates = tune ? tuning_groups(base)
                  : !grid_codecs.empty() ? grid_groups(base, grid_codecs, grid_topologies, grid_h)
                                         : default_groups(base);
  for (auto& g : candidates)
    if (only.empty() || only.find("," + g.name + ",") != std::string::npos) groups.push_back(g);

  std::string csv = "group,seed,step,val_loss,bytes_per_worker,seconds\n";
  std::map<std::string, std::vector<double>> finals, bytes, secs;
  std::map<std::string, std::vector<std::vector<dtrain::sim::point>>> curves;
  const std::size_t total_runs = groups.size() * seeds;
  std::size_t done = 0;
  double elapsed = 0;
  // One pretrained checkpoint per seed, shared by every group (equal starting point).
  std::vector<std::vector<float>> checkpoints(seeds);
  for (std::size_t s = 0; s < seeds && base.pretrain_steps > 0; ++s) {
    run_config c = base;
    c.seed = s + 1;
    auto p = dtrain::sim::pretrain(c, **data);
    if (!p.ok()) {
      std::fprintf(stderr, "pretraining seed %zu failed: %s\n", s + 1, p.status().to_string().c_str());
      return 1;
    }
    checkpoints[s] = std::move(*p);
    std::fprintf(stderr, "pretrained seed %zu: %zu steps\n", s + 1, base.pretrain_steps);
  }
  for (const auto& g : groups) {
    for (std::size_t s = 0; s < seeds; ++s) {
      run_config c = g.config;
      c.seed = s + 1;
      c.initial_params = checkpoints[s];
      auto r = dtrain::sim::run(c, **data);
      if (!r.ok()) {
        std::fprintf(stderr, "%s seed %zu failed: %s\n", g.name.c_str(), s + 1, r.status().to_string().c_str());
        return 1;
      }
      ++done;
      elapsed += r->seconds;
      std::fprintf(stderr, "[%zu/%zu] %-12s seed %zu  loss %.4f  sent %.3g B/worker  %.1f s  (ETA %.0f s)\n", done,
                   total_runs, g.name.c_str(), s + 1, r->final_loss, r->bytes_per_worker, r->seconds,
                   elapsed / static_cast<double>(done) * static_cast<double>(total_runs - done));
      finals[g.name].push_back(r->final_loss);
      bytes[g.name].push_back(r->bytes_per_worker);
      secs[g.name].push_back(r->seconds);
      for (const auto& p : r->curve)
        csv += g.name + "," + std::to_string(s + 1) + "," + std::to_string(p.step) + "," + fmt("%.6f", p.val_loss) +
               "," + fmt("%.0f", p.bytes_per_worker) + "," + fmt("%.3f", p.seconds) + "\n";
      curves[g.name].push_back(r->curve);
    }
  }
  write_file(out + "/runs.csv", csv);

  // Mean curves per group, one data block each, for gnuplot.
  std::string dat;
  for (const auto& g : groups) {
    const auto& cs = curves[g.name];
    dat += "# " + g.name + "\n";
    for (std::size_t i = 0; i < cs[0].size(); ++i) {
      double l = 0, b = 0;
      for (const auto& c : cs) {
        l += c[i].val_loss;
        b += c[i].bytes_per_worker;
      }
      l /= static_cast<double>(cs.size());
      b /= static_cast<double>(cs.size());
      dat += std::to_string(cs[0][i].step) + " " + fmt("%.6f", l) + " " + fmt("%.0f", std::max(b, 1.0)) + "\n";
    }
    dat += "\n\n";
  }
  write_file(out + "/curves.dat", dat);

  // Summary table, JSON and claims.
  const stats ddp_b = summarize(bytes["ddp"]);
  std::string md = "| group | what | val loss (mean ± sd over " + std::to_string(seeds) +
                   " seeds) | above floor | sent per worker | less than DDP | time per run |\n|---|---|---|---|---|---|---|\n";
  std::string json = "{\n  \"workers\": " + std::to_string(base.workers) + ", \"steps\": " + std::to_string(base.steps) +
                     ", \"batch\": " + std::to_string(base.batch) + ", \"seeds\": " + std::to_string(seeds) +
                     ", \"loss_floor\": " + fmt("%.6f", floor) + ",\n  \"groups\": [\n";
  for (std::size_t i = 0; i < groups.size(); ++i) {
    const auto& g = groups[i];
    const stats l = summarize(finals[g.name]), b = summarize(bytes[g.name]), t = summarize(secs[g.name]);
    const std::string ratio = ddp_b.n && b.mean > 0 ? fmt("%.0f×", ddp_b.mean / b.mean) : "-";
    md += "| " + g.name + " | " + g.title + " | " + fmt("%.4f", l.mean) + " ± " + fmt("%.4f", l.sd) + " | " +
          fmt("%.4f", l.mean - floor) + " | " + fmt("%.3g B", b.mean) + " | " + ratio + " | " + fmt("%.1f s", t.mean) +
          " |\n";
    json += "    {\"name\": \"" + g.name + "\", \"axis\": \"" + g.axis + "\", \"loss_mean\": " + fmt("%.6f", l.mean) +
            ", \"loss_sd\": " + fmt("%.6f", l.sd) + ", \"bytes_per_worker\": " + fmt("%.0f", b.mean) +
            ", \"seconds\": " + fmt("%.3f", t.mean) + "}" + (i + 1 < groups.size() ? ",\n" : "\n");
  }
  json += "  ],\n  \"claims\": [\n";

  struct claim {
    std::string text;
    bool checked = false, pass = false;
    std::string detail;
  };
  std::vector<claim> claims;
  auto have = [&](const char* n) { return finals.count(n) && !finals[n].empty(); };
  const double tol = 0.001;  // nats: the smallest band (about the validation set's resolution)
  if (have("ddp") && have("diloco")) {
    const paired p = compare_paired(finals["diloco"], finals["ddp"], tol);
    const double ratio = summarize(bytes["ddp"]).mean / summarize(bytes["diloco"]).mean;
    claims.push_back({"DiLoCo (H=50, Nesterov 0.7/0.9) is at least as good as DDP at equal compute, with >= 50x less "
                      "communication",
                      true, p.diff <= p.band && ratio >= 50,
                      "DiLoCo - DDP = " + fmt("%+.4f", p.diff) + " nats (noise band " + fmt("%.4f", p.band) + "), " +
                          fmt("%.0f", ratio) + "x fewer bytes"});
  }
  if (have("diloco") && have("fedavg")) {
    const paired p = compare_paired(finals["diloco"], finals["fedavg"], tol);
    claims.push_back({"Nesterov beats FedAvg (outer SGD, lr 1)", true, p.diff < -p.band,
                      "Nesterov - FedAvg = " + fmt("%+.4f", p.diff) + " nats (noise band " + fmt("%.4f", p.band) + ")"});
  }
  for (const char* q : {"int8", "fp4"}) {
    if (!have("diloco") || !have(q)) continue;
    const paired p = compare_paired(finals[q], finals["diloco"], tol);
    claims.push_back({std::string(q) + " matches fp32 within noise", true, std::fabs(p.diff) <= p.band,
                      std::string(q) + " - fp32 = " + fmt("%+.4f", p.diff) + " nats (noise band " + fmt("%.4f", p.band) +
                          "), " + fmt("%.1f", summarize(bytes["diloco"]).mean / summarize(bytes[q]).mean) +
                          "x fewer bytes"});
  }
  if (have("diloco") && have("sparseloco")) {
    const paired p = compare_paired(finals["sparseloco"], finals["diloco"], tol);
    const double ratio = summarize(bytes["diloco"]).mean / summarize(bytes["sparseloco"]).mean;
    claims.push_back({"SparseLoCo-style top-k with error feedback is within noise at >= 100x fewer bytes", true,
                      p.diff <= p.band && ratio >= 100,
                      "top-k - fp32 = " + fmt("%+.4f", p.diff) + " nats (noise band " + fmt("%.4f", p.band) + "), " +
                          fmt("%.0f", ratio) + "x fewer bytes than fp32 DiLoCo"});
  }
  md += "\n| published result | reproduced | numbers |\n|---|---|---|\n";
  bool all = true;
  for (std::size_t i = 0; i < claims.size(); ++i) {
    const auto& c = claims[i];
    all = all && c.pass;
    md += "| " + c.text + " | " + (c.pass ? "yes" : "**no**") + " | " + c.detail + " |\n";
    json += "    {\"claim\": \"" + c.text + "\", \"pass\": " + (c.pass ? "true" : "false") + ", \"detail\": \"" +
            c.detail + "\"}" + (i + 1 < claims.size() ? ",\n" : "\n");
  }
  json += "  ]\n}\n";
  write_file(out + "/summary.md", md);
  write_file(out + "/summary.json", json);
  std::printf("%s", md.c_str());

  // Plots: gnuplot (Debian gnuplot-nox), SVG.
  std::string gp = "set terminal svg size 900,640 dynamic noenhanced font 'Helvetica,12'\nset grid\n"
                   "set key below maxrows 4\n"
                   "set ylabel 'validation loss (nats/char)'\n";
  // Points before a group's first exchange (0 bytes) have no place on a log axis.
  auto plot_cmd = [&](int xcol) {
    std::string p = "plot ";
    const std::string using_ = xcol == 3 ? "3:($3 > 1 ? $2 : 1/0)" : std::to_string(xcol) + ":2";
    for (std::size_t i = 0; i < groups.size(); ++i)
      p += std::string(i ? ", " : "") + "'curves.dat' index " + std::to_string(i) + " using " + using_ +
           " with linespoints title '" + groups[i].name + "'";
    if (floor > 0) p += ", " + fmt("%.6f", floor) + " with lines dashtype 2 lc 'black' title 'true model on the validation set'";
    return p + "\n";
  };
  gp += "set output 'loss_vs_bytes.svg'\nset logscale x\nset format x '1e%L'\nset xlabel 'bytes sent per worker'\n" + plot_cmd(3);
  gp += "set output 'loss_vs_step.svg'\nunset logscale x\nset format x '%g'\nset xlabel 'inner steps per worker'\n" + plot_cmd(1);
  write_file(out + "/plot.gp", gp);
  const std::string cmd = "cd '" + out + "' && gnuplot plot.gp";
  if (std::system(cmd.c_str()) != 0)
    std::fprintf(stderr, "gnuplot failed or is not installed: plots not drawn (data in %s)\n", out.c_str());
  std::fprintf(stderr, "wrote %s/{runs.csv,curves.dat,summary.md,summary.json,plot.gp,loss_vs_bytes.svg,loss_vs_step.svg}\n",
               out.c_str());
  return all ? 0 : 3;
}
