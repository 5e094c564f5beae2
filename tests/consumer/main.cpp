// Downstream smoke test: compress a buffer with an installed dtrain and decode it.
#include <cstdio>
#include <vector>

#include <dtrain/codec/registry.h>

int main() {
  auto c = dtrain::codec::make_codec("fp16");
  if (!c.ok()) return 1;
  std::vector<float> x = {1.0f, -2.5f, 0.125f};
  std::vector<std::byte> buf((*c)->max_encoded_bytes(x.size()));
  auto n = (*c)->encode(x, buf);
  if (!n.ok()) return 2;
  std::vector<float> y(x.size());
  if (!dtrain::codec::decode_any(std::span(buf).first(*n), y).ok()) return 3;
  if (y != x) return 4;
  std::puts("consumer ok");
  return 0;
}
