// lib/topology/ring_order.cpp: widest-bottleneck ring orders. Exact Held-Karp DP for
// small n; threshold binary search + budgeted Hamiltonian-cycle DFS + or-opt/2-opt
// polishing beyond. Design notes: docs/topology.md ("Ring order").
#include "dtrain/topology/ring_order.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <string>

namespace dtrain::topology {

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

// Row-major bandwidth matrix view.
struct bw {
  std::span<const double> b;
  std::size_t n;
  double operator()(std::size_t i, std::size_t j) const { return b[i * n + j]; }
};

// Lexicographic ranking of two evaluated rings: bottleneck first, then the tie-break.
bool better(const ring_order& a, const ring_order& b, ring_tiebreak tb) {
  if (a.bottleneck != b.bottleneck) return a.bottleneck > b.bottleneck;
  return tb == ring_tiebreak::max_sum && a.total > b.total;
}

// Rotates a cyclic order so that it starts at node 0.
void rotate_to_zero(std::vector<std::uint32_t>& order) {
  std::rotate(order.begin(), std::find(order.begin(), order.end(), 0u), order.end());
}

// ---- exact: Held-Karp over subsets of {1..n-1} ----------------------------------------

// Walks a DP table's parent pointers back from `last` over `full` into an order.
std::vector<std::uint32_t> trace(const std::vector<std::int8_t>& parent, std::size_t m, std::uint32_t full,
                                 std::size_t last) {
  std::vector<std::uint32_t> rev;
  std::uint32_t set = full;
  auto j = static_cast<std::int8_t>(last);
  while (j >= 0) {
    rev.push_back(static_cast<std::uint32_t>(j) + 1);
    const std::int8_t p = parent[static_cast<std::size_t>(set) * m + static_cast<std::size_t>(j)];
    set &= ~(1u << j);
    j = p;
  }
  std::vector<std::uint32_t> order{0};
  order.insert(order.end(), rev.rbegin(), rev.rend());
  return order;
}

// Best bottleneck ring. f[S][j]: widest path 0 -> ... -> j+1 visiting exactly the nodes of
// S (bit j = node j+1); -1 = no such path yet.
std::vector<std::uint32_t> exact_bottleneck(const bw& b) {
  const std::size_t m = b.n - 1;
  const std::uint32_t full = (1u << m) - 1;
  std::vector<double> f((std::size_t{full} + 1) * m, -1.0);
  std::vector<std::int8_t> parent(f.size(), -1);
  for (std::size_t j = 0; j < m; ++j) f[(std::size_t{1} << j) * m + j] = b(0, j + 1);
  for (std::uint32_t set = 1; set <= full; ++set) {
    for (std::size_t j = 0; j < m; ++j) {
      const double cur = f[std::size_t{set} * m + j];
      if (!(set & (1u << j)) || cur < 0.0) continue;
      for (std::size_t k = 0; k < m; ++k) {
        if (set & (1u << k)) continue;
        const std::uint32_t next = set | (1u << k);
        const double v = std::min(cur, b(j + 1, k + 1));
        double& slot = f[std::size_t{next} * m + k];
        if (v > slot) {
          slot = v;
          parent[std::size_t{next} * m + k] = static_cast<std::int8_t>(j);
        }
      }
    }
  }
  std::size_t last = 0;
  double best = -1.0;
  for (std::size_t j = 0; j < m; ++j) {
    const double v = std::min(f[std::size_t{full} * m + j], b(j + 1, 0));
    if (v > best) {
      best = v;
      last = j;
    }
  }
  return trace(parent, m, full, last);
}

// Largest-sum ring among those using only links >= floor (one exists: the caller found
// a ring with bottleneck floor). g[S][j] as above with sums; -inf = infeasible.
std::vector<std::uint32_t> exact_max_sum(const bw& b, double floor) {
  const std::size_t m = b.n - 1;
  const std::uint32_t full = (1u << m) - 1;
  std::vector<double> g((std::size_t{full} + 1) * m, -inf);
  std::vector<std::int8_t> parent(g.size(), -1);
  const auto usable = [&](std::size_t i, std::size_t j) { return b(i, j) >= floor; };
  for (std::size_t j = 0; j < m; ++j) {
    if (usable(0, j + 1)) g[(std::size_t{1} << j) * m + j] = b(0, j + 1);
  }
  for (std::uint32_t set = 1; set <= full; ++set) {
    for (std::size_t j = 0; j < m; ++j) {
      const double cur = g[std::size_t{set} * m + j];
      if (!(set & (1u << j)) || cur == -inf) continue;
      for (std::size_t k = 0; k < m; ++k) {
        if ((set & (1u << k)) || !usable(j + 1, k + 1)) continue;
        const std::uint32_t next = set | (1u << k);
        const double v = cur + b(j + 1, k + 1);
        double& slot = g[std::size_t{next} * m + k];
        if (v > slot) {
          slot = v;
          parent[std::size_t{next} * m + k] = static_cast<std::int8_t>(j);
        }
      }
    }
  }
  std::size_t last = m;
  double best = -inf;
  for (std::size_t j = 0; j < m; ++j) {
    const double cur = g[std::size_t{full} * m + j];
    if (cur == -inf || !usable(j + 1, 0)) continue;
    if (cur + b(j + 1, 0) > best) {
      best = cur + b(j + 1, 0);
      last = j;
    }
  }
  DTRAIN_ASSERT(last < m);
  return trace(parent, m, full, last);
}

// ---- heuristic: Hamiltonian cycle in the graph of links >= t --------------------------

// Depth-first search for a Hamiltonian cycle through node 0 in the digraph of links
// >= t. Candidates are tried in Warnsdorff order (fewest onward options first, then the
// wider link). Pruning keeps, for every unvisited node, the number of in-links from
// unvisited nodes or the path's end (in_avail) and of out-links to unvisited nodes or
// node 0 (out_avail); a zero means a dead end. Node 0 keeps in_avail too (the ring
// must close). Gives up after `budget` extensions.
class cycle_search {
 public:
  cycle_search(const bw& b, double t) : b_(b), n_(b.n), out_(n_), in_(n_) {
    for (std::size_t i = 0; i < n_; ++i) {
      for (std::size_t j = 0; j < n_; ++j) {
        if (i != j && b(i, j) >= t) {
          out_[i].push_back(static_cast<std::uint32_t>(j));
          in_[j].push_back(static_cast<std::uint32_t>(i));
        }
      }
    }
  }

