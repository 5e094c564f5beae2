// Ring all-reduce: Gloo's exact-sum grid, every dense codec against a one-thread replay
// of the documented hop order, weights, dropped and clipped peers, residuals, crashes,
// garbage from a fake peer, back-to-back runs and create() errors.
#include "dtrain/net/allreduce_ring.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "dtrain/codec/registry.h"
#include "dtrain/core/rng.h"
#include "net_test_util.h"

using namespace dtrain;
using namespace dtrain::net;
using namespace dtrain::net::test;
using namespace std::chrono_literals;

namespace {

auto ring_maker(const collective_options& o, std::size_t count, ring_options ro = {}) {
  return [o, count, ro](rank_t, transport& t) { return ring_allreduce::create(t, count, o, ro); };
}

// The ring's documented arithmetic replayed on one thread: chunk j (segment g) starts at
// peer j + 1 with fl(w * x), each later peer decodes, adds fl(w * x); the owner divides by
// W (fp32, rank order) and round-trips through the codec. Deterministic codecs only.
std::vector<float> replay_ring(const std::vector<std::vector<float>>& x, const std::vector<float>& w,
                               const std::string& spec, std::size_t max_seg = std::size_t{1} << 20) {
  const std::size_t n = x.size(), count = x[0].size();
  auto c = codec::make_codec(spec);
  REQUIRE(c.ok());
  auto rt = [&](std::span<const float> in, std::span<float> out) {
    std::vector<std::byte> buf((*c)->max_encoded_bytes(in.size()));
    auto len = (*c)->encode(in, buf);
    REQUIRE(len.ok());
    REQUIRE((*c)->decode(std::span(buf).first(*len), out).ok());
  };
  float W = 0.0f;
  for (float v : w) W += v;
  const std::size_t largest = count / n + (count % n ? 1 : 0);
  const std::size_t G = std::max<std::size_t>(1, (largest + max_seg - 1) / max_seg);
  std::vector<float> out(count);
  for (std::size_t j = 0; j < n; ++j) {
    const std::size_t cbase = count / n, extra = count % n;
    const std::size_t coff = j * cbase + std::min(j, extra), clen = cbase + (j < extra ? 1 : 0);
    for (std::size_t g = 0; g < G; ++g) {
      const std::size_t sbase = clen / G, sextra = clen % G;
      const std::size_t off = coff + g * sbase + std::min(g, sextra), len = sbase + (g < sextra ? 1 : 0);
      std::vector<float> p(len, 0.0f), tmp(len);
      if (n == 1) {
        rt(std::span(x[0]).subspan(off, len), p);
        std::copy(p.begin(), p.end(), out.begin() + static_cast<std::ptrdiff_t>(off));
        continue;
      }
      const std::size_t first = (j + 1) % n;
      if (w[first] != 0.0f)
        for (std::size_t k = 0; k < len; ++k) p[k] += w[first] * x[first][off + k];
      for (std::size_t h = 1; h < n; ++h) {
        const std::size_t i = (j + 1 + h) % n;
        rt(p, tmp);
        p = tmp;
        if (w[i] != 0.0f)
          for (std::size_t k = 0; k < len; ++k) p[k] += w[i] * x[i][off + k];
      }
      for (auto& v : p) v = v / W;
      rt(p, tmp);
      std::copy(tmp.begin(), tmp.end(), out.begin() + static_cast<std::ptrdiff_t>(off));
    }
  }
  return out;
}

}  // namespace

TEST_CASE("ring: identity gives fl(exact_sum / n) on every peer (Gloo exact-sum grid)") {
  const std::size_t n = GENERATE(range(1, 10));
  const std::size_t count = GENERATE(values<std::size_t>({0, 1, 7, 1000, 100003}));
  CAPTURE(n, count);
  const auto x = exact_sum_inputs(n, count);
  const auto out = average_on_peers(n, ring_maker(opts("identity"), count), x);
  check_exact_sum_result(out, n, count);
  if (n > 1) {
    // Bytes: n - 1 metadata headers; the reduce-scatter sends every chunk but this peer's
    // own and the all-gather every chunk but the next peer's (identity: 28 + 4 len bytes).
    auto payload = [&](std::size_t j) { return 28 + 4 * (count / n + (j < count % n ? 1 : 0)); };
    for (std::size_t r = 0; r < n; ++r) {
      std::size_t sent = 24 * (n - 1), received = 24 * (n - 1);
      for (std::size_t j = 0; j < n; ++j) {
        sent += (j != r ? payload(j) : 0) + (j != (r + 1) % n ? payload(j) : 0);
        received += (j != (r + n - 1) % n ? payload(j) : 0) + (j != r ? payload(j) : 0);
      }
      CHECK(out[r].report.bytes_sent == sent);
      CHECK(out[r].report.bytes_received == received);
    }
  }
}

