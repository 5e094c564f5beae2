// Tests for testbed/eval.h: the validation loss is the mean over every validation target,
// independent of the model's batch size, and rejects mismatched shapes.
#include "testbed/eval.h"

#include <catch2/catch.hpp>
#include <vector>

using namespace dtrain;
using namespace dtrain::testbed;

TEST_CASE("eval_loss: mean over all validation targets, in any chunking", "[testbed][eval]") {
  auto src = markov_source::create(8, {}, 11);  // 11 sequences: chunks of 4, 4, 3
  REQUIRE(src.ok());
  gpt_config c;
  c.vocab = 20;
  c.context = 8;
  c.d_model = 16;
  c.n_head = 2;
  c.d_ff = 32;
  c.max_batch = 4;
  auto m = basic_tiny_gpt<double>::create(c);
  REQUIRE(m.ok());
  double manual = 0;
  std::vector<double> per(8);
  for (std::size_t i = 0; i < 11; ++i) {
    REQUIRE(m->loss(src->validation().subspan(i * 9, 9), 1, per).ok());
    for (double x : per) manual += x;
  }
  manual /= 11 * 8;
  const auto l = eval_loss(*m, *src);
  REQUIRE(l.ok());
  CHECK(*l == Approx(manual).epsilon(1e-13));
  c.max_batch = 1;
  auto m1 = basic_tiny_gpt<double>::create(c);
  CHECK(*eval_loss(*m1, *src) == Approx(*l).epsilon(1e-13));

  c.context = 9;
  auto wrong_ctx = tiny_gpt::create(c);
  CHECK(eval_loss(*wrong_ctx, *src).status().code() == status_code::invalid_argument);
  c.context = 8;
  c.vocab = 19;
  auto small_vocab = tiny_gpt::create(c);
  CHECK(eval_loss(*small_vocab, *src).status().code() == status_code::invalid_argument);
  c.vocab = 30;  // a larger vocabulary is fine
  auto big_vocab = tiny_gpt::create(c);
  CHECK(eval_loss(*big_vocab, *src).ok());
}
