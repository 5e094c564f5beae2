// lib/topology/schedule.cpp: static and one-peer exponential schedules.
#include "dtrain/topology/schedule.h"

#include <utility>

namespace dtrain::topology {

schedule static_schedule(mixing w) {
  schedule s;
  s.rounds.push_back(std::move(w));
  return s;
}

std::size_t ceil_log2(std::size_t n) noexcept {
  std::size_t tau = 0;
  while (tau < 63 && (std::size_t{1} << tau) < n) ++tau;
  return tau;
}

schedule one_peer_exponential(std::size_t n) {
  DTRAIN_ASSERT(n >= 1);
  const std::size_t tau = ceil_log2(n);
  if (tau == 0) return static_schedule(mixing::identity(1));
  schedule s;
  s.rounds.reserve(tau);
  for (std::size_t k = 0; k < tau; ++k) {
    const std::size_t hop = (std::size_t{1} << k) % n;
    mixing m = mixing::zeros(n);
    for (std::size_t i = 0; i < n; ++i) {
      m(i, i) = 0.5;
      m(i, (i + n - hop) % n) = 0.5;  // receive from the node that sends to i
    }
    s.rounds.push_back(std::move(m));
  }
  return s;
}

}  // namespace dtrain::topology
