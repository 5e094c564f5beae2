// Writes the fuzzer's seed corpus: valid payloads of every registered codec (default specs
// plus a few variants) at several sizes, each as a mode-0 and a mode-1 (re-seal) input.
// Usage: codec_fuzz_make_corpus <out_dir>
#include <cstdio>
#include <string>
#include <vector>

#include "dtrain/codec/registry.h"
#include "dtrain/core/rng.h"

using namespace dtrain;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <out_dir>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  std::vector<std::string> specs;
  for (auto s : codec::default_specs()) specs.emplace_back(s);
  // Variants reach other parameter paths; names a build lacks are skipped.
  for (const char* s : {"minmax:bits=1", "minmax:bits=3", "minmax:bits=8", "blockwise:bits=8", "topk:chunk=64,k=4",
                        "topk:chunk=64,k=4,values=bf16", "powersgd:rows=1,cols=9,rank=1",
                        "powersgd:rows=12,cols=5,rank=5"})
    if (codec::make_codec(s).ok()) specs.emplace_back(s);

  int written = 0;
  for (std::size_t si = 0; si < specs.size(); ++si) {
    for (std::size_t n : {0u, 1u, 7u, 9u, 60u, 64u, 300u, 512u}) {
      auto c = codec::make_codec(specs[si]);
      if (!c.ok()) {
        std::fprintf(stderr, "%s: %s\n", specs[si].c_str(), c.status().to_string().c_str());
        return 1;
      }
      counter_rng rng(si, n);
      std::vector<float> x(n);
      for (float& v : x) v = (rng.next_uniform() - 0.5f) * 8.0f;
      std::vector<std::byte> p(1 + (*c)->max_encoded_bytes(n));
      auto r = (*c)->encode(x, std::span(p).subspan(1));
      if (!r.ok()) continue;  // e.g. PowerSGD accepts only rows*cols elements
      p.resize(1 + *r);
      for (int mode = 0; mode < 2; ++mode) {
        p[0] = static_cast<std::byte>(mode);
        std::string name = std::string((*c)->name()) + "_" + std::to_string(si) + "_n" + std::to_string(n) + "_m" +
                           std::to_string(mode);
        std::FILE* f = std::fopen((dir + "/" + name).c_str(), "wb");
        if (!f || std::fwrite(p.data(), 1, p.size(), f) != p.size() || std::fclose(f) != 0) {
          std::fprintf(stderr, "cannot write %s/%s\n", dir.c_str(), name.c_str());
          return 1;
        }
        ++written;
      }
    }
  }
  std::printf("wrote %d seed payloads for %zu specs to %s\n", written, specs.size(), dir.c_str());
  return 0;
}
