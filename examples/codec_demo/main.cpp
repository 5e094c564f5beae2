// codec_demo: K simulated workers compress their pseudo-gradients with each codec, the
// payloads are averaged by decode-and-accumulate, and a DiLoCo outer step (Nesterov,
// lr 0.7, momentum 0.9) is applied. Prints, per codec: payload size and ratio, the error
// of the average after one round and of the running sum after R rounds (where error
// feedback pays off), the parameter error after R outer steps, and encode/decode speed.
//
//   dtrain_codec_demo [--workers K] [--n N] [--rounds R] [--codecs "spec;spec;..."]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dtrain/codec/registry.h"
#include "dtrain/core/convert.h"
#include "dtrain/core/rng.h"
#include "dtrain/optim/outer_sgd.h"

namespace {

using clock_type = std::chrono::steady_clock;

struct options {
  int workers = 4;
  std::size_t n = std::size_t{1} << 20;
  int rounds = 5;
  std::vector<std::string> codecs;
};

std::vector<std::string> default_codecs(std::size_t n) {
  std::vector<std::string> s = {
      "identity", "fp16", "bf16", "minmax:bits=8", "minmax:bits=4", "minmax:bits=2,rounding=stochastic",
      "blockwise:bits=8,block=256", "blockwise:bits=4,block=64", "uniform8", "quantile8", "fp4:block=128",
      "topk:chunk=4096,k=64,values=q2", "ef:beta=1,gamma=1,inner=topk:chunk=4096,k=64,values=q2",
      "randomk:chunk=4096,k=256", "sign", "ef:beta=1,gamma=1,inner=sign", "dct_topk:chunk=64,k=8,values=fp16",
      "ef:beta=1,gamma=1,inner=dct_topk:chunk=64,k=4,values=sign"};
  const std::size_t rows = std::size_t{1} << (std::ilogb(static_cast<double>(n)) / 2);
  if (n % rows == 0)
    s.push_back("ef:beta=1,gamma=1,inner=powersgd:rows=" + std::to_string(rows) + ",cols=" +
                std::to_string(n / rows) + ",rank=4");
  return s;
}

bool parse(int argc, char** argv, options& o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--workers" && (v = next())) o.workers = std::atoi(v);
    else if (a == "--n" && (v = next())) o.n = static_cast<std::size_t>(std::strtoull(v, nullptr, 10));
    else if (a == "--rounds" && (v = next())) o.rounds = std::atoi(v);
    else if (a == "--codecs" && (v = next())) {
      std::string s = v;
      for (std::size_t p = 0; p <= s.size();) {
        std::size_t q = s.find(';', p);
        if (q == std::string::npos) q = s.size();
        if (q > p) o.codecs.push_back(s.substr(p, q - p));
        p = q + 1;
      }
    } else {
      std::fprintf(stderr, "usage: %s [--workers K] [--n N] [--rounds R] [--codecs \"spec;spec\"]\n", argv[0]);
      return false;
    }
  }
  if (o.workers < 1 || o.n < 1 || o.rounds < 1) {
    std::fprintf(stderr, "workers, n and rounds must be positive\n");
    return false;
  }
  if (o.codecs.empty()) o.codecs = default_codecs(o.n);
  return true;
}

