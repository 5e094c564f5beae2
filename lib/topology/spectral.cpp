// lib/topology/spectral.cpp: contraction factors by dense SVD (Eigen, private to this
// file) and the consensus simulation.
#include "dtrain/topology/spectral.h"

#include <Eigen/Dense>
#include <Eigen/SVD>

#include <cmath>
#include <string>
#include <vector>

namespace dtrain::topology {

namespace {

using matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

matrix to_eigen(const mixing& w) {
  matrix m(static_cast<Eigen::Index>(w.n), static_cast<Eigen::Index>(w.n));
  for (std::size_t i = 0; i < w.n; ++i) {
    for (std::size_t j = 0; j < w.n; ++j) {
      m(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = w.w[i * w.n + j];
    }
  }
  return m;
}

// ||M - J/n||_2: the largest singular value.
double deviation_norm(matrix m) {
  const double inv_n = 1.0 / static_cast<double>(m.rows());
  m.array() -= inv_n;
  Eigen::BDCSVD<matrix> svd(m);  // singular values only
  return svd.singularValues()(0);
}

status check_schedule(const schedule& s, const char* what) {
  if (s.rounds.empty()) return invalid_argument(std::string(what) + ": empty schedule");
  const std::size_t n = s.rounds.front().n;
  if (n == 0) return invalid_argument(std::string(what) + ": n = 0");
  for (std::size_t r = 0; r < s.rounds.size(); ++r) {
    if (s.rounds[r].n != n) {
      return invalid_argument(std::string(what) + ": round " + std::to_string(r) + " has n = " +
                              std::to_string(s.rounds[r].n) + ", round 0 has n = " + std::to_string(n));
    }
    DTRAIN_RETURN_IF_ERROR(s.rounds[r].validate());
  }
  return ok_status();
}

}  // namespace

result<double> contraction(const mixing& w) {
  if (w.n == 0) return invalid_argument("contraction: n = 0");
  DTRAIN_RETURN_IF_ERROR(w.validate());
  return deviation_norm(to_eigen(w));
}

result<double> spectral_gap(const mixing& w) {
  auto rho = contraction(w);
  if (!rho.ok()) return std::move(rho).status();
  return 1.0 - *rho;
}

result<double> contraction_over(const schedule& s, std::size_t rounds, std::uint64_t start) {
  DTRAIN_RETURN_IF_ERROR(check_schedule(s, "contraction_over"));
  const auto n = static_cast<Eigen::Index>(s.n());
  matrix prod = matrix::Identity(n, n);
  for (std::size_t r = 0; r < rounds; ++r) {
    const matrix next = to_eigen(s.at(start + r)) * prod;  // later rounds on the left
    prod = next;
  }
  return deviation_norm(std::move(prod));
}

result<consensus_run> rounds_to_consensus(const schedule& s, std::span<const double> x0, double eps,
                                          std::uint64_t max_rounds) {
  DTRAIN_RETURN_IF_ERROR(check_schedule(s, "rounds_to_consensus"));
  const std::size_t n = s.n();
  if (x0.size() != n) {
    return invalid_argument("rounds_to_consensus: x0 has " + std::to_string(x0.size()) + " values for n = " +
                            std::to_string(n));
  }
  if (!(eps >= 0.0 && eps <= 1.0)) return invalid_argument("rounds_to_consensus: eps must lie in [0, 1]");
  double mean = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x0[i])) {
      return invalid_argument("rounds_to_consensus: x0[" + std::to_string(i) + "] is not finite");
    }
    mean += x0[i];
  }
  mean /= static_cast<double>(n);
  const auto sq_dev = [mean](const std::vector<double>& x) {
    double s2 = 0.0;
    for (const double v : x) s2 += (v - mean) * (v - mean);
    return s2;
  };

  // Per-node views of every round of the period: O(edges) per simulated round.
  std::vector<std::vector<node_view>> views(s.period());
  for (std::size_t r = 0; r < s.period(); ++r) {
    views[r].reserve(n);
    for (std::size_t i = 0; i < n; ++i) views[r].push_back(view_of(s.rounds[r], static_cast<std::uint32_t>(i)));
  }

  std::vector<double> x(x0.begin(), x0.end()), next(n);
  const double dev0 = sq_dev(x);
  consensus_run run;
  if (dev0 == 0.0) {
    run.reached = true;
    return run;
  }
  const double target = eps * eps * dev0;
  double dev = dev0;
  while (run.rounds < max_rounds && dev > target) {
    const auto& round = views[static_cast<std::size_t>(run.rounds % s.period())];
    for (std::size_t i = 0; i < n; ++i) {
      double v = round[i].self_weight * x[i];
      for (const auto& [j, wt] : round[i].recv) v += wt * x[j];
      next[i] = v;
    }
    x.swap(next);
    ++run.rounds;
    dev = sq_dev(x);
  }
  run.reached = dev <= target;
  run.ratio = std::sqrt(dev / dev0);
  return run;
}

}  // namespace dtrain::topology
