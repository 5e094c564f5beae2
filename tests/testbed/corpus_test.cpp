// Tests for testbed/corpus.h: the Markov language's exact entropies against plug-in
// estimates from a long sample, stationarity, deterministic per-(seed, worker, step)
// batches, the validation set, text sources and their errors.
#include "testbed/corpus.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace dtrain;
using namespace dtrain::testbed;

namespace {

double plugin_entropy(const std::vector<double>& counts) {
  double n = 0, h = 0;
  for (double c : counts) n += c;
  for (double c : counts)
    if (c > 0) h -= c / n * std::log(c / n);
  return h;
}

std::string temp_file(const std::string& name, const std::string& content) {
  const auto path = std::filesystem::temp_directory_path() / ("dtrain_testbed_" + name);
  std::ofstream f(path, std::ios::binary);
  f << content;
  return path.string();
}

}  // namespace

TEST_CASE("markov_chain: rows are distributions and the stationary law is stationary", "[testbed][corpus]") {
  auto c = markov_chain::create();
  REQUIRE(c.ok());
  const std::size_t v = c->vocab();
  REQUIRE(v == 20);
  std::size_t sparse_rows = 0;
  for (std::size_t a = 0; a < v; ++a)
    for (std::size_t b = 0; b < v; ++b) {
      double sum = 0;
      std::size_t big = 0;
      for (std::size_t x = 0; x < v; ++x) {
        const double p = c->probability(a, b, x);
        CHECK(p > 0);  // irreducible, aperiodic
        sum += p;
        big += p > 0.01 ? 1 : 0;
      }
      CHECK(sum == 1.0);  // counts sum to exactly 2^32
      sparse_rows += (big >= 2 && big <= 4) ? 1 : 0;
    }
  CHECK(sparse_rows == v * v);  // 2–4 likely successors per context
  const auto pi = c->stationary();
  double total = 0, change = 0;
  std::vector<double> next(v * v, 0.0);
  for (std::size_t a = 0; a < v; ++a)
    for (std::size_t b = 0; b < v; ++b) {
      total += pi[a * v + b];
      for (std::size_t x = 0; x < v; ++x) next[b * v + x] += pi[a * v + b] * c->probability(a, b, x);
    }
  for (std::size_t s = 0; s < v * v; ++s) change += std::fabs(next[s] - pi[s]);
  CHECK(total == Approx(1.0).epsilon(1e-12));
  CHECK(change < 1e-12);
}

TEST_CASE("markov_chain: exact entropies match plug-in estimates from 1M characters", "[testbed][corpus]") {
  auto c = markov_chain::create();
  REQUIRE(c.ok());
  const std::size_t v = c->vocab();
  // Known values of the default language (pinned: a change to the generator shows here).
  CHECK(c->unigram_entropy() == Approx(2.9772).margin(1e-4));
  CHECK(c->bigram_entropy() == Approx(2.6953).margin(1e-4));
  CHECK(c->entropy_rate() == Approx(1.1368).margin(1e-4));
  CHECK(c->unigram_entropy() <= std::log(static_cast<double>(v)));
  CHECK(c->loss_floor(1) == Approx(c->bigram_entropy()));
  CHECK(c->loss_floor(32) == Approx((c->bigram_entropy() + 31 * c->entropy_rate()) / 32));

  const std::size_t n = 1 << 20;
  std::vector<std::uint8_t> s(n);
  counter_rng rng(2024, 5);
  c->sample(rng, s);
  CHECK(rng.index() == n - 1);  // one word per character after the first pair
  std::vector<double> uni(v, 0), bi(v * v, 0), tri(v * v * v, 0);
  REQUIRE(std::all_of(s.begin(), s.end(), [v](std::uint8_t t) { return t < v; }));
  for (std::size_t i = 0; i < n; ++i) {
    uni[s[i]] += 1;
    if (i >= 1) bi[s[i - 1] * v + s[i]] += 1;
    if (i >= 2) tri[(s[i - 2] * v + s[i - 1]) * v + s[i]] += 1;
  }
  std::vector<double> bi_ctx(v, 0), tri_ctx(v * v, 0);
  for (std::size_t a = 0; a < v; ++a)
    for (std::size_t b = 0; b < v; ++b) {
      bi_ctx[a] += bi[a * v + b];
      for (std::size_t x = 0; x < v; ++x) tri_ctx[a * v + b] += tri[(a * v + b) * v + x];
    }
  const double h1 = plugin_entropy(uni);
  const double h2 = plugin_entropy(bi) - plugin_entropy(bi_ctx);    // H(X2|X1)
  const double h3 = plugin_entropy(tri) - plugin_entropy(tri_ctx);  // H(X3|X1X2)
  CAPTURE(h1, h2, h3);
  CHECK(h1 == Approx(c->unigram_entropy()).epsilon(0.01));
  CHECK(h2 == Approx(c->bigram_entropy()).epsilon(0.01));
  CHECK(h3 == Approx(c->entropy_rate()).epsilon(0.01));
  // The sample's own log-loss under the true model estimates the same rate.
  CHECK(c->log_loss(s) / static_cast<double>(n - 1) == Approx(c->entropy_rate()).epsilon(0.01));
}