  // A Hamiltonian cycle starting at 0, or empty when none was found within budget.
  std::vector<std::uint32_t> run(std::uint64_t budget) {
    for (std::size_t i = 0; i < n_; ++i) {
      if (out_[i].empty() || in_[i].empty()) return {};
    }
    visited_.assign(n_, 0);
    in_avail_.resize(n_);
    out_avail_.resize(n_);
    for (std::size_t i = 0; i < n_; ++i) {
      in_avail_[i] = static_cast<std::uint32_t>(in_[i].size());
      out_avail_[i] = static_cast<std::uint32_t>(out_[i].size());
    }
    cands_.assign(n_, {});
    pos_.assign(n_, 0);
    std::vector<std::uint32_t> path{0};
    visited_[0] = 1;
    order_candidates(0, 0);
    std::uint64_t spent = 0;
    while (true) {
      const std::size_t d = path.size() - 1;
      const std::uint32_t u = path[d];
      if (path.size() == n_) {
        if (!out_[u].empty() && out_[u].front() == 0) return path;  // out lists are ascending
      } else if (pos_[d] < cands_[d].size()) {
        const std::uint32_t v = cands_[d][pos_[d]++];
        if (visited_[v]) continue;
        if (++spent > budget) return {};
        const bool alive = extend(u, v, path.size() + 1 == n_);
        path.push_back(v);
        if (alive) {
          order_candidates(v, d + 1);
          continue;
        }
        // Dead end: fall through to the backtrack below with the new node on top.
      }
      // Backtrack: drop the top node (or fail at the root).
      if (path.size() == 1) return {};
      const std::uint32_t top = path.back();
      path.pop_back();
      retract(path.back(), top);
    }
  }