TEST_CASE("ring: a lossy codec over the whole grid is bit-identical and matches the replay") {
  const std::size_t n = GENERATE(range(1, 10));
  const std::size_t count = GENERATE(values<std::size_t>({0, 1, 7, 1000, 100003}));
  CAPTURE(n, count);
  const auto x = exact_sum_inputs(n, count);
  const auto out = average_on_peers(n, ring_maker(opts("bf16"), count), x);
  check_all_ok(out);
  const auto expect = replay_ring(x, std::vector<float>(n, 1.0f), "bf16");
  for (std::size_t r = 0; r < n; ++r) CHECK(same_bits(out[r].data, expect));
  // bf16 rounds within 2^-8 relative. Hop h rounds a partial of at most h M (M = i n + n
  // bounds the inputs), the owner a mean below M: the error of the mean is at most
  // 2^-8 M ((n - 1) / 2 + 1) = 2^-9 M (n + 1).
  CHECK(worst_exact_sum_error(out[0].data, n, static_cast<double>(n + 1)) <= std::ldexp(1.0, -9));
}

TEST_CASE("ring: every dense codec gives bit-identical results within its bound") {
  struct codec_case {
    const char* spec;
    double rms_tol;      // RMS error vs the exact mean, relative to the data's RMS (~1)
    bool deterministic;  // the replay reproduces it bit for bit
  };
  const codec_case cc = GENERATE(values<codec_case>({
      {"identity", 1e-6, true},
      {"fp16", 2e-3, true},
      {"bf16", 1e-2, true},
      {"minmax:bits=8", 2e-2, true},
      {"minmax:bits=4,rounding=stochastic", 0.3, false},
      {"blockwise:bits=8,block=256", 2e-2, true},
      {"blockwise:bits=4,block=64", 0.2, true},
      {"uniform8", 5e-2, true},
      {"quantile8", 5e-2, true},
      {"fp4:block=128", 0.4, true},
  }));
  const auto shape = GENERATE(values<std::pair<std::size_t, std::size_t>>({{2, 1}, {3, 1000}, {4, 4099}, {7, 7}}));
  const auto [n, count] = shape;
  CAPTURE(cc.spec, n, count);
  const auto x = noisy_inputs(n, count, 11);
  const std::vector<float> w(n, 1.0f);
  const auto out = average_on_peers(n, ring_maker(opts(cc.spec), count), x);
  check_all_ok(out);
  for (std::size_t r = 1; r < n; ++r) CHECK(same_bits(out[r].data, out[0].data));
  if (cc.deterministic) CHECK(same_bits(out[0].data, replay_ring(x, w, cc.spec)));
  CHECK(rms_error(out[0].data, exact_mean(x, w)) <= cc.rms_tol);
}

TEST_CASE("ring: small segments run many rings and still match the replay") {
  const std::size_t max_seg = GENERATE(values<std::size_t>({1, 3, 64}));
  const std::size_t n = 3, count = 1000;
  CAPTURE(max_seg);
  const auto x = exact_sum_inputs(n, count);
  ring_options ro;
  ro.max_segment_floats = max_seg;
  SECTION("identity stays exact") {
    const auto out = average_on_peers(n, ring_maker(opts("identity"), count, ro), x);
    check_all_ok(out);
    for (std::size_t i = 0; i < count; ++i) REQUIRE(out[2].data[i] == exact_sum_mean(n, i));
  }
  SECTION("minmax matches the segment-wise replay") {
    const auto out = average_on_peers(n, ring_maker(opts("minmax:bits=8"), count, ro), x);
    check_all_ok(out);
    const auto expect = replay_ring(x, std::vector<float>(n, 1.0f), "minmax:bits=8", max_seg);
    for (std::size_t r = 0; r < n; ++r) CHECK(same_bits(out[r].data, expect));
  }
}

