// lib/topology/graph.cpp: graph queries (degrees, symmetry, strong connectivity) and
// validation.
#include "dtrain/topology/graph.h"

#include <algorithm>
#include <limits>
#include <string>

namespace dtrain::topology {

namespace {

constexpr std::size_t max_nodes = std::numeric_limits<std::uint32_t>::max();

// Nodes reachable from node 0 along out (or, with `in`, reversed) edges.
std::size_t reach_count(const std::vector<std::vector<std::uint32_t>>& adj) {
  std::vector<char> seen(adj.size(), 0);
  std::vector<std::uint32_t> stack{0};
  seen[0] = 1;
  std::size_t count = 1;
  while (!stack.empty()) {
    const std::uint32_t u = stack.back();
    stack.pop_back();
    for (const std::uint32_t v : adj[u]) {
      if (!seen[v]) {
        seen[v] = 1;
        ++count;
        stack.push_back(v);
      }
    }
  }
  return count;
}

}  // namespace

std::vector<std::vector<std::uint32_t>> graph::in_neighbors() const {
  std::vector<std::vector<std::uint32_t>> in(n);
  // Walking sources in increasing order appends each list already sorted.
  for (std::size_t i = 0; i < n; ++i) {
    for (const std::uint32_t j : out[i]) in[j].push_back(static_cast<std::uint32_t>(i));
  }
  return in;
}

bool graph::symmetric() const {
  for (std::size_t i = 0; i < n; ++i) {
    for (const std::uint32_t j : out[i]) {
      if (!has_edge(j, static_cast<std::uint32_t>(i))) return false;
    }
  }
  return true;
}

std::size_t graph::max_out_degree() const {
  std::size_t m = 0;
  for (const auto& o : out) m = std::max(m, o.size());
  return m;
}

std::size_t graph::max_in_degree() const {
  std::vector<std::size_t> deg(n, 0);
  for (const auto& o : out) {
    for (const std::uint32_t j : o) ++deg[j];
  }
  return deg.empty() ? 0 : *std::max_element(deg.begin(), deg.end());
}

std::size_t graph::edge_count() const {
  std::size_t m = 0;
  for (const auto& o : out) m += o.size();
  return m;
}

bool graph::has_edge(std::uint32_t i, std::uint32_t j) const {
  DTRAIN_ASSERT(i < n && j < n);
  return std::binary_search(out[i].begin(), out[i].end(), j);
}

bool graph::strongly_connected() const {
  if (n <= 1) return true;
  // Strongly connected <=> node 0 reaches everyone and everyone reaches node 0.
  return reach_count(out) == n && reach_count(in_neighbors()) == n;
}

status graph::validate() const {
  if (n > max_nodes) return invalid_argument("graph: n = " + std::to_string(n) + " exceeds 2^32 - 1 nodes");
  if (out.size() != n) {
    return invalid_argument("graph: out has " + std::to_string(out.size()) + " lists for n = " + std::to_string(n));
  }
  for (std::size_t i = 0; i < n; ++i) {
    const auto& o = out[i];
    for (std::size_t k = 0; k < o.size(); ++k) {
      const char* defect = o[k] >= n                 ? "is not a node"
                           : o[k] == i               ? "is a self loop"
                           : k > 0 && o[k] <= o[k - 1] ? "breaks strictly increasing order"
                                                       : nullptr;
      if (defect != nullptr) {
        return invalid_argument("graph (n = " + std::to_string(n) + "): out[" + std::to_string(i) + "][" +
                                std::to_string(k) + "] = " + std::to_string(o[k]) + " " + defect);
      }
    }
  }
  return ok_status();
}

result<graph> from_edges(std::size_t n, std::span<const std::pair<std::uint32_t, std::uint32_t>> edges) {
  if (n > max_nodes) return invalid_argument("from_edges: n = " + std::to_string(n) + " exceeds 2^32 - 1 nodes");
  graph g{n, std::vector<std::vector<std::uint32_t>>(n)};
  for (const auto& [i, j] : edges) {
    if (i >= n || j >= n) {
      return invalid_argument("from_edges: edge (" + std::to_string(i) + ", " + std::to_string(j) +
                              ") has an endpoint >= n = " + std::to_string(n));
    }
    if (i == j) return invalid_argument("from_edges: self loop (" + std::to_string(i) + ", " + std::to_string(i) + ")");
    g.out[i].push_back(j);
  }
  for (auto& o : g.out) {
    std::sort(o.begin(), o.end());
    o.erase(std::unique(o.begin(), o.end()), o.end());
  }
  return g;
}

}  // namespace dtrain::topology
