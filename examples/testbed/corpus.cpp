// testbed/corpus.cpp: the synthetic order-2 Markov language and text-file windows.
#include "testbed/corpus.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <sstream>

namespace dtrain::testbed {
namespace {

constexpr std::uint64_t total_count = std::uint64_t{1} << 32;  // every row sums to 2^32
constexpr std::uint64_t validation_stream = std::uint64_t{1} << 63;

status check_batch_args(std::size_t seq_len, std::uint64_t worker, std::uint64_t step, std::size_t out_size) {
  if (out_size == 0 || out_size % seq_len != 0)
    return invalid_argument("train_batch: output of " + std::to_string(out_size) +
                            " tokens is not a positive multiple of the sequence length " + std::to_string(seq_len));
  if (worker >= max_workers) return invalid_argument("train_batch: worker " + std::to_string(worker) + " >= 2^23");
  if (step >= max_steps) return invalid_argument("train_batch: step " + std::to_string(step) + " >= 2^40");
  return ok_status();
}

constexpr std::uint64_t batch_stream(std::uint64_t worker, std::uint64_t step) { return (worker << 40) | step; }

double plogp_sum(std::span<const double> p) {
  double h = 0;
  for (double x : p)
    if (x > 0) h -= x * std::log(x);
  return h;
}

}  // namespace

// ---- markov_chain -----------------------------------------------------------------------

status markov_options::validate() const {
  const std::size_t v = alphabet.size();
  if (v < 2 || v > 64)
    return invalid_argument("markov_options: alphabet of " + std::to_string(v) + " characters, need 2..64");
  std::array<bool, 256> seen{};
  for (char ch : alphabet) {
    const auto u = static_cast<unsigned char>(ch);
    if (seen[u]) return invalid_argument("markov_options: character " + std::to_string(u) + " repeats in the alphabet");
    seen[u] = true;
  }
  if (min_successors < 1 || max_successors < min_successors || max_successors > v)
    return invalid_argument("markov_options: successors [" + std::to_string(min_successors) + ", " +
                            std::to_string(max_successors) + "] not within [1, " + std::to_string(v) + "]");
  if (!(floor_mass > 0 && floor_mass < 1) ||
      floor_mass * static_cast<double>(total_count) / static_cast<double>(v) < 1.0)
    return invalid_argument("markov_options: floor_mass " + std::to_string(floor_mass) +
                            " not in (0, 1) or below one count per symbol");
  return ok_status();
}

result<markov_chain> markov_chain::create(const markov_options& options) {
  DTRAIN_RETURN_IF_ERROR(options.validate());
  markov_chain c;
  c.o_ = options;
  const std::size_t v = options.alphabet.size();
  c.v_ = v;
  const std::size_t states = v * v;
  c.cum_.assign(states * v, 0);

  // Rows: integer counts, floor_count per symbol plus the rest split among k successors.
  const auto floor_count =
      static_cast<std::uint64_t>(options.floor_mass * static_cast<double>(total_count) / static_cast<double>(v));
  const std::uint64_t rest = total_count - floor_count * v;
  std::vector<std::uint32_t> perm(v);
  std::vector<std::uint64_t> counts(v), weight(v);
  for (std::size_t s = 0; s < states; ++s) {
    counter_rng rng(options.language_seed, s);
    const std::uint32_t k =
        options.min_successors + rng.next_below(options.max_successors - options.min_successors + 1);
    for (std::size_t i = 0; i < v; ++i) perm[i] = static_cast<std::uint32_t>(i);
    for (std::uint32_t i = 0; i < k; ++i) {  // partial Fisher–Yates: k distinct successors
      const std::uint32_t j = i + rng.next_below(static_cast<std::uint32_t>(v) - i);
      std::swap(perm[i], perm[j]);
    }
    std::uint64_t wsum = 0;
    for (std::uint32_t i = 0; i < k; ++i) {
      weight[i] = (rng.next_u32() >> 8) + 1;  // in [1, 2^24]
      wsum += weight[i];
    }
    std::fill(counts.begin(), counts.end(), floor_count);
    std::uint64_t given = 0;
    for (std::uint32_t i = 0; i + 1 < k; ++i) {
      const std::uint64_t share = rest * weight[i] / wsum;  // < 2^56: no overflow
      counts[perm[i]] += share;
      given += share;
    }
    counts[perm[k - 1]] += rest - given;
    std::uint64_t acc = 0;
    for (std::size_t x = 0; x < v; ++x) {
      acc += counts[x];
      c.cum_[s * v + x] = acc;
    }
    DTRAIN_ASSERT(acc == total_count);
  }

  // Stationary distribution over pairs: π'(b, c) = Σ_a π(a, b)·P(c | a, b).
  c.pi_.assign(states, 1.0 / static_cast<double>(states));
  std::vector<double> next(states);
  bool converged = false;
  for (int it = 0; it < 10000 && !converged; ++it) {
    std::fill(next.begin(), next.end(), 0.0);
    for (std::size_t a = 0; a < v; ++a)
      for (std::size_t b = 0; b < v; ++b) {
        const double p = c.pi_[a * v + b];
        for (std::size_t x = 0; x < v; ++x) next[b * v + x] += p * c.probability(a, b, x);
      }
    double change = 0;
    for (std::size_t s = 0; s < states; ++s) change += std::fabs(next[s] - c.pi_[s]);
    c.pi_.swap(next);
    converged = change < 1e-14;
  }
  if (!converged)
    return invalid_argument(
        "markov_chain: the stationary distribution did not converge in 10000 rounds; raise floor_mass");

  // Entropies (nats).
  std::vector<double> marginal(v, 0.0), row(v);
  double rate = 0;
  for (std::size_t a = 0; a < v; ++a)
    for (std::size_t b = 0; b < v; ++b) {
      marginal[b] += c.pi_[a * v + b];
      for (std::size_t x = 0; x < v; ++x) row[x] = c.probability(a, b, x);
      rate += c.pi_[a * v + b] * plogp_sum(row);
    }
  c.h1_ = plogp_sum(marginal);
  c.h2_ = plogp_sum(c.pi_) - c.h1_;  // H(X1, X2) − H(X1)
  c.h_ = rate;

  // Start pairs: the stationary distribution as cumulative 32-bit counts.
  c.pair_cum_.resize(states);
  double acc = 0;
  for (std::size_t s = 0; s < states; ++s) {
    acc += c.pi_[s];
    const double scaled = std::min(acc, 1.0) * static_cast<double>(total_count);
    c.pair_cum_[s] = std::min(static_cast<std::uint64_t>(scaled), total_count);
  }
  c.pair_cum_.back() = total_count;
  return c;
}

double markov_chain::probability(std::size_t a, std::size_t b, std::size_t c) const noexcept {
  const std::size_t base = (a * v_ + b) * v_;
  const std::uint64_t hi = cum_[base + c], lo = c == 0 ? 0 : cum_[base + c - 1];
  return static_cast<double>(hi - lo) * 0x1p-32;
}

double markov_chain::loss_floor(std::size_t context) const noexcept {
  DTRAIN_ASSERT(context >= 1);
  return (h2_ + static_cast<double>(context - 1) * h_) / static_cast<double>(context);
}

double markov_chain::log_loss(std::span<const std::uint8_t> seq) const noexcept {
  if (seq.size() < 2) return 0;
  double q0 = 0;  // stationary marginal of seq[0]
  for (std::size_t b = 0; b < v_; ++b) q0 += pi_[seq[0] * v_ + b];
  double total = -std::log(pi_[seq[0] * v_ + seq[1]] / q0);
  for (std::size_t i = 2; i < seq.size(); ++i) total -= std::log(probability(seq[i - 2], seq[i - 1], seq[i]));
  return total;
}

void markov_chain::sample(counter_rng& rng, std::span<std::uint8_t> out) const noexcept {
  if (out.empty()) return;
  const std::uint64_t u = rng.next_u32();
  const auto pair =
      static_cast<std::size_t>(std::upper_bound(pair_cum_.begin(), pair_cum_.end(), u) - pair_cum_.begin());
  std::size_t a = pair / v_, b = pair % v_;
  out[0] = static_cast<std::uint8_t>(a);
  if (out.size() < 2) return;
  out[1] = static_cast<std::uint8_t>(b);
  for (std::size_t i = 2; i < out.size(); ++i) {
    const std::uint64_t w = rng.next_u32();
    const auto row = cum_.begin() + static_cast<std::ptrdiff_t>((a * v_ + b) * v_);
    const auto x = static_cast<std::size_t>(std::upper_bound(row, row + static_cast<std::ptrdiff_t>(v_), w) - row);
    out[i] = static_cast<std::uint8_t>(x);
    a = b;
    b = x;
  }
}

// ---- markov_source ----------------------------------------------------------------------

result<markov_source> markov_source::create(std::size_t context, const markov_options& options,
                                            std::size_t validation_sequences, std::uint64_t validation_seed) {
  if (context == 0) return invalid_argument("markov_source: context must be >= 1");
  if (validation_sequences == 0) return invalid_argument("markov_source: validation_sequences must be >= 1");
  auto chain = markov_chain::create(options);
  if (!chain.ok()) return std::move(chain).status();
  markov_source src(std::move(chain).value(), context);
  const std::size_t len = context + 1;
  src.validation_.resize(validation_sequences * len);
  counter_rng rng(validation_seed, validation_stream);
  double floor = 0;
  for (std::size_t i = 0; i < validation_sequences; ++i) {
    const auto seq = std::span(src.validation_).subspan(i * len, len);
    src.chain_.sample(rng, seq);
    floor += src.chain_.log_loss(seq);
  }
  src.validation_floor_ = floor / static_cast<double>(validation_sequences * context);
  return src;
}

status markov_source::train_batch(std::uint64_t seed, std::uint64_t worker, std::uint64_t step,
                                  std::span<std::uint8_t> out) const {
  const std::size_t len = sequence_length();
  DTRAIN_RETURN_IF_ERROR(check_batch_args(len, worker, step, out.size()));
  counter_rng rng(seed, batch_stream(worker, step));
  for (std::size_t i = 0; i < out.size(); i += len) chain_.sample(rng, out.subspan(i, len));
  return ok_status();
}

namespace {
// Token i prints as symbols[i]; tokens past the symbols print as '?'.
std::string decode_with(std::span<const char> symbols, std::span<const std::uint8_t> tokens) {
  std::string s(tokens.size(), '?');
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < symbols.size()) s[i] = symbols[tokens[i]];
  return s;
}

result<std::vector<std::uint8_t>> encode_with(std::span<const char> symbols, std::string_view text) {
  std::array<int, 256> id;
  id.fill(-1);
  for (std::size_t i = 0; i < symbols.size(); ++i) id[static_cast<unsigned char>(symbols[i])] = static_cast<int>(i);
  std::vector<std::uint8_t> out(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const int t = id[static_cast<unsigned char>(text[i])];
    if (t < 0)
      return out_of_range("encode: character " + std::to_string(static_cast<unsigned char>(text[i])) + " at index " +
                          std::to_string(i) + " is not in the vocabulary");
    out[i] = static_cast<std::uint8_t>(t);
  }
  return out;
}
}  // namespace