TEST_CASE("ring: weights") {
  const std::size_t n = 4, count = 1001;
  const auto x = noisy_inputs(n, count, 5);
  SECTION("hivemind weights (0.15, 0, 0.35, 0.45)") {
    const auto& w = kHivemindWeights;
    const auto out = average_on_peers(
        n, [&](rank_t r, transport& t) { return ring_allreduce::create(t, count, opts("identity", w[r])); }, x);
    check_hivemind_weights(out, x, replay_ring(x, w, "identity"));
  }
  SECTION("all weights zero: the plain mean") {
    const auto xf = exact_sum_inputs(n, count);
    const auto out = average_on_peers(n, ring_maker(opts("identity", 0.0f), count), xf);
    check_all_ok(out);
    for (std::size_t i = 0; i < count; ++i) REQUIRE(out[3].data[i] == exact_sum_mean(n, i));
    CHECK(out[0].report.contributors == n);
    CHECK(out[0].report.weight_sum == static_cast<double>(n));
  }
}

TEST_CASE("ring: a non-finite peer is dropped, or fails every peer when rejection is off") {
  const std::size_t n = 4, count = 999;
  auto x = exact_sum_inputs(n, count);
  x[2][17] = std::numeric_limits<float>::quiet_NaN();
  x[2][500] = std::numeric_limits<float>::infinity();
  SECTION("dropped: the mean of the others") {
    const auto out = average_on_peers(n, ring_maker(opts("identity"), count), x, true);
    check_all_ok(out);
    for (std::size_t r = 0; r < n; ++r) {
      CHECK(out[r].report.dropped == 1);
      CHECK(out[r].report.contributors == 3);
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < count; ++i) {
        const float others = static_cast<float>(3 * i * n + 0 + 1 + 3) / 3.0f;  // ranks 0, 1, 3
        wrong += out[r].data[i] != others;
      }
      CHECK(wrong == 0);
    }
    // The dropped peer sent nothing: its residual is its data (NaN and all).
    CHECK(std::isnan(out[2].residual[17]));
    CHECK(out[2].residual[3] == x[2][3]);
  }
  SECTION("reject_nonfinite off: invalid_argument everywhere, data unchanged") {
    auto o = opts("identity");
    o.robust.reject_nonfinite = false;
    const auto out = average_on_peers(n, ring_maker(o, count), x);
    for (std::size_t r = 0; r < n; ++r) {
      CHECK(out[r].st.code() == status_code::invalid_argument);
      CHECK(same_bits(out[r].data, x[r]));
    }
  }
  SECTION("every peer non-finite: nothing to average") {
    for (auto& v : x) v[0] = std::numeric_limits<float>::quiet_NaN();
    const auto out = average_on_peers(n, ring_maker(opts("identity"), count), x);
    for (std::size_t r = 0; r < n; ++r) CHECK(out[r].st.code() == status_code::invalid_argument);
  }
}

TEST_CASE("ring: median-norm clipping scales a huge peer down to the median norm") {
  const std::size_t n = 5, count = 300;
  auto x = noisy_inputs(n, count, 9);
  for (auto& v : x[3]) v *= 1000.0f;
  auto o = opts("identity");
  o.robust.clip_to_median_norm = true;
  const auto out = average_on_peers(n, ring_maker(o, count), x);
  check_all_ok(out);
  // Independent expectation: norms in double, lower median, scaled contributions.
  std::vector<double> norms(n);
  for (std::size_t r = 0; r < n; ++r) {
    double s = 0;
    for (float v : x[r]) s += static_cast<double>(v) * v;
    norms[r] = std::sqrt(s);
  }
  auto sorted = norms;
  std::sort(sorted.begin(), sorted.end());
  const double med = sorted[(n - 1) / 2];
  std::vector<double> m(count, 0.0);
  for (std::size_t r = 0; r < n; ++r) {
    const double s = norms[r] > med ? med / norms[r] : 1.0;
    for (std::size_t i = 0; i < count; ++i) m[i] += s * x[r][i] / static_cast<double>(n);
  }
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t i = 0; i < count; ++i) REQUIRE(out[r].data[i] == Approx(m[i]).margin(1e-5));
  // Without clipping the huge peer would dominate (RMS about 200 instead of about 1).
  double rms = 0;
  for (float v : out[0].data) rms += static_cast<double>(v) * v;
  CHECK(std::sqrt(rms / count) < 3.0);
}

