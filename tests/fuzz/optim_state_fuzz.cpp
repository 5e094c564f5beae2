// libFuzzer target for optimizer-state parsing (outer_optimizer::load_state). Byte 0
// picks the optimizer configuration and whether the rest is re-sealed with a fresh
// XXH3 trailer (so mutations reach the field checks); byte 1 picks n. A rejected blob
// must leave the optimizer bit-identical; an accepted one must save back to itself.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "dtrain/core/bytes.h"
#include "dtrain/core/hash.h"
#include "dtrain/optim/outer_adam.h"
#include "dtrain/optim/outer_delayed_nesterov.h"
#include "dtrain/optim/outer_demo.h"
#include "dtrain/optim/outer_sgd.h"
#include "dtrain/optim/outer_sparseloco.h"
#include "fuzz_contract.h"

namespace {

using namespace dtrain;
using namespace dtrain::optim;

[[noreturn]] void fail(const char* what) {
  dtrain::fuzz::contract_violated("optim_state_fuzz", what);
}

template <class T>
std::unique_ptr<outer_optimizer> boxed(result<T> r) {
  if (!r.ok()) return nullptr;
  return std::make_unique<T>(std::move(r).value());
}

std::unique_ptr<outer_optimizer> make(unsigned which, std::size_t n) {
  switch (which % 7) {
    case 0: return boxed(outer_sgd::create(n, sgd_options::diloco()));
    case 1: return boxed(outer_sgd::create(n, sgd_options::fedavg()));
    case 2: return boxed(outer_adam::create(n, adam_options{}));
    case 3: return boxed(outer_adam::create(n, adam_options::adamw()));
    case 4: return boxed(outer_delayed_nesterov::create(n, delayed_nesterov_options{0.7, 0.9, 3}));
    case 5: return boxed(outer_sparseloco::create(n, sparseloco_options{}));
    default: return boxed(outer_demo::create(n, demo_options{}));
  }
}

std::vector<std::byte> save(const outer_optimizer& o) {
  std::vector<std::byte> b(o.state_bytes());
  auto w = o.save_state(b);
  if (!w.ok() || *w != b.size()) fail("save_state");
  return b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const unsigned mode = data[0];
  const std::size_t n = data[1] % 17;
  auto opt = make(mode >> 1, n);
  if (!opt) fail("create");
  // Give the optimizer non-trivial state first, so "unchanged" means something.
  std::vector<float> theta(n, 1.0f), g(n, 0.25f);
  if (!opt->step(theta, g).ok()) fail("step");
  const auto before = save(*opt);

  std::vector<std::byte> blob(size - 2);
  if (!blob.empty()) std::memcpy(blob.data(), data + 2, blob.size());
  if ((mode & 1) && blob.size() >= 8) {
    const auto body = std::span<const std::byte>(blob).first(blob.size() - 8);
    store_le<std::uint64_t>(blob.data() + blob.size() - 8, xxh3_64(body));
  }
  const status st = opt->load_state(blob);
  const auto after = save(*opt);
  if (!st.ok()) {
    if (after != before) fail("a rejected blob changed the optimizer");
  } else if (after != blob) {
    fail("an accepted blob does not save back to the same bytes");
  }
  return 0;
}
