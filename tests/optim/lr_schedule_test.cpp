// Tests for optim/lr_schedule.h.
#include "dtrain/optim/lr_schedule.h"

#include <catch2/catch.hpp>

using namespace dtrain::optim;

TEST_CASE("lr schedules follow their formulas", "[optim][lr]") {
  CHECK(lr_schedule::constant_rate(0.7).at(12345) == 0.7);

  auto w = lr_schedule::linear_warmup(1.0, 4);
  CHECK(w.at(0) == Approx(0.25));
  CHECK(w.at(3) == Approx(1.0));
  CHECK(w.at(100) == Approx(1.0));

  auto c = lr_schedule::cosine(1.0, 0.1, 10, 110);
  REQUIRE(c.validate().ok());
  CHECK(c.at(9) == Approx(1.0));
  CHECK(c.at(10) == Approx(1.0));
  CHECK(c.at(60) == Approx(0.55));  // halfway: min + (peak-min)/2
  CHECK(c.at(110) == Approx(0.1));
  CHECK(c.at(1000) == Approx(0.1));

  auto s = lr_schedule::wsd(2.0, 0.0, 0, 100, 20);
  REQUIRE(s.validate().ok());
  CHECK(s.at(79) == Approx(2.0));
  CHECK(s.at(89) == Approx(1.0));   // halfway through the decay
  CHECK(s.at(99) == Approx(0.0).margin(1e-12));
  auto s2 = lr_schedule::wsd(1.0, 0.0, 0, 100, 100, decay_shape::inverse_sqrt_1m);
  CHECK(s2.at(24) == Approx(0.5));  // 1 - sqrt(0.25)
}

TEST_CASE("lr schedule validation", "[optim][lr]") {
  CHECK(lr_schedule::cosine(1.0, 2.0, 0, 10).validate().code() == dtrain::status_code::invalid_argument);
  CHECK(lr_schedule::cosine(1.0, 0.0, 20, 10).validate().code() == dtrain::status_code::invalid_argument);
  CHECK(lr_schedule::wsd(1.0, 0.0, 5, 10, 6).validate().code() == dtrain::status_code::invalid_argument);
  CHECK(lr_schedule::constant_rate(-1).validate().code() == dtrain::status_code::invalid_argument);
}