/// Worker k's pseudo-gradient in round r: a shared direction (what the workers agree
/// on) plus worker-specific noise, with a heavy-ish tail like real pseudo-gradients.
void pseudo_gradient(std::vector<float>& d, std::size_t n, int k, int r) {
  const dtrain::counter_rng shared(7, static_cast<std::uint64_t>(r));
  const dtrain::counter_rng own(1000 + static_cast<std::uint64_t>(k), static_cast<std::uint64_t>(r));
  for (std::size_t i = 0; i < n; ++i) {
    const float s = static_cast<float>(shared.at(i) >> 8) * 0x1p-24f - 0.5f;
    const float e = static_cast<float>(own.at(i) >> 8) * 0x1p-24f - 0.5f;
    d[i] = 1e-3f * (s * s * s * 8.0f + 0.5f * e);
  }
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(ref[i]);
    num += d * d;
    den += static_cast<double>(ref[i]) * static_cast<double>(ref[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

struct row {
  std::string spec;
  std::size_t bytes = 0;
  double err1 = 0, err_cum = 0, err_theta = 0, enc_gbps = 0, dec_gbps = 0;
  std::string error;
};

}  // namespace

int main(int argc, char** argv) {
  options o;
  if (!parse(argc, argv, o)) return 2;
  const std::size_t n = o.n;
  const auto K = static_cast<std::size_t>(o.workers);
  std::printf("dtrain codec demo: %zu workers, %zu parameters, %d rounds, DiLoCo outer step (Nesterov 0.7/0.9)\n",
              K, n, o.rounds);
  std::printf("bulk dtype conversion: %s\n\n", std::string(dtrain::convert_isa()).c_str());

  // Pseudo-gradients for every round and worker, and the exact means.
  std::vector<std::vector<std::vector<float>>> delta(static_cast<std::size_t>(o.rounds),
                                                     std::vector<std::vector<float>>(K, std::vector<float>(n)));
  std::vector<std::vector<float>> mean(static_cast<std::size_t>(o.rounds), std::vector<float>(n));
  for (int r = 0; r < o.rounds; ++r) {
    auto& dr = delta[static_cast<std::size_t>(r)];
    for (std::size_t k = 0; k < K; ++k) pseudo_gradient(dr[k], n, static_cast<int>(k), r);
    for (std::size_t i = 0; i < n; ++i) {
      double s = 0;
      for (std::size_t k = 0; k < K; ++k) s += static_cast<double>(dr[k][i]);
      mean[static_cast<std::size_t>(r)][i] = static_cast<float>(s / static_cast<double>(K));
    }
  }

  // Reference trajectory: exact averages through the same outer optimizer.
  auto run_outer = [&](const std::vector<std::vector<float>>& grads) {
    std::vector<float> theta(n, 0.0f);
    auto opt = dtrain::optim::outer_sgd::create(n, dtrain::optim::sgd_options::diloco());
    if (!opt.ok()) return theta;
    for (const auto& g : grads) {
      auto st = opt->step(theta, g);
      if (!st.ok()) std::fprintf(stderr, "outer step failed: %s\n", st.to_string().c_str());
    }
    return theta;
  };
  const std::vector<float> theta_ref = run_outer(mean);

  std::vector<row> rows;
  for (const std::string& spec : o.codecs) {
    row rw;
    rw.spec = spec;
    std::vector<std::unique_ptr<dtrain::codec::codec>> cs;
    for (std::size_t k = 0; k < K && rw.error.empty(); ++k) {
      auto c = dtrain::codec::make_codec(spec);
      if (!c.ok()) rw.error = c.status().to_string();
      else cs.push_back(std::move(c).value());
    }
    if (!rw.error.empty()) {
      rows.push_back(rw);
      continue;
    }
    std::vector<std::vector<std::byte>> payload(K, std::vector<std::byte>(cs[0]->max_encoded_bytes(n)));
    std::vector<std::vector<float>> avg(static_cast<std::size_t>(o.rounds), std::vector<float>(n));
    double enc_s = 0, dec_s = 0;
    for (int r = 0; r < o.rounds && rw.error.empty(); ++r) {
      auto& acc = avg[static_cast<std::size_t>(r)];
      for (std::size_t k = 0; k < K && rw.error.empty(); ++k) {
        const auto t0 = clock_type::now();
        auto w = cs[k]->encode(delta[static_cast<std::size_t>(r)][k], payload[k]);
        enc_s += std::chrono::duration<double>(clock_type::now() - t0).count();
        if (!w.ok()) {
          rw.error = w.status().to_string();
          break;
        }
        rw.bytes = *w;
        // Any peer can decode any payload: decode_any needs no codec instance.
        const auto t1 = clock_type::now();
        auto st = dtrain::codec::decode_accumulate_any(std::span(payload[k]).first(*w), acc,
                                                       1.0f / static_cast<float>(K));
        dec_s += std::chrono::duration<double>(clock_type::now() - t1).count();
        if (!st.ok()) rw.error = st.to_string();
      }
    }
    if (!rw.error.empty()) {
      rows.push_back(rw);
      continue;
    }
    const double coded_bytes = static_cast<double>(o.rounds) * static_cast<double>(K * n * sizeof(float));
    rw.enc_gbps = coded_bytes / enc_s / 1e9;
    rw.dec_gbps = coded_bytes / dec_s / 1e9;
    rw.err1 = rel_l2(avg[0], mean[0]);
    std::vector<float> sum_avg(n, 0.0f), sum_mean(n, 0.0f);
    for (int r = 0; r < o.rounds; ++r)
      for (std::size_t i = 0; i < n; ++i) {
        sum_avg[i] += avg[static_cast<std::size_t>(r)][i];
        sum_mean[i] += mean[static_cast<std::size_t>(r)][i];
      }
    rw.err_cum = rel_l2(sum_avg, sum_mean);
    rw.err_theta = rel_l2(run_outer(avg), theta_ref);
    rows.push_back(rw);
  }

  std::printf("%-58s %10s %7s %9s %9s %9s %8s %8s\n", "codec", "bytes/peer", "ratio", "err 1 rd",
              "err sum", "err theta", "enc GB/s", "dec GB/s");
  for (const row& r : rows) {
    if (!r.error.empty()) {
      std::printf("%-58s  error: %s\n", r.spec.c_str(), r.error.c_str());
      continue;
    }
    std::printf("%-58s %10zu %6.1fx %9.2e %9.2e %9.2e %8.2f %8.2f\n", r.spec.c_str(), r.bytes,
                static_cast<double>(n * sizeof(float)) / static_cast<double>(r.bytes), r.err1, r.err_cum,
                r.err_theta, r.enc_gbps, r.dec_gbps);
  }
  std::printf("\nerr 1 rd: relative L2 error of the averaged pseudo-gradient after one round\n"
              "err sum: the same for the sum over %d rounds (error feedback bounds it)\n"
              "err theta: relative error of the parameters after %d outer Nesterov steps\n"
              "GB/s: fp32 input bytes coded per second, one core\n",
              o.rounds, o.rounds);
  for (const row& r : rows)
    if (!r.error.empty()) return 1;
  return 0;
}
