// dtrain/topology/graph.h: the communication graph of a sparse (gossip) topology: n
// nodes, each with the sorted list of peers it sends to. Generators live in
// generators.h, mixing weights in mixing.h. Guide: docs/topology.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "dtrain/core/status.h"

namespace dtrain::topology {

/// Directed graph on n nodes; out[i] = sorted, duplicate-free peers that i sends to.
/// No self loops. An undirected graph is a symmetric one (j in out[i] <=> i in out[j]).
/// The generators always return graphs that pass validate(); a hand-built graph should
/// be checked with validate() (or built with from_edges()) before use. The const
/// members below assume a valid graph.
struct graph {
  std::size_t n = 0;
  std::vector<std::vector<std::uint32_t>> out;

  /// in[j] = sorted list of nodes i with an edge i -> j (the nodes j receives from).
  std::vector<std::vector<std::uint32_t>> in_neighbors() const;
  /// True when every edge i -> j has its reverse j -> i.
  bool symmetric() const;
  /// Largest out-degree (0 for an empty graph).
  std::size_t max_out_degree() const;
  /// Largest in-degree (0 for an empty graph).
  std::size_t max_in_degree() const;
  /// Number of directed edges (an undirected edge counts twice).
  std::size_t edge_count() const;
  /// Whether the edge i -> j exists (binary search). @pre i, j < n.
  bool has_edge(std::uint32_t i, std::uint32_t j) const;
  /// True when every node reaches every other along directed edges (n <= 1: true).
  bool strongly_connected() const;
  /// ok, or invalid_argument naming the first defect: out.size() != n, n >= 2^32, a
  /// peer id >= n, a self loop, or an out list that is not strictly increasing.
  status validate() const;
};

/// Builds a graph from a list of directed edges (i, j); duplicates are merged.
/// Errors: invalid_argument for an endpoint >= n, a self loop (i, i), or n >= 2^32.
result<graph> from_edges(std::size_t n, std::span<const std::pair<std::uint32_t, std::uint32_t>> edges);

}  // namespace dtrain::topology