 private:
  void order_candidates(std::uint32_t u, std::size_t d) {
    auto& c = cands_[d];
    c.clear();
    for (const std::uint32_t v : out_[u]) {
      if (!visited_[v]) c.push_back(v);
    }
    std::sort(c.begin(), c.end(), [&](std::uint32_t a, std::uint32_t b) {
      if (out_avail_[a] != out_avail_[b]) return out_avail_[a] < out_avail_[b];
      if (b_(u, a) != b_(u, b)) return b_(u, a) > b_(u, b);
      return a < b;
    });
    pos_[d] = 0;
  }

  // Appends v after the path's end u. Returns false when some node can no longer be
  // entered or left (the caller still retracts through the normal backtrack).
  bool extend(std::uint32_t u, std::uint32_t v, bool last) {
    visited_[v] = 1;
    bool alive = true;
    for (const std::uint32_t y : in_[v]) {  // v is no longer a target for y
      if (--out_avail_[y] == 0 && !visited_[y]) alive = false;
    }
    for (const std::uint32_t x : out_[u]) {  // u is no longer the end, so no source for x
      if (--in_avail_[x] == 0 && x != v && (x == 0 || !visited_[x])) alive = false;
    }
    if (!last && out_avail_[v] == 0) alive = false;
    return alive;
  }

  void retract(std::uint32_t u, std::uint32_t v) {
    for (const std::uint32_t x : out_[u]) ++in_avail_[x];
    for (const std::uint32_t y : in_[v]) ++out_avail_[y];
    visited_[v] = 0;
  }