TEST_CASE("ring: the residual is data - D(C(data)) per chunk and segment") {
  const std::string spec = GENERATE(values<std::string>({"fp16", "minmax:bits=4", "fp4:block=128"}));
  const std::size_t n = GENERATE(values<std::size_t>({1, 3}));
  const std::size_t count = 1000;
  CAPTURE(spec, n);
  ring_options ro;
  ro.max_segment_floats = 128;
  const auto x = noisy_inputs(n, count, 3);
  const auto out = average_on_peers(n, ring_maker(opts(spec), count, ro), x, true);
  check_all_ok(out);
  auto c = codec::make_codec(spec);
  REQUIRE(c.ok());
  const std::size_t largest = count / n + (count % n ? 1 : 0);
  const std::size_t G = (largest + ro.max_segment_floats - 1) / ro.max_segment_floats;
  for (std::size_t r = 0; r < n; ++r) {
    std::vector<float> decoded(count);
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t coff = j * (count / n) + std::min(j, count % n), clen = count / n + (j < count % n);
      for (std::size_t g = 0; g < G; ++g) {
        const std::size_t off = coff + g * (clen / G) + std::min(g, clen % G), len = clen / G + (g < clen % G);
        std::vector<std::byte> buf((*c)->max_encoded_bytes(len));
        auto w = (*c)->encode(std::span(x[r]).subspan(off, len), buf);
        REQUIRE(w.ok());
        REQUIRE((*c)->decode(std::span(buf).first(*w), std::span(decoded).subspan(off, len)).ok());
      }
    }
    for (std::size_t i = 0; i < count; ++i) REQUIRE(out[r].residual[i] == x[r][i] - decoded[i]);
    // One peer: the result is the codec round trip itself.
    if (n == 1) CHECK(same_bits(out[0].data, decoded));
  }
}

TEST_CASE("ring: a peer crashing mid-run fails every survivor with data unchanged") {
  const std::size_t n = 4, count = 4000;
  const std::size_t crash_at = GENERATE(values<std::size_t>({0, 3, 5}));  // metadata, first hop, later hop
  CAPTURE(crash_at);
  const auto x = exact_sum_inputs(n, count);
  inproc_fabric f(n);
  auto o = opts("fp16");
  o.timeout = 150ms;
  std::vector<std::unique_ptr<crashing_transport>> wrap(n);
  wrap[1] = std::make_unique<crashing_transport>(f, 1, crash_at);
  ring_options ro;
  ro.max_segment_floats = 256;  // several segments, so the crash lands mid-run
  const auto out = average_on_peers(
      f,
      [&](rank_t r, transport& t) {
        return ring_allreduce::create(r == 1 ? static_cast<transport&>(*wrap[1]) : t, count, o, ro);
      },
      x, true);
  for (std::size_t r = 0; r < n; ++r) {
    CAPTURE(r, out[r].st.to_string());
    CHECK((out[r].st.code() == status_code::aborted || out[r].st.code() == status_code::deadline_exceeded));
    CHECK(same_bits(out[r].data, x[r]));
    CHECK(std::all_of(out[r].residual.begin(), out[r].residual.end(), [](float v) { return v == -7.0f; }));
  }
}

TEST_CASE("ring: garbage from a fake peer is data_loss with data unchanged") {
  const std::size_t n = 3, count = 10;  // chunks of 4, 3, 3
  const rank_t fake = 2;
  const auto x = exact_sum_inputs(n, count);
  const bool bad_meta = GENERATE(true, false);
  CAPTURE(bad_meta);
  auto o = opts("fp16");
  o.timeout = 150ms;
  o.channel = 5;
  std::vector<std::byte> meta(24, std::byte{0x5A});
  if (!bad_meta) {  // a valid header: magic, version 1, kind meta, weight 1
    const std::uint32_t magic = 0x48435444u;
    const float weight = 1.0f;
    std::fill(meta.begin(), meta.end(), std::byte{0});
    std::memcpy(meta.data(), &magic, 4);
    meta[4] = std::byte{1};
    meta[5] = std::byte{1};
    std::memcpy(meta.data() + 8, &weight, 4);
  }
  auto c = codec::make_codec("fp16");
  REQUIRE(c.ok());
  std::vector<float> chunk(3, 1.5f);
  std::vector<std::byte> payload((*c)->max_encoded_bytes(3));
  REQUIRE((*c)->encode(chunk, payload).ok());
  payload.back() ^= std::byte{0x01};
  inproc_fabric f(n);
  std::vector<peer_outcome> out(n);
  run_peers(f, [&](rank_t r, transport& t) {
    if (r != fake) {
      out[r].data = x[r];
      auto ring = ring_allreduce::create(t, count, o);
      out[r].st = ring.ok() ? (*ring)->average(out[r].data, 0) : ring.status();
      return;
    }
    // The fake: metadata to both peers (garbage or valid), then a corrupted first-hop
    // payload to its next peer (rank 0), which expects chunk 1 (3 floats).
    std::vector<std::byte> in(64 * 24);
    const tag_t tmeta = make_tag(o.channel, 0, 1);
    std::vector<op> ops;
    for (rank_t p = 0; p < 2; ++p) {
      ops.push_back(*t.post_recv(p, tmeta, std::span(in).subspan(p * 24, 24)));
      ops.push_back(*t.post_send(p, tmeta, meta));
    }
    const tag_t thop = make_tag(o.channel, 0, 0x4000);
    ops.push_back(*t.post_send(0, thop, payload));
    ops.push_back(*t.post_recv(1, thop, std::span(in).subspan(100, 200)));
    wait_all(t, ops, after(150ms)).ignore();
  });
  for (rank_t r = 0; r < 2; ++r) {
    CAPTURE(r, out[r].st.to_string());
    CHECK(same_bits(out[r].data, x[r]));
  }
  // Rank 0 reads the corrupt payload (or both read the garbage metadata).
  CHECK(out[0].st.code() == status_code::data_loss);
  if (bad_meta) CHECK(out[1].st.code() == status_code::data_loss);
  else CHECK(!out[1].st.ok());
}

