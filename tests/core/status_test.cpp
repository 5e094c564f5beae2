// Tests for core/status.h: codes, messages, result<T>.
#include "dtrain/core/status.h"

#include <memory>

#include <catch2/catch.hpp>

using namespace dtrain;

namespace {
result<int> parse_positive(int x) {
  if (x <= 0) return invalid_argument("need a positive number, got " + std::to_string(x));
  return x;
}
status chain(int x) {
  DTRAIN_RETURN_IF_ERROR(x > 10 ? aborted("peer dropped") : status{});
  return {};
}
}  // namespace

TEST_CASE("status carries code and message", "[core][status]") {
  status ok;
  CHECK(ok.ok());
  CHECK(ok.to_string() == "ok");
  status s = data_loss("bad checksum");
  CHECK_FALSE(s.ok());
  CHECK(s.code() == status_code::data_loss);
  CHECK(s.to_string() == "data_loss: bad checksum");
  CHECK(is_retryable(status_code::unavailable));
  CHECK_FALSE(is_retryable(status_code::invalid_argument));
  CHECK(code_name(status_code::aborted) == "aborted");
  CHECK(chain(11).code() == status_code::aborted);
  CHECK(chain(1).ok());
}

TEST_CASE("result holds a value or an error", "[core][status]") {
  auto a = parse_positive(3);
  REQUIRE(a.ok());
  CHECK(*a == 3);
  auto b = parse_positive(-1);
  REQUIRE_FALSE(b.ok());
  CHECK(b.status().code() == status_code::invalid_argument);
  CHECK(b.value_or(9) == 9);
  result<std::unique_ptr<int>> m = std::make_unique<int>(5);
  std::unique_ptr<int> p = std::move(m).value();
  CHECK(*p == 5);
}