std::string markov_source::decode(std::span<const std::uint8_t> tokens) const {
  const std::string& a = chain_.options().alphabet;
  return decode_with(std::span<const char>(a.data(), a.size()), tokens);
}

result<std::vector<std::uint8_t>> markov_source::encode(std::string_view text) const {
  const std::string& a = chain_.options().alphabet;
  return encode_with(std::span<const char>(a.data(), a.size()), text);
}

// ---- text_source ------------------------------------------------------------------------

result<text_source> text_source::from_text(std::string_view text, std::size_t context,
                                           std::size_t validation_sequences) {
  if (context == 0) return invalid_argument("text_source: context must be >= 1");
  if (validation_sequences == 0) return invalid_argument("text_source: validation_sequences must be >= 1");
  if (text.empty()) return invalid_argument("text_source: the text is empty");
  if (text.size() >= (std::uint64_t{1} << 32))
    return invalid_argument("text_source: text of " + std::to_string(text.size()) + " bytes exceeds 2^32 - 1");
  const std::size_t len = context + 1;
  const std::size_t n_train = text.size() / 10 * 9 + (text.size() % 10) * 9 / 10;  // floor(0.9·n)
  const std::size_t n_val = text.size() - n_train;
  if (n_train < len || n_val < len)
    return invalid_argument("text_source: " + std::to_string(text.size()) + " bytes split " + std::to_string(n_train) +
                            "/" + std::to_string(n_val) +
                            "; each part needs at least context + 1 = " + std::to_string(len));
  text_source src;
  src.context_ = context;
  std::array<bool, 256> present{};
  for (char ch : text) present[static_cast<unsigned char>(ch)] = true;
  std::array<std::uint8_t, 256> id{};
  for (std::size_t b = 0; b < 256; ++b)
    if (present[b]) {
      id[b] = static_cast<std::uint8_t>(src.symbols_.size());
      src.symbols_.push_back(static_cast<char>(b));
    }
  src.train_.resize(n_train);
  for (std::size_t i = 0; i < n_train; ++i) src.train_[i] = id[static_cast<unsigned char>(text[i])];
  // Evenly spaced windows of the held-out tail; they overlap only when it is short.
  const std::size_t starts = n_val - len + 1;
  const std::size_t nv = std::min(validation_sequences, starts);
  src.validation_.resize(nv * len);
  for (std::size_t i = 0; i < nv; ++i) {
    const std::size_t start = nv == 1 ? 0 : i * (starts - 1) / (nv - 1);
    for (std::size_t j = 0; j < len; ++j)
      src.validation_[i * len + j] = id[static_cast<unsigned char>(text[n_train + start + j])];
  }
  return src;
}

