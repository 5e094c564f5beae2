// Downstream smoke test: with an installed dtrain, compress a buffer and decode it, then
// run two DiLoCo peers (threads over the in-process transport) through one outer step.
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include <dtrain/codec/registry.h>
#include <dtrain/diloco/engine.h>
#include <dtrain/net/allreduce_ring.h>
#include <dtrain/net/transport_inproc.h>

namespace {

int codec_roundtrip() {
  auto c = dtrain::codec::make_codec("fp16");
  if (!c.ok()) return 1;
  std::vector<float> x = {1.0f, -2.5f, 0.125f};
  std::vector<std::byte> buf((*c)->max_encoded_bytes(x.size()));
  auto n = (*c)->encode(x, buf);
  if (!n.ok()) return 2;
  std::vector<float> y(x.size());
  if (!dtrain::codec::decode_any(std::span(buf).first(*n), y).ok()) return 3;
  if (y != x) return 4;
  return 0;
}

// Two peers start from 0, "train" to 1 and 3; FedAvg makes both 2.
int diloco_fedavg() {
  dtrain::net::inproc_fabric fabric(2);
  std::vector<float> params[2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
  int rc[2] = {10, 10};
  auto peer = [&](int r) {
    auto& t = fabric.endpoint(static_cast<dtrain::net::rank_t>(r));
    dtrain::diloco::diloco_options o;
    o.inner_steps = 1;
    auto e = dtrain::diloco::diloco_engine::create(
        {std::span<float>(params[r])},
        [&t](std::size_t count, std::uint32_t channel) -> dtrain::result<std::unique_ptr<dtrain::net::averager>> {
          dtrain::net::collective_options co;
          co.channel = channel;
          auto a = dtrain::net::ring_allreduce::create(t, count, co);
          if (!a.ok()) return a.status();
          return std::unique_ptr<dtrain::net::averager>(std::move(*a));
        },
        o, dtrain::diloco::sgd_factory(dtrain::optim::sgd_options::fedavg()));
    if (!e.ok()) return;
    for (float& p : params[r]) p = r == 0 ? 1.0f : 3.0f;  // the inner step
    rc[r] = (*e)->after_inner_step().ok() ? 0 : 11;
  };
  std::thread other(peer, 1);
  peer(0);
  other.join();
  if (rc[0] || rc[1]) return rc[0] ? rc[0] : rc[1];
  for (const auto& p : params)
    for (float v : p)
      if (v != 2.0f) return 12;
  return 0;
}

}  // namespace

int main() {
  if (int rc = codec_roundtrip()) return rc;
  if (int rc = diloco_fedavg()) return rc;
  std::puts("consumer ok");
  return 0;
}
