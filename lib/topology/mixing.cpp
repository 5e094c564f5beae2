// lib/topology/mixing.cpp: weightings of a graph, stochasticity checks, per-node views.
#include "dtrain/topology/mixing.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

namespace dtrain::topology {

namespace {

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string idx(std::size_t v) { return std::to_string(v); }

// Checks entries >= -tol and |1 - sum| <= tol along rows (by_row) or columns.
status check_stochastic(const mixing& w, double tol, bool by_row) {
  DTRAIN_RETURN_IF_ERROR(w.validate());
  if (!(tol >= 0.0)) return invalid_argument("stochastic check: tolerance must be >= 0");
  const char* line = by_row ? "row" : "column";
  for (std::size_t a = 0; a < w.n; ++a) {
    double sum = 0.0;
    for (std::size_t b = 0; b < w.n; ++b) {
      const std::size_t i = by_row ? a : b, j = by_row ? b : a;
      const double v = w.w[i * w.n + j];
      if (v < -tol) {
        return invalid_argument(std::string("not ") + line + " stochastic: W(" + idx(i) + "," + idx(j) +
                                ") = " + num(v) + " is negative");
      }
      sum += v;
    }
    if (!(std::fabs(1.0 - sum) <= tol)) {
      return invalid_argument(std::string("not ") + line + " stochastic: " + line + " " + idx(a) + " sums to " +
                              num(sum) + " (tolerance " + num(tol) + ")");
    }
  }
  return ok_status();
}

}  // namespace

status mixing::validate() const {
  if (w.size() != n * n) {
    return invalid_argument("mixing: " + idx(w.size()) + " entries for n = " + idx(n) + " (want n*n)");
  }
  for (std::size_t k = 0; k < w.size(); ++k) {
    if (!std::isfinite(w[k])) {
      return invalid_argument("mixing: W(" + idx(k / n) + "," + idx(k % n) + ") = " + num(w[k]) + " is not finite");
    }
  }
  return ok_status();
}

node_view view_of(const mixing& w, std::uint32_t i) {
  DTRAIN_ASSERT(i < w.n && w.w.size() == w.n * w.n);
  node_view v;
  v.self_weight = w(i, i);
  for (std::size_t j = 0; j < w.n; ++j) {
    if (j == i) continue;
    if (w(i, j) != 0.0) v.recv.emplace_back(static_cast<std::uint32_t>(j), w(i, j));
    if (w(j, i) != 0.0) v.send.push_back(static_cast<std::uint32_t>(j));
  }
  return v;
}

result<graph> support(const mixing& w) {
  DTRAIN_RETURN_IF_ERROR(w.validate());
  if (w.n > std::numeric_limits<std::uint32_t>::max()) return invalid_argument("support: n exceeds 2^32 - 1");
  graph g{w.n, std::vector<std::vector<std::uint32_t>>(w.n)};
  for (std::size_t j = 0; j < w.n; ++j) {
    for (std::size_t i = 0; i < w.n; ++i) {
      if (i != j && w(i, j) != 0.0) g.out[j].push_back(static_cast<std::uint32_t>(i));
    }
  }
  return g;
}

void apply(const mixing& w, std::span<const double> x, std::span<double> y) {
  DTRAIN_ASSERT(x.size() == w.n && y.size() == w.n && w.w.size() == w.n * w.n);
  DTRAIN_ASSERT(w.n == 0 || x.data() + x.size() <= y.data() || y.data() + y.size() <= x.data());
  for (std::size_t i = 0; i < w.n; ++i) {
    const double* row = w.w.data() + i * w.n;
    double s = 0.0;
    for (std::size_t j = 0; j < w.n; ++j) s += row[j] * x[j];
    y[i] = s;
  }
}

result<mixing> uniform_weights(const graph& g) {
  DTRAIN_RETURN_IF_ERROR(g.validate());
  const auto in = g.in_neighbors();
  mixing m = mixing::zeros(g.n);
  for (std::size_t i = 0; i < g.n; ++i) {
    const double wt = 1.0 / static_cast<double>(in[i].size() + 1);
    m(i, i) = wt;
    for (const std::uint32_t j : in[i]) m(i, j) = wt;
  }
  return m;
}

result<mixing> metropolis_hastings(const graph& g) {
  DTRAIN_RETURN_IF_ERROR(g.validate());
  if (!g.symmetric()) return invalid_argument("metropolis_hastings: the graph is not symmetric (undirected)");
  mixing m = mixing::zeros(g.n);
  for (std::size_t i = 0; i < g.n; ++i) {
    double off = 0.0;
    for (const std::uint32_t j : g.out[i]) {
      const double wt = 1.0 / static_cast<double>(1 + std::max(g.out[i].size(), g.out[j].size()));
      m(i, j) = wt;
      off += wt;
    }
    m(i, i) = 1.0 - off;
  }
  return m;
}

result<mixing> push_sum_weights(const graph& g) {
  DTRAIN_RETURN_IF_ERROR(g.validate());
  mixing m = mixing::zeros(g.n);
  for (std::size_t j = 0; j < g.n; ++j) {
    const double wt = 1.0 / static_cast<double>(g.out[j].size() + 1);
    m(j, j) = wt;
    for (const std::uint32_t k : g.out[j]) m(k, j) = wt;
  }
  return m;
}

status is_row_stochastic(const mixing& w, double tol) { return check_stochastic(w, tol, true); }

status is_column_stochastic(const mixing& w, double tol) { return check_stochastic(w, tol, false); }

status is_doubly_stochastic(const mixing& w, double tol) {
  DTRAIN_RETURN_IF_ERROR(is_row_stochastic(w, tol));
  return is_column_stochastic(w, tol);
}

}  // namespace dtrain::topology
