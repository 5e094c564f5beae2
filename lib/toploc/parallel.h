// lib/toploc/parallel.h (private): runs independent chunks on a few threads. Each worker
// owns its state (a prover or verifier); chunks are claimed through one atomic counter, so
// the result does not depend on the thread count.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

#include "dtrain/core/status.h"

namespace dtrain::toploc::detail {

inline unsigned worker_count(unsigned requested, std::size_t chunks) {
  unsigned t = requested != 0 ? requested : std::max(1u, std::thread::hardware_concurrency());
  return static_cast<unsigned>(std::min<std::size_t>(t, std::max<std::size_t>(chunks, 1)));
}

/// Calls fn(worker_state&, chunk) for every chunk in [0, chunks), on `threads` threads
/// (the caller's thread is one of them), with make_state() called once per worker.
/// Returns the error of the lowest-numbered failing chunk, or ok.
template <class MakeState, class Fn>
status run_chunks(std::size_t chunks, unsigned threads, MakeState make_state, Fn fn) {
  std::atomic<std::size_t> next{0};
  std::mutex mu;
  std::size_t first_bad = chunks;
  status bad;
  auto work = [&] {
    auto state = make_state();
    for (;;) {
      const std::size_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) return;
      status st = fn(state, c);
      if (!st.ok()) {
        std::lock_guard lock(mu);
        if (c < first_bad) {
          first_bad = c;
          bad = std::move(st);
        }
      }
    }
  };
  const unsigned n = worker_count(threads, chunks);
  std::vector<std::jthread> pool;
  pool.reserve(n - 1);
  for (unsigned i = 1; i < n; ++i) {
    try {
      pool.emplace_back(work);
    } catch (...) {
      break;  // no more threads to be had: the ones running (and this one) finish the work
    }
  }
  work();
  pool.clear();  // joins
  return bad;
}

}  // namespace dtrain::toploc::detail