  const bw& b_;
  std::size_t n_;
  std::vector<std::vector<std::uint32_t>> out_, in_;
  std::vector<char> visited_;
  std::vector<std::uint32_t> in_avail_, out_avail_;
  std::vector<std::vector<std::uint32_t>> cands_;
  std::vector<std::size_t> pos_;
};

// Greedy widest-next-hop ring from node 0 (ties: lowest id).
std::vector<std::uint32_t> greedy_ring(const bw& b) {
  std::vector<std::uint32_t> order{0};
  std::vector<char> used(b.n, 0);
  used[0] = 1;
  for (std::size_t step = 1; step < b.n; ++step) {
    const std::uint32_t u = order.back();
    std::uint32_t pick = 0;
    double wid = -1.0;
    for (std::uint32_t v = 0; v < b.n; ++v) {
      if (!used[v] && b(u, v) > wid) {
        wid = b(u, v);
        pick = v;
      }
    }
    used[pick] = 1;
    order.push_back(pick);
  }
  return order;
}

// Or-opt (move a segment of 1..3 nodes elsewhere, keeping its direction) and 2-opt
// (reverse a segment; asymmetric links are re-read in the new direction) moves that
// raise the sum of the ring while keeping every link >= floor. First improvement, at
// most 10n improving moves.
void polish_sum(const bw& b, double floor, std::vector<std::uint32_t>& p) {
  const std::size_t n = b.n;
  if (n < 4) return;
  const auto link = [&](std::size_t i, std::size_t j) { return b(p[i % n], p[j % n]); };
  const auto gain_worth = [](double gain, double scale) { return gain > 1e-12 * (1.0 + std::fabs(scale)); };
  const std::size_t max_moves = 10 * n;
  std::vector<std::uint32_t> tmp(n);
  for (std::size_t move = 0; move < max_moves; ++move) {
    bool improved = false;
    const double total = [&] {
      double s = 0.0;
      for (std::size_t i = 0; i < n; ++i) s += link(i, i + 1);
      return s;
    }();
    // Or-opt: segment p[s..s+len-1] (no wrap) moves between p[q] and p[q+1].
    for (std::size_t len = 1; len <= 3 && !improved; ++len) {
      for (std::size_t s = 0; s + len <= n && !improved; ++s) {
        const std::size_t e = s + len - 1;
        const std::size_t prev = (s + n - 1) % n, next = (e + 1) % n;
        if (prev == e || next == s || prev == next) continue;
        const std::uint32_t first = p[s], lastn = p[e], pv = p[prev], nx = p[next];
        if (b(pv, nx) < floor) continue;
        const double removed = b(pv, first) + b(lastn, nx);
        for (std::size_t q = 0; q < n && !improved; ++q) {
          const std::size_t q1 = (q + 1) % n;
          // q and q1 must both lie outside the segment, and (q, q1) must not be the
          // links around it.
          const bool q_in = q >= s && q <= e, q1_in = q1 >= s && q1 <= e;
          if (q_in || q1_in || q == prev) continue;
          const std::uint32_t a = p[q], c = p[q1];
          if (b(a, first) < floor || b(lastn, c) < floor) continue;
          const double gain = b(pv, nx) + b(a, first) + b(lastn, c) - removed - b(a, c);
          if (!gain_worth(gain, total)) continue;
          // Rebuild: the ring without the segment, with it inserted after a.
          tmp.clear();
          for (std::size_t k = 0; k < n; ++k) {
            if (k >= s && k <= e) continue;
            tmp.push_back(p[k]);
            if (k == q) tmp.insert(tmp.end(), p.begin() + static_cast<std::ptrdiff_t>(s),
                                   p.begin() + static_cast<std::ptrdiff_t>(e) + 1);
          }
          p.swap(tmp);
          improved = true;
        }
      }
    }
    // 2-opt: reverse p[i..j] (0 < i < j < n); links p[i-1]->p[i] and p[j]->p[j+1] become
    // p[i-1]->p[j] and p[i]->p[j+1]; inner links flip direction.
    for (std::size_t i = 1; i + 1 < n && !improved; ++i) {
      double fwd = 0.0, bwd = 0.0, bwd_min = inf;  // inner links p[i..j] forward / reversed
      for (std::size_t j = i + 1; j < n && !improved; ++j) {
        fwd += link(j - 1, j);
        bwd += b(p[j], p[j - 1]);
        bwd_min = std::min(bwd_min, b(p[j], p[j - 1]));
        if (bwd_min < floor) break;
        if (i == 1 && j == n - 1) continue;  // reversing everything but node 0 is the mirror ring
        const std::uint32_t before = p[i - 1], after = p[(j + 1) % n];
        const double new_a = b(before, p[j]), new_b = b(p[i], after);
        if (new_a < floor || new_b < floor) continue;
        const double gain = new_a + new_b + bwd - b(before, p[i]) - b(p[j], after) - fwd;
        if (!gain_worth(gain, total)) continue;
        std::reverse(p.begin() + static_cast<std::ptrdiff_t>(i), p.begin() + static_cast<std::ptrdiff_t>(j) + 1);
        improved = true;
      }
    }
    if (!improved) return;
  }
}

ring_order heuristic(const bw& b, const ring_order_options& opt) {
  std::vector<std::uint32_t> identity(b.n);
  std::iota(identity.begin(), identity.end(), 0u);
  ring_order best = evaluate_ring(b.b, b.n, identity);
  {
    ring_order g = evaluate_ring(b.b, b.n, greedy_ring(b));
    if (better(g, best, opt.tiebreak)) best = std::move(g);
  }

  // No ring beats the narrowest "widest out-link" or "widest in-link" of any node.
  double upper = inf;
  for (std::size_t i = 0; i < b.n; ++i) {
    double out_w = 0.0, in_w = 0.0;
    for (std::size_t j = 0; j < b.n; ++j) {
      if (j == i) continue;
      out_w = std::max(out_w, b(i, j));
      in_w = std::max(in_w, b(j, i));
    }
    upper = std::min({upper, out_w, in_w});
  }
  std::vector<double> thresholds;
  for (std::size_t i = 0; i < b.n; ++i) {
    for (std::size_t j = 0; j < b.n; ++j) {
      const double v = b(i, j);
      if (i != j && v > best.bottleneck && v <= upper) thresholds.push_back(v);
    }
  }
  std::sort(thresholds.begin(), thresholds.end());
  thresholds.erase(std::unique(thresholds.begin(), thresholds.end()), thresholds.end());

  // Invariant: a ring with bottleneck >= thresholds[lo] is known (lo = -1: best so far);
  // the search failed at thresholds[hi] (hi = size: not tried).
  std::ptrdiff_t lo = -1, hi = static_cast<std::ptrdiff_t>(thresholds.size());
  while (hi - lo > 1) {
    const std::ptrdiff_t mid = lo + (hi - lo) / 2;
    cycle_search search(b, thresholds[static_cast<std::size_t>(mid)]);
    std::vector<std::uint32_t> found = search.run(opt.search_budget);
    if (found.empty()) {
      hi = mid;
      continue;
    }
    ring_order cand = evaluate_ring(b.b, b.n, found);
    if (better(cand, best, opt.tiebreak)) best = std::move(cand);
    lo = std::upper_bound(thresholds.begin(), thresholds.end(), best.bottleneck) - thresholds.begin() - 1;
    lo = std::max(lo, mid);
  }

  if (opt.tiebreak == ring_tiebreak::max_sum) {
    std::vector<std::uint32_t> p = best.order;
    polish_sum(b, best.bottleneck, p);
    rotate_to_zero(p);
    ring_order cand = evaluate_ring(b.b, b.n, p);
    if (better(cand, best, opt.tiebreak)) best = std::move(cand);
  }
  best.exact = false;
  return best;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

}  // namespace

ring_order evaluate_ring(std::span<const double> bandwidth, std::size_t n, std::span<const std::uint32_t> order) {
  DTRAIN_ASSERT(bandwidth.size() == n * n && order.size() == n);
  std::vector<char> seen(n, 0);
  for (const std::uint32_t v : order) {
    DTRAIN_ASSERT(v < n && !seen[v]);
    seen[v] = 1;
  }
  ring_order r;
  r.order.assign(order.begin(), order.end());
  if (n == 0) return r;
  rotate_to_zero(r.order);
  if (n == 1) {
    r.bottleneck = inf;
    return r;
  }
  r.bottleneck = inf;
  for (std::size_t k = 0; k < n; ++k) {
    const double v = bandwidth[std::size_t{r.order[k]} * n + r.order[(k + 1) % n]];
    r.bottleneck = std::min(r.bottleneck, v);
    r.total += v;
  }
  return r;
}

result<ring_order> best_ring_order(std::span<const double> bandwidth, std::size_t n,
                                   const ring_order_options& options) {
  if (n == 0) return invalid_argument("best_ring_order: n = 0");
  if (n > std::numeric_limits<std::uint32_t>::max()) return invalid_argument("best_ring_order: n exceeds 2^32 - 1");
  if (n > std::numeric_limits<std::size_t>::max() / n || bandwidth.size() != n * n) {
    return invalid_argument("best_ring_order: " + std::to_string(bandwidth.size()) +
                            " bandwidth entries is not a square matrix for n = " + std::to_string(n));
  }
  if (options.exact_up_to > ring_order_exact_max) {
    return invalid_argument("best_ring_order: exact_up_to = " + std::to_string(options.exact_up_to) +
                            " exceeds " + std::to_string(ring_order_exact_max));
  }
  for (std::size_t k = 0; k < bandwidth.size(); ++k) {
    const double v = bandwidth[k];
    if (!std::isfinite(v) || v < 0.0) {
      return invalid_argument("best_ring_order: B(" + std::to_string(k / n) + "," + std::to_string(k % n) +
                              ") = " + num(v) + " is not a finite non-negative bandwidth");
    }
  }
  const bw b{bandwidth, n};
  if (n <= 2 || n <= options.exact_up_to) {
    std::vector<std::uint32_t> order(n);
    std::iota(order.begin(), order.end(), 0u);
    if (n > 2) {
      order = exact_bottleneck(b);
      if (options.tiebreak == ring_tiebreak::max_sum) {
        const double floor = evaluate_ring(bandwidth, n, order).bottleneck;
        order = exact_max_sum(b, floor);
      }
    }
    ring_order r = evaluate_ring(bandwidth, n, order);
    r.exact = true;
    return r;
  }
  return heuristic(b, options);
}

}  // namespace dtrain::topology