TEST_CASE("markov_options: validation", "[testbed][corpus]") {
  auto bad = [](auto mutate) {
    markov_options o;
    mutate(o);
    return o.validate().code() == status_code::invalid_argument && !markov_chain::create(o).ok();
  };
  CHECK(markov_options{}.validate().ok());
  CHECK(bad([](markov_options& o) { o.alphabet = "a"; }));
  CHECK(bad([](markov_options& o) { o.alphabet = "abca"; }));
  CHECK(bad([](markov_options& o) {
    o.alphabet.clear();
    for (int i = 0; i < 65; ++i) o.alphabet.push_back(static_cast<char>('0' + i));  // 65 distinct
  }));
  CHECK(bad([](markov_options& o) { o.min_successors = 0; }));
  CHECK(bad([](markov_options& o) { o.max_successors = 1; }));  // < min 2
  CHECK(bad([](markov_options& o) { o.max_successors = 21; }));
  CHECK(bad([](markov_options& o) { o.floor_mass = 0; }));
  CHECK(bad([](markov_options& o) { o.floor_mass = 1; }));
  CHECK(bad([](markov_options& o) { o.floor_mass = 1e-12; }));  // < one count per symbol
  markov_options wide;                                          // the largest alphabet
  wide.alphabet.clear();
  for (int i = 0; i < 64; ++i) wide.alphabet.push_back(static_cast<char>('0' + i));
  CHECK(markov_chain::create(wide).ok());
  markov_options small;
  small.alphabet = "xy";
  small.min_successors = small.max_successors = 1;
  auto c = markov_chain::create(small);
  REQUIRE(c.ok());
  CHECK(c->entropy_rate() < c->unigram_entropy());
}

