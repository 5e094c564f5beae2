// Tests for testbed/tiny_gpt.h: gradients against central finite differences in double
// (for every parameter of a tiny model, and a check that the check catches a wrong
// gradient), float vs double, causality, layout, init, errors, and a short training run.
#include "testbed/tiny_gpt.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "dtrain/core/rng.h"
#include "testbed/adamw.h"
#include "testbed/corpus.h"
#include "testbed/eval.h"

using namespace dtrain;
using namespace dtrain::testbed;

namespace {

gpt_config tiny_config() {
  gpt_config c;
  c.vocab = 7;
  c.context = 5;
  c.d_model = 8;
  c.n_head = 2;
  c.n_layer = 2;
  c.d_ff = 12;
  c.max_batch = 2;
  c.init_seed = 3;
  return c;
}

std::vector<std::uint8_t> random_tokens(std::size_t n, std::size_t vocab, std::uint64_t seed) {
  counter_rng r(seed, 99);
  std::vector<std::uint8_t> t(n);
  for (auto& x : t) x = static_cast<std::uint8_t>(r.next_below(static_cast<std::uint32_t>(vocab)));
  return t;
}

// Moves the parameters away from the near-zero init so that every nonlinearity (softmax,
// GELU curvature, LayerNorm) is exercised: weights ~U(-0.5, 0.5), gains 1 ± 0.3.
template <class T>
void scramble(basic_tiny_gpt<T>& m, std::uint64_t seed) {
  counter_rng r(seed, 7);
  for (const auto& t : m.param_layout()) {
    const bool gain = t.name.ends_with(".g");
    for (std::size_t k = 0; k < t.size(); ++k) {
      const double u = static_cast<double>(r.next_uniform()) - 0.5;
      m.params()[t.offset + k] = static_cast<T>(gain ? 1.0 + 0.6 * u : u);
    }
  }
}

struct grad_check_result {
  double max_rel_error = 0;
  std::string worst;  // tensor[index] of the worst entry
};

// Central differences of the loss for every parameter against `analytic`.
// rel = |a − n| / max(|a|, |n|, 1e-3): relative for ordinary gradients, and an absolute
// bound of 1e-9 where a gradient is (near) zero.
grad_check_result check_gradients(basic_tiny_gpt<double>& m, std::span<const std::uint8_t> tokens, std::size_t batch,
                                  std::span<const double> analytic) {
  grad_check_result out;
  const double eps = 1e-5;
  auto p = m.params();
  for (const auto& t : m.param_layout()) {
    for (std::size_t k = 0; k < t.size(); ++k) {
      const std::size_t i = t.offset + k;
      const double saved = p[i];
      p[i] = saved + eps;
      const double up = *m.loss(tokens, batch);
      p[i] = saved - eps;
      const double down = *m.loss(tokens, batch);
      p[i] = saved;
      const double numeric = (up - down) / (2 * eps);
      const double a = analytic[i];
      const double rel = std::fabs(a - numeric) / std::max({std::fabs(a), std::fabs(numeric), 1e-3});
      if (rel > out.max_rel_error) {
        out.max_rel_error = rel;
        out.worst = t.name + "[" + std::to_string(k) + "]";
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("tiny_gpt: analytic gradients match central finite differences for every parameter", "[testbed][tiny_gpt]") {
  const std::uint64_t seed = GENERATE(1, 2);
  CAPTURE(seed);
  auto m = basic_tiny_gpt<double>::create(tiny_config());
  REQUIRE(m.ok());
  scramble(*m, seed);
  const std::size_t batch = 2, len = m->config().context + 1;
  const auto tokens = random_tokens(batch * len, m->config().vocab, seed);
  auto l = m->forward_backward(tokens, batch);
  REQUIRE(l.ok());
  const std::vector<double> analytic(m->grads().begin(), m->grads().end());

  // Every tensor must get a non-trivial gradient, or the check would prove little.
  for (const auto& t : m->param_layout()) {
    double mx = 0;
    for (std::size_t k = 0; k < t.size(); ++k) mx = std::max(mx, std::fabs(analytic[t.offset + k]));
    CAPTURE(t.name);
    CHECK(mx > 1e-4);
  }

  SECTION("every entry agrees to 1e-6") {
    const auto r = check_gradients(*m, tokens, batch, analytic);
    CAPTURE(r.worst, r.max_rel_error);
    CHECK(r.max_rel_error < 1e-6);
  }
  SECTION("the check fails when one entry of any tensor is off by 1e-4 relative") {
    // Perturb the largest-magnitude entry of each tensor in turn.
    for (const auto& t : m->param_layout()) {
      std::size_t arg = t.offset;
      for (std::size_t k = 0; k < t.size(); ++k)
        if (std::fabs(analytic[t.offset + k]) > std::fabs(analytic[arg])) arg = t.offset + k;
      std::vector<double> wrong = analytic;
      wrong[arg] *= 1.0 + 1e-4;
      // Checking only this tensor keeps the test fast: other entries are exact above.
      const double eps = 1e-5;
      auto p = m->params();
      const double saved = p[arg];
      p[arg] = saved + eps;
      const double up = *m->loss(tokens, batch);
      p[arg] = saved - eps;
      const double down = *m->loss(tokens, batch);
      p[arg] = saved;
      const double numeric = (up - down) / (2 * eps);
      const double rel = std::fabs(wrong[arg] - numeric) / std::max({std::fabs(wrong[arg]), std::fabs(numeric), 1e-3});
      CAPTURE(t.name, rel);
      CHECK(rel > 1e-6);
    }
  }
}

TEST_CASE("tiny_gpt: forward_backward overwrites grads and agrees with loss()", "[testbed][tiny_gpt]") {
  auto m = basic_tiny_gpt<double>::create(tiny_config());
  REQUIRE(m.ok());
  scramble(*m, 5);
  const auto tokens = random_tokens(2 * 6, 7, 5);
  const double l1 = *m->forward_backward(tokens, 2);
  const std::vector<double> g1(m->grads().begin(), m->grads().end());
  const double l2 = *m->forward_backward(tokens, 2);
  CHECK(l1 == l2);
  CHECK(std::equal(g1.begin(), g1.end(), m->grads().begin()));  // not accumulated
  std::vector<double> per(2 * 5);
  const double l3 = *m->loss(tokens, 2, per);
  CHECK(l3 == l1);
  double mean = 0;
  for (double x : per) mean += x;
  CHECK(mean / 10 == Approx(l1).epsilon(1e-14));
  CHECK(std::equal(g1.begin(), g1.end(), m->grads().begin()));  // loss() leaves grads alone

  // A batch of one sequence is the mean of its own targets; batch 2 is the mean of both.
  const double a = *m->loss(std::span(tokens).subspan(0, 6), 1);
  const double b = *m->loss(std::span(tokens).subspan(6, 6), 1);
  CHECK((a + b) / 2 == Approx(l1).epsilon(1e-14));
}

TEST_CASE("tiny_gpt: float and double forward passes agree", "[testbed][tiny_gpt]") {
  gpt_config c = gpt_config::small(20, 11);
  c.max_batch = 4;
  auto f = tiny_gpt::create(c);
  auto d = basic_tiny_gpt<double>::create(c);
  REQUIRE(f.ok());
  REQUIRE(d.ok());
  scramble(*f, 3);
  for (std::size_t i = 0; i < f->param_count(); ++i) d->params()[i] = f->params()[i];  // exact copy
  const std::size_t len = c.context + 1;
  const auto tokens = random_tokens(4 * len, c.vocab, 8);
  const float lf = *f->forward_backward(tokens, 4);
  const double ld = *d->forward_backward(tokens, 4);
  CHECK(static_cast<double>(lf) == Approx(ld).epsilon(1e-5));
  // Gradients: compare in norm (single entries can be small and noisy in float).
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < f->param_count(); ++i) {
    const double e = static_cast<double>(f->grads()[i]) - d->grads()[i];
    diff += e * e;
    norm += d->grads()[i] * d->grads()[i];
  }
  CHECK(std::sqrt(diff / norm) < 1e-4);

  std::vector<float> hf(c.context * c.d_model);
  std::vector<double> hd(hf.size());
  REQUIRE(f->forward_hidden(std::span(tokens).subspan(0, c.context), hf).ok());
  REQUIRE(d->forward_hidden(std::span(tokens).subspan(0, c.context), hd).ok());
  double hdiff = 0, hnorm = 0;
  for (std::size_t i = 0; i < hf.size(); ++i) {
    hdiff = std::max(hdiff, std::fabs(static_cast<double>(hf[i]) - hd[i]));
    hnorm = std::max(hnorm, std::fabs(hd[i]));
  }
  CHECK(hdiff / hnorm < 1e-5);
}

TEST_CASE("tiny_gpt: causality (position p depends on tokens [0, p] only)", "[testbed][tiny_gpt]") {
  gpt_config c = gpt_config::small(20, 4);
  c.context = 12;
  c.max_batch = 1;
  auto m = tiny_gpt::create(c);
  REQUIRE(m.ok());
  scramble(*m, 9);
  const std::size_t T = c.context, d = c.d_model;
  const auto base = random_tokens(T + 1, c.vocab, 21);
  std::vector<float> h0(T * d), h1(T * d), l0(T), l1(T);
  REQUIRE(m->forward_hidden(std::span(base).subspan(0, T), h0).ok());
  REQUIRE(m->loss(base, 1, l0).ok());
  const std::size_t t = GENERATE(0, 1, 5, 11);
  CAPTURE(t);
  auto changed = base;
  changed[t] = static_cast<std::uint8_t>((changed[t] + 1) % c.vocab);
  REQUIRE(m->forward_hidden(std::span(changed).subspan(0, T), h1).ok());
  REQUIRE(m->loss(changed, 1, l1).ok());
  for (std::size_t p = 0; p < T; ++p) {
    CAPTURE(p);
    const bool same_h = std::equal(h0.begin() + static_cast<std::ptrdiff_t>(p * d),
                                   h0.begin() + static_cast<std::ptrdiff_t>((p + 1) * d),
                                   h1.begin() + static_cast<std::ptrdiff_t>(p * d));
    // Hidden state p sees tokens [0, p]; the loss at p also sees its target, token p + 1.
    CHECK(same_h == (p < t));
    CHECK((l0[p] == l1[p]) == (p + 1 < t));
  }
  // A prefix gives the same hidden states as the full sequence, position by position.
  std::vector<float> hp(4 * d);
  REQUIRE(m->forward_hidden(std::span(base).subspan(0, 4), hp).ok());
  for (std::size_t i = 0; i < hp.size(); ++i) CHECK(hp[i] == Approx(h0[i]).margin(1e-6));
}

TEST_CASE("tiny_gpt: layout, parameter count and deterministic init", "[testbed][tiny_gpt]") {
  const gpt_config c = gpt_config::small(20, 5);
  auto m = tiny_gpt::create(c);
  REQUIRE(m.ok());
  const auto layout = m->param_layout();
  REQUIRE(layout.size() == 2 + 12 * c.n_layer + 3);
  std::size_t off = 0;
  std::set<std::string> names;
  for (const auto& t : layout) {
    CHECK(t.offset == off);  // contiguous, in order, no gaps
    off += t.size();
    names.insert(t.name);
  }
  CHECK(off == m->param_count());
  CHECK(names.size() == layout.size());
  CHECK(m->param_count() == c.param_count());
  // Closed form for the default shape: V·d + T·d + L·(12d² + 2d·d_ff... ) written out.
  const std::size_t d = c.d_model, f = c.d_ff, V = c.vocab, T = c.context, L = c.n_layer;
  CHECK(m->param_count() ==
        V * d + T * d + L * (4 * d + 3 * d * d + 3 * d + d * d + d + 2 * d * f + f + d) + 2 * d + d * V);
  CHECK(layout[0].name == "wte");
  CHECK(layout.back().name == "head.w");
  CHECK(layout.back().rows == d);
  CHECK(layout.back().cols == V);

  // Init: biases 0, gains 1, weights with std init_std (residual projections smaller).
  for (const auto& t : layout) {
    const auto p = m->params().subspan(t.offset, t.size());
    CAPTURE(t.name);
    if (t.name.ends_with(".g")) {
      CHECK(std::all_of(p.begin(), p.end(), [](float x) { return x == 1.0f; }));
    } else if (!t.is_matrix()) {
      CHECK(std::all_of(p.begin(), p.end(), [](float x) { return x == 0.0f; }));
    } else {
      double ss = 0, s = 0;
      for (float x : p) {
        ss += static_cast<double>(x) * x;
        s += x;
      }
      const double sd = std::sqrt(ss / static_cast<double>(p.size()));
      const bool resid = t.name.ends_with("w_o") || t.name.ends_with("w_proj");
      const double want = resid ? c.init_std / std::sqrt(2.0 * static_cast<double>(L)) : c.init_std;
      CHECK(sd == Approx(want).epsilon(0.1));
      CHECK(std::fabs(s / static_cast<double>(p.size())) < 4 * want / std::sqrt(static_cast<double>(p.size())));
    }
  }
  auto again = tiny_gpt::create(c);
  CHECK(std::equal(m->params().begin(), m->params().end(), again->params().begin()));
  auto other = tiny_gpt::create(gpt_config::small(20, 6));
  CHECK(!std::equal(m->params().begin(), m->params().end(), other->params().begin()));

  // GPT-2's small init predicts almost uniformly: loss ≈ ln(vocab).
  gpt_config c2 = c;
  c2.init_std = 0.02;
  auto m2 = tiny_gpt::create(c2);
  const auto tokens = random_tokens(c.max_batch * (T + 1), V, 1);
  CHECK(static_cast<double>(*m2->loss(tokens, c.max_batch)) == Approx(std::log(20.0)).margin(0.03));

  const auto mask = decay_mask(layout);
  REQUIRE(mask.size() == m->param_count());
  CHECK(mask[layout[0].offset] == 1);      // wte
  CHECK(mask[layout[2].offset] == 0);      // h0.ln1.g
  CHECK(mask[layout.back().offset] == 1);  // head.w
}

TEST_CASE("tiny_gpt: configuration and input errors", "[testbed][tiny_gpt]") {
  SECTION("config validation") {
    auto bad = [](auto mutate) {
      gpt_config c = gpt_config::small();
      mutate(c);
      const auto s = c.validate();
      CAPTURE(s.to_string());
      return !s.ok() && s.code() == status_code::invalid_argument && !tiny_gpt::create(c).ok();
    };
    CHECK(gpt_config::small().validate().ok());
    CHECK(bad([](gpt_config& c) { c.vocab = 0; }));
    CHECK(bad([](gpt_config& c) { c.vocab = 257; }));
    CHECK(bad([](gpt_config& c) { c.context = 0; }));
    CHECK(bad([](gpt_config& c) { c.d_model = 0; }));
    CHECK(bad([](gpt_config& c) { c.n_layer = 0; }));
    CHECK(bad([](gpt_config& c) { c.n_head = 0; }));
    CHECK(bad([](gpt_config& c) { c.d_ff = 0; }));
    CHECK(bad([](gpt_config& c) { c.max_batch = 0; }));
    CHECK(bad([](gpt_config& c) { c.n_head = 5; }));  // 64 % 5 != 0
    CHECK(bad([](gpt_config& c) { c.init_std = 0; }));
    CHECK(bad([](gpt_config& c) { c.init_std = std::nan(""); }));
    CHECK(bad([](gpt_config& c) { c.d_model = std::size_t{1} << 40; }));
    CHECK(bad([](gpt_config& c) {
      c.d_model = 1 << 16;
      c.n_head = 1;
    }));  // 2^32 parameters
    gpt_config ok = gpt_config::small(256);
    CHECK(ok.validate().ok());
  }
  auto m = tiny_gpt::create(tiny_config());
  REQUIRE(m.ok());
  const auto tokens = random_tokens(2 * 6, 7, 2);
  auto code = [](const auto& r) { return r.ok() ? status_code::ok : r.status().code(); };
  SECTION("forward_backward and loss") {
    std::fill(m->grads().begin(), m->grads().end(), 42.0f);
    CHECK(code(m->forward_backward(tokens, 0)) == status_code::invalid_argument);
    CHECK(code(m->forward_backward(tokens, 3)) == status_code::invalid_argument);  // > max_batch
    CHECK(code(m->forward_backward(std::span(tokens).subspan(1), 2)) == status_code::invalid_argument);
    CHECK(code(m->forward_backward(tokens, 1)) == status_code::invalid_argument);  // 12 tokens for 1 x 6
    auto bad = tokens;
    bad[7] = 7;  // == vocab
    CHECK(code(m->forward_backward(bad, 2)) == status_code::out_of_range);
    CHECK(code(m->loss(bad, 2)) == status_code::out_of_range);
    CHECK(std::all_of(m->grads().begin(), m->grads().end(), [](float g) { return g == 42.0f; }));
    std::vector<float> per(9);
    CHECK(code(m->loss(tokens, 2, per)) == status_code::invalid_argument);
  }
  SECTION("forward_hidden") {
    std::vector<float> out(5 * 8);
    CHECK(m->forward_hidden(std::span(tokens).subspan(0, 5), out).ok());
    CHECK(m->forward_hidden(std::span(tokens).subspan(0, 6), out).code() == status_code::invalid_argument);
    CHECK(m->forward_hidden({}, std::span(out).subspan(0, 0)).code() == status_code::invalid_argument);
    CHECK(m->forward_hidden(std::span(tokens).subspan(0, 4), out).code() == status_code::invalid_argument);
    const std::uint8_t bad[2] = {1, 9};
    CHECK(m->forward_hidden(bad, std::span(out).subspan(0, 16)).code() == status_code::out_of_range);
  }
  SECTION("generate") {
    const std::uint8_t prompt[2] = {1, 2};
    CHECK(code(m->generate({}, 3, 0.0, 1)) == status_code::invalid_argument);
    CHECK(code(m->generate(prompt, 3, -1.0, 1)) == status_code::invalid_argument);
    CHECK(code(m->generate(prompt, 3, std::nan(""), 1)) == status_code::invalid_argument);
    CHECK(code(m->generate(prompt, 3, INFINITY, 1)) == status_code::invalid_argument);
    const std::uint8_t bad[1] = {7};
    CHECK(code(m->generate(bad, 3, 0.0, 1)) == status_code::out_of_range);
  }
}

TEST_CASE("tiny_gpt: generate is deterministic, greedy at temperature 0", "[testbed][tiny_gpt]") {
  auto m = tiny_gpt::create(tiny_config());
  REQUIRE(m.ok());
  scramble(*m, 4);
  const std::uint8_t prompt[3] = {1, 2, 3};
  const auto g = m->generate(prompt, 12, 0.0, 1);  // longer than the context: a sliding window
  REQUIRE(g.ok());
  REQUIRE(g->size() == 15);
  CHECK(std::equal(prompt, prompt + 3, g->begin()));
  CHECK(*g == *m->generate(prompt, 12, 0.0, 99));  // the seed does not matter when greedy
  // Greedy: each new token is the argmax of the model's prediction on its window.
  const gpt_config c = m->config();
  for (std::size_t i = 3; i < g->size(); ++i) {
    const std::size_t len = std::min(i, c.context);
    // Score every candidate next token via loss() on a one-sequence batch that ends in it.
    std::vector<std::uint8_t> seq(c.context + 1, 0);
    // Place the window at the start; targets beyond it are ignored by reading per-token loss len-1.
    std::copy(g->begin() + static_cast<std::ptrdiff_t>(i - len), g->begin() + static_cast<std::ptrdiff_t>(i),
              seq.begin());
    std::vector<float> per(c.context);
    float best_loss = INFINITY;
    std::size_t best = 0;
    for (std::size_t cand = 0; cand < c.vocab; ++cand) {
      seq[len] = static_cast<std::uint8_t>(cand);
      REQUIRE(m->loss(seq, 1, per).ok());
      if (per[len - 1] < best_loss) {
        best_loss = per[len - 1];
        best = cand;
      }
    }
    CAPTURE(i);
    CHECK((*g)[i] == best);
  }
  const auto s1 = m->generate(prompt, 40, 1.0, 7);
  const auto s2 = m->generate(prompt, 40, 1.0, 7);
  const auto s3 = m->generate(prompt, 40, 1.0, 8);
  CHECK(*s1 == *s2);
  CHECK(*s1 != *s3);
  CHECK(std::all_of(s1->begin(), s1->end(), [](std::uint8_t t) { return t < 7; }));
  CHECK(m->generate(prompt, 0, 1.0, 7)->size() == 3);
}

TEST_CASE("tiny_gpt: a short AdamW run on the synthetic language learns", "[testbed][tiny_gpt]") {
  // A reduced shape (one block, context 8) keeps this fast, also under sanitizers; the
  // default shape's curve is in docs/testbed.md.
  auto src = markov_source::create(8);
  REQUIRE(src.ok());
  gpt_config c;
  c.vocab = src->vocab();
  c.context = 8;
  c.d_model = 24;
  c.n_head = 2;
  c.n_layer = 1;
  c.d_ff = 48;
  c.max_batch = 8;
  c.init_seed = 0;  // seed 1 reaches 2.24 as well; one run keeps the sanitizer CI short
  auto m = tiny_gpt::create(c);
  REQUIRE(m.ok());
  adamw_options o;
  o.lr = 1e-2;
  auto opt = adamw::create(m->param_count(), o);
  REQUIRE(opt.ok());
  REQUIRE(opt->set_decay_mask(decay_mask(m->param_layout())).ok());
  const double start = *eval_loss(*m, *src);
  CHECK(start > 2.9);
  std::vector<std::uint8_t> batch(8 * src->sequence_length());
  bool finite = true;
  for (std::uint64_t s = 0; s < 800; ++s) {
    REQUIRE(src->train_batch(1, 0, s, batch).ok());
    const float l = *m->forward_backward(batch, 8);
    finite = finite && std::isfinite(l);
    REQUIRE(opt->step(m->params(), m->grads()).ok());
  }
  CHECK(finite);
  const double end = *eval_loss(*m, *src);
  CAPTURE(start, end, *src->validation_floor());
  // Unigram entropy is 2.98 and bigram 2.70 nats: below 2.45 the model must use two
  // characters of context, i.e. attention works.
  CHECK(end < 2.45);
  CHECK(end > *src->validation_floor());  // nothing beats the true distribution
}
