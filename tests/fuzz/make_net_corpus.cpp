// Seed corpora for the net fuzz targets: runs honest 2-peer collectives (every collective,
// codec and count of net_fuzz_setup.h, and each option on its own), records what rank 1
// sends, and writes
// - into argv[1] (net_collective_fuzz): the 3 configuration bytes, then every message
//   as a u16 length and its bytes, in tag order;
// - into argv[2] (net_message_fuzz): each header or gossip frame behind its selector byte.
// Exits non-zero if a collective fails honestly or sends on other tags than slots_of()
// lists: then the harness and the library disagree about the protocol.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dtrain/net/transport_forward.h"
#include "dtrain/net/transport_inproc.h"
#include "net_fuzz_setup.h"

namespace {

using namespace dtrain;
using namespace dtrain::net;
using namespace dtrain::net::fuzz;
using bytes = std::vector<std::byte>;

struct message {
  tag_t tag;
  bytes data;
};

class recording_transport final : public forwarding_transport {
 public:
  using forwarding_transport::forwarding_transport;
  result<op> post_send(rank_t to, tag_t tag, std::span<const std::byte> data) override {
    sent.push_back({tag, bytes(data.begin(), data.end())});
    return forwarding_transport::post_send(to, tag, data);
  }
  std::vector<message> sent;
};

void write_file(const std::string& path, const bytes& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!f) {
    std::fprintf(stderr, "make_net_corpus: cannot write %s\n", path.c_str());
    std::exit(1);
  }
}

std::string hexname(const std::array<std::uint8_t, 3>& c) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%02x%02x%02x", c[0], c[1], c[2]);
  return buf;
}

// Runs config k honestly on both ranks; writes the seeds. Returns false on a failure.
bool seed(const config& k, const std::string& coll_dir, const std::string& msg_dir, std::size_t& msg_seeds) {
  inproc_fabric f(2);
  status st[2];
  std::vector<message> sent1;
  // Both ranks run their own copy of the collective at once (a collective needs its peer).
  const auto peer = [&](rank_t r) {
    transport& ep = f.endpoint(r);
    recording_transport rec(ep);
    auto a = input_of(k, r, 0);
    auto b = k.pair() ? input_of(k, r, 1) : std::vector<float>(k.count);
    std::vector<float> ra(k.residual ? k.count : 0), rb(k.residual && k.pair() ? k.count : 0);
    st[r] = run_call(k, rec, a, b, ra, rb);
    if (r == 1) sent1 = std::move(rec.sent);
  };
  std::thread t0(peer, 0), t1(peer, 1);
  t0.join();
  t1.join();
  const std::string name = hexname(k.encode());
  if (!st[0].ok() || !st[1].ok()) {
    if (k.nan0 && k.reject_off) return true;  // the documented invalid_argument; nothing to seed
    std::fprintf(stderr, "make_net_corpus: %s (%.*s) failed honestly: %s / %s\n", name.c_str(),
                 static_cast<int>(k.codec_spec().size()), k.codec_spec().data(), st[0].to_string().c_str(),
                 st[1].to_string().c_str());
    return false;
  }
  const std::vector<slot> slots = slots_of(k);
  bool same = sent1.size() == slots.size();
  for (std::size_t i = 0; same && i < slots.size(); ++i) same = sent1[i].tag == slots[i].tag;
  if (!same) {
    std::fprintf(stderr, "make_net_corpus: %s: rank 1 sent %zu messages, slots_of() expects %zu (or other tags)\n",
                 name.c_str(), sent1.size(), slots.size());
    return false;
  }
  const auto cfg = k.encode();
  bytes in;
  for (std::uint8_t b : cfg) in.push_back(static_cast<std::byte>(b));
  for (const message& m : sent1) {
    if (m.data.size() > 0xFFFF) return false;
    in.push_back(static_cast<std::byte>(m.data.size() & 0xFF));
    in.push_back(static_cast<std::byte>(m.data.size() >> 8));
    in.insert(in.end(), m.data.begin(), m.data.end());
  }
  write_file(coll_dir + "/seed_" + name, in);
  for (std::size_t i = 0; i < sent1.size(); ++i) {
    const bytes& m = sent1[i].data;
    std::uint8_t sel = 0;
    if (slots[i].f == framing::header) {
      sel = static_cast<std::uint8_t>((static_cast<unsigned>(m[5]) - 1) << 1);
    } else if (slots[i].f == framing::frame) {
      sel = static_cast<std::uint8_t>(1 | ((static_cast<unsigned>(m[5]) - 1) << 1) |
                                      ((static_cast<unsigned>(m[7]) - 1) << 3));
    } else {
      continue;  // bare codec payloads: codec_decode_fuzz's business
    }
    bytes s{static_cast<std::byte>(sel)};
    s.insert(s.end(), m.begin(), m.end());
    write_file(msg_dir + "/seed_" + name + "_" + std::to_string(i), s);
    ++msg_seeds;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s COLLECTIVE_CORPUS_DIR MESSAGE_CORPUS_DIR\n", argv[0]);
    return 2;
  }
  std::size_t seeds = 0, msg_seeds = 0;
  bool ok = true;
  for (std::size_t c = 0; c < kCollectives; ++c) {
    for (std::uint8_t codec = 0; codec < 4; ++codec) {
      for (std::size_t count : kCounts) {
        config k;
        k.c = static_cast<coll>(c);
        k.codec = codec;
        k.count = count;
        ok = seed(k, argv[1], argv[2], msg_seeds) && ok;
        ++seeds;
        if (count != 5) continue;
        // Each option on its own, at one size.
        for (int opt = 0; opt < 8; ++opt) {
          config v = k;
          switch (opt) {
            case 0: v.residual = true; break;
            case 1: v.variant = true; break;
            case 2: v.variant2 = true; break;
            case 3: v.reject_off = true; break;
            case 4: v.nan0 = true; break;
            case 5: v.listener0 = true; break;
            case 6: v.reseal = true; break;
            case 7: v.round = 5; break;
          }
          ok = seed(v, argv[1], argv[2], msg_seeds) && ok;
          ++seeds;
        }
      }
    }
  }
  std::printf("make_net_corpus: %zu collective seeds, %zu message seeds\n", seeds, msg_seeds);
  return ok ? 0 : 1;
}