TEST_CASE("markov_source: batches are deterministic per (seed, worker, step)", "[testbed][corpus]") {
  auto src = markov_source::create(16);
  REQUIRE(src.ok());
  const std::size_t len = src->sequence_length();
  REQUIRE(len == 17);
  auto batch = [&](std::uint64_t seed, std::uint64_t worker, std::uint64_t step, std::size_t b = 4) {
    std::vector<std::uint8_t> out(b * len);
    REQUIRE(src->train_batch(seed, worker, step, out).ok());
    return out;
  };
  const auto a = batch(1, 0, 0);
  CHECK(a == batch(1, 0, 0));
  CHECK(a != batch(1, 1, 0));  // workers differ
  CHECK(a != batch(1, 0, 1));  // steps differ
  CHECK(a != batch(2, 0, 0));  // seeds differ
  CHECK(batch(1, 1, 0) != batch(1, 0, 1));
  const auto eight = batch(1, 3, 7, 8);
  const auto four = batch(1, 3, 7, 4);
  CHECK(std::equal(four.begin(), four.end(), eight.begin()));  // prefix property
  CHECK(std::all_of(eight.begin(), eight.end(), [&](std::uint8_t t) { return t < src->vocab(); }));
  auto again = markov_source::create(16);
  std::vector<std::uint8_t> out(4 * len);
  REQUIRE(again->train_batch(1, 0, 0, out).ok());
  CHECK(out == a);  // a fresh instance reproduces it

  // Errors leave the output untouched.
  std::vector<std::uint8_t> odd(len + 1, 0xAB);
  CHECK(src->train_batch(1, 0, 0, odd).code() == status_code::invalid_argument);
  CHECK(src->train_batch(1, 0, 0, {}).code() == status_code::invalid_argument);
  std::vector<std::uint8_t> one(len, 0xAB);
  CHECK(src->train_batch(1, max_workers, 0, one).code() == status_code::invalid_argument);
  CHECK(src->train_batch(1, 0, max_steps, one).code() == status_code::invalid_argument);
  CHECK(std::all_of(odd.begin(), odd.end(), [](auto x) { return x == 0xAB; }));
  CHECK(std::all_of(one.begin(), one.end(), [](auto x) { return x == 0xAB; }));
  CHECK(src->train_batch(1, max_workers - 1, max_steps - 1, one).ok());
}

TEST_CASE("markov_source: fixed validation set, floors, encode/decode", "[testbed][corpus]") {
  auto src = markov_source::create(32);
  REQUIRE(src.ok());
  CHECK(src->validation_sequences() == 64);
  CHECK(src->validation().size() == 64 * 33);
  auto other = markov_source::create(32);
  CHECK(std::equal(src->validation().begin(), src->validation().end(), other->validation().begin()));
  // Training streams never produce the validation sequences.
  std::vector<std::uint8_t> b(33);
  REQUIRE(src->train_batch(0x7e57, 0, 0, b).ok());
  CHECK(!std::equal(b.begin(), b.end(), src->validation().begin()));
  REQUIRE(src->loss_floor().has_value());
  CHECK(*src->loss_floor() == Approx(src->chain().loss_floor(32)));
  // The validation set's exact floor is close to the expected one (64·32 targets).
  REQUIRE(src->validation_floor().has_value());
  CHECK(std::fabs(*src->validation_floor() - *src->loss_floor()) < 0.1);
  double manual = 0;
  for (std::size_t i = 0; i < 64; ++i) manual += src->chain().log_loss(src->validation().subspan(i * 33, 33));
  CHECK(*src->validation_floor() == Approx(manual / (64 * 32)).epsilon(1e-12));

  auto few = markov_source::create(8, {}, 3);
  REQUIRE(few.ok());
  CHECK(few->validation_sequences() == 3);
  CHECK(markov_source::create(0).status().code() == status_code::invalid_argument);
  CHECK(markov_source::create(8, {}, 0).status().code() == status_code::invalid_argument);

  const auto enc = src->encode("abc .r");
  REQUIRE(enc.ok());
  CHECK(*enc == std::vector<std::uint8_t>{0, 1, 2, 18, 19, 17});
  CHECK(src->decode(*enc) == "abc .r");
  const std::uint8_t bad[2] = {0, 200};
  CHECK(src->decode(bad) == "a?");
  CHECK(src->encode("abz").status().code() == status_code::out_of_range);
  CHECK(src->decode(std::span(src->validation()).subspan(0, 33)).size() == 33);
}