status text_source::train_batch(std::uint64_t seed, std::uint64_t worker, std::uint64_t step,
                                std::span<std::uint8_t> out) const {
  const std::size_t len = sequence_length();
  DTRAIN_RETURN_IF_ERROR(check_batch_args(len, worker, step, out.size()));
  counter_rng rng(seed, batch_stream(worker, step));
  const auto starts = static_cast<std::uint32_t>(train_.size() - len + 1);  // < 2^32 by from_text
  for (std::size_t i = 0; i < out.size(); i += len) {
    const std::uint32_t s = rng.next_below(starts);
    std::copy_n(train_.begin() + s, len, out.begin() + static_cast<std::ptrdiff_t>(i));
  }
  return ok_status();
}

std::string text_source::decode(std::span<const std::uint8_t> tokens) const {
  return decode_with(symbols_, tokens);
}

result<std::vector<std::uint8_t>> text_source::encode(std::string_view text) const {
  return encode_with(symbols_, text);
}

result<text_source> load_text_file(const std::string& path, std::size_t context, std::size_t validation_sequences) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return invalid_argument("load_text_file: cannot open '" + path + "'");
  std::string text;
  try {
    std::ostringstream s;
    s << f.rdbuf();
    if (f.bad()) return data_loss("load_text_file: read error in '" + path + "'");
    text = std::move(s).str();
  } catch (const std::exception&) {
    return resource_exhausted("load_text_file: cannot hold '" + path + "' in memory");
  }
  auto src = text_source::from_text(text, context, validation_sequences);
  if (!src.ok()) return status(src.status().code(), "'" + path + "': " + src.status().message());
  return src;
}

result<std::unique_ptr<data_source>> open_source(const std::string& text_path, std::size_t context) {
  if (!text_path.empty()) {
    auto t = load_text_file(text_path, context);
    if (!t.ok()) return std::move(t).status();
    return std::unique_ptr<data_source>(std::make_unique<text_source>(std::move(t).value()));
  }
  auto m = markov_source::create(context);
  if (!m.ok()) return std::move(m).status();
  return std::unique_ptr<data_source>(std::make_unique<markov_source>(std::move(m).value()));
}

}  // namespace dtrain::testbed