TEST_CASE("ring: back-to-back runs use fresh sequence numbers") {
  const std::size_t n = 4, count = 777;
  inproc_fabric f(n);
  std::vector<std::vector<float>> results(n);
  std::vector<status> st(n);
  run_peers(f, [&](rank_t r, transport& t) {
    auto ring = ring_allreduce::create(t, count, opts("identity"));
    if (!ring.ok()) {
      st[r] = ring.status();
      return;
    }
    for (std::size_t run = 0; run < 3 && st[r].ok(); ++run) {
      auto x = exact_sum_input(n, r, count);
      for (auto& v : x) v += static_cast<float>(run * 1000);  // a different vector each run
      st[r] = (*ring)->average(x, run);
      results[r].insert(results[r].end(), x.begin(), x.end());
    }
  });
  for (std::size_t r = 0; r < n; ++r) {
    REQUIRE(st[r].ok());
    REQUIRE(results[r].size() == 3 * count);
    for (std::size_t run = 0; run < 3; ++run) {
      for (std::size_t i = 0; i < count; ++i) {
        const double sum = static_cast<double>(i * n * n + n * (n - 1) / 2 + run * 1000 * n);
        REQUIRE(results[r][run * count + i] == static_cast<float>(sum) / static_cast<float>(n));
      }
    }
  }
}

TEST_CASE("ring: create() and average() refuse bad arguments") {
  inproc_fabric f(2);
  transport& t = f.endpoint(0);
  for (const char* spec : {"topk", "dct_topk", "randomk", "sign", "powersgd:rows=4,cols=4"}) {
    CAPTURE(spec);
    auto r = ring_allreduce::create(t, 16, opts(spec));
    REQUIRE(r.status().code() == status_code::invalid_argument);
    CHECK(r.status().message().find("butterfly") != std::string::npos);
  }
  CHECK(ring_allreduce::create(t, 16, opts("ef:inner=fp16")).status().code() == status_code::invalid_argument);
  CHECK(ring_allreduce::create(t, 16, opts("nonsense")).status().code() == status_code::invalid_argument);
  CHECK(ring_allreduce::create(t, 16, opts("identity", -1.0f)).status().code() == status_code::invalid_argument);
  CHECK(ring_allreduce::create(t, 16, opts("identity", std::numeric_limits<float>::infinity())).status().code() ==
        status_code::invalid_argument);
  auto o = opts("identity");
  o.robust.trim_fraction = 0.2;
  CHECK(ring_allreduce::create(t, 16, o).status().code() == status_code::invalid_argument);
  o = opts("identity");
  o.timeout = 0ms;
  CHECK(ring_allreduce::create(t, 16, o).status().code() == status_code::invalid_argument);
  o = opts("identity");
  o.channel = 1u << 24;
  CHECK(ring_allreduce::create(t, 16, o).status().code() == status_code::invalid_argument);
  ring_options ro;
  ro.max_segment_floats = 0;
  CHECK(ring_allreduce::create(t, 16, opts("identity"), ro).status().code() == status_code::invalid_argument);

  auto ring = ring_allreduce::create(t, 16, opts("identity"));
  REQUIRE(ring.ok());
  CHECK((*ring)->name() == "ring");
  CHECK((*ring)->count() == 16);
  CHECK((*ring)->exact_consensus());
  std::vector<float> wrong(15), data(16), res(3);
  CHECK((*ring)->average(wrong, 0).code() == status_code::invalid_argument);
  CHECK((*ring)->average(data, 0, res).code() == status_code::invalid_argument);
}