TEST_CASE("text_source: vocabulary, split, windows and errors", "[testbed][corpus]") {
  std::string text;
  for (int i = 0; i < 50; ++i) text += "the cat sat on the mat. ";  // 1200 bytes
  auto src = text_source::from_text(text, 8, 16);
  REQUIRE(src.ok());
  CHECK(src->vocab() == std::string(" .acehmnost").size());
  CHECK(std::string(src->symbols().begin(), src->symbols().end()) == " .acehmnost");
  CHECK(src->train_tokens().size() == 1080);  // 90%
  CHECK(src->validation_sequences() == 16);
  CHECK(!src->loss_floor().has_value());
  CHECK(!src->validation_floor().has_value());
  // The first validation window starts at the held-out part; the last ends at the end.
  CHECK(src->decode(src->validation().subspan(0, 9)) == text.substr(1080, 9));
  CHECK(src->decode(src->validation().subspan(15 * 9, 9)) == text.substr(1200 - 9, 9));
  // Training windows are substrings of the training part; deterministic per key.
  std::vector<std::uint8_t> b(4 * 9), b2(4 * 9), b3(4 * 9);
  REQUIRE(src->train_batch(5, 2, 3, b).ok());
  REQUIRE(src->train_batch(5, 2, 3, b2).ok());
  REQUIRE(src->train_batch(5, 3, 3, b3).ok());
  CHECK(b == b2);
  CHECK(b != b3);
  const std::string train_text = text.substr(0, 1080);
  for (std::size_t i = 0; i < 4; ++i)
    CHECK(train_text.find(src->decode(std::span(b).subspan(i * 9, 9))) != std::string::npos);
  CHECK(src->encode("cat")->size() == 3);
  CHECK(src->encode("dog").status().code() == status_code::out_of_range);

  // A held-out part shorter than the requested windows gives fewer (distinct) windows.
  auto shortval = text_source::from_text(std::string(100, 'a') + std::string(12, 'b'), 3, 64);
  REQUIRE(shortval.ok());
  CHECK(shortval->validation_sequences() == 12 - 4 + 1);  // 100.8 → 100 train, 12 held out

  CHECK(text_source::from_text("", 8).status().code() == status_code::invalid_argument);
  CHECK(text_source::from_text(std::string(50, 'x'), 8).status().code() == status_code::invalid_argument);
  CHECK(text_source::from_text(text, 0).status().code() == status_code::invalid_argument);
  CHECK(text_source::from_text(text, 8, 0).status().code() == status_code::invalid_argument);
  // 81 bytes → 72 / 9: the held-out part is exactly context + 1 = 9 bytes; 80 → 72 / 8.
  CHECK(text_source::from_text(std::string(81, 'x'), 8).ok());
  CHECK(text_source::from_text(std::string(80, 'x'), 8).status().code() == status_code::invalid_argument);
  // All 256 byte values form a 256-symbol vocabulary.
  std::string all;
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  auto full = text_source::from_text(all, 16);
  REQUIRE(full.ok());
  CHECK(full->vocab() == 256);
}

TEST_CASE("load_text_file and open_source", "[testbed][corpus]") {
  std::string text;
  for (int i = 0; i < 20; ++i) text += "hello world\n";
  const auto path = temp_file("ok.txt", text);
  auto src = load_text_file(path, 8);
  REQUIRE(src.ok());
  CHECK(src->vocab() == std::string("\n dehlorw").size());
  const auto empty = temp_file("empty.txt", "");
  CHECK(load_text_file(empty, 8).status().code() == status_code::invalid_argument);
  const auto tiny = temp_file("tiny.txt", "abc");
  const auto st = load_text_file(tiny, 8).status();
  CHECK(st.code() == status_code::invalid_argument);
  CHECK(st.message().find(tiny) != std::string::npos);  // names the file
  CHECK(load_text_file("/nonexistent/dtrain/none.txt", 8).status().code() == status_code::invalid_argument);

  auto by_path = open_source(path, 8);
  REQUIRE(by_path.ok());
  CHECK((*by_path)->vocab() == src->vocab());
  auto synthetic = open_source("", 8);
  REQUIRE(synthetic.ok());
  CHECK((*synthetic)->vocab() == 20);
  CHECK((*synthetic)->loss_floor().has_value());
  CHECK(open_source("/nonexistent/x", 8).status().code() == status_code::invalid_argument);
  std::remove(path.c_str());
  std::remove(empty.c_str());
  std::remove(tiny.c_str());
}
