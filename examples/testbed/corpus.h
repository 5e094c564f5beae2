// testbed/corpus.h: training data for the tiny GPT. The default is a synthetic language,
// an order-2 Markov chain over 20 characters whose entropy rate is computed exactly, so
// the best achievable loss is known; a text file can be used instead (--text FILE).
// Batches are pure functions of (seed, worker, step): any number of workers draw
// reproducible, distinct data without coordination.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dtrain/core/rng.h"
#include "dtrain/core/status.h"

namespace dtrain::testbed {

/// Workers and steps that train_batch() accepts: worker < 2^23, step < 2^40.
inline constexpr std::uint64_t max_workers = std::uint64_t{1} << 23;
inline constexpr std::uint64_t max_steps = std::uint64_t{1} << 40;

/// A source of token sequences of context() + 1 tokens (inputs and shifted targets, the
/// layout basic_tiny_gpt::forward_backward() takes). Implementations are immutable after
/// creation, so one instance may serve many threads.
class data_source {
 public:
  virtual ~data_source() = default;

  /// Number of distinct tokens; every token is < vocab().
  virtual std::size_t vocab() const noexcept = 0;
  /// Positions per sequence seen by the model; sequences hold context() + 1 tokens.
  virtual std::size_t context() const noexcept = 0;
  std::size_t sequence_length() const noexcept { return context() + 1; }

  /// Fills `out` with out.size() / sequence_length() training sequences for `worker` at
  /// `step` under `seed`. Deterministic: the same arguments give the same tokens on every
  /// machine; different (seed, worker, step) give independent draws. Sequence i does not
  /// depend on how many follow it (a batch of 4 is the prefix of a batch of 8).
  /// Errors: invalid_argument when out is empty or not a multiple of sequence_length(),
  /// worker >= max_workers or step >= max_steps (out untouched).
  virtual status train_batch(std::uint64_t seed, std::uint64_t worker, std::uint64_t step,
                             std::span<std::uint8_t> out) const = 0;

  /// The fixed validation set: validation_sequences() sequences back to back. It does not
  /// depend on any training seed.
  virtual std::span<const std::uint8_t> validation() const noexcept = 0;
  std::size_t validation_sequences() const noexcept { return validation().size() / sequence_length(); }

  /// The lowest mean cross-entropy per target (nats) any model can reach on this data,
  /// when known (synthetic language); nullopt for text.
  virtual std::optional<double> loss_floor() const noexcept = 0;
  /// The mean cross-entropy of the true distribution on validation(): the floor that
  /// eval_loss() is measured against, without the sampling noise of a finite validation
  /// set, when known (synthetic language); nullopt for text.
  virtual std::optional<double> validation_floor() const noexcept = 0;

  /// Printable text for tokens; tokens >= vocab() print as '?'.
  virtual std::string decode(std::span<const std::uint8_t> tokens) const = 0;
  /// Tokens for text, e.g. a sampling prompt. out_of_range naming the first character
  /// that is not in the vocabulary.
  virtual result<std::vector<std::uint8_t>> encode(std::string_view text) const = 0;
};

/// Shape of the synthetic language. For every 2-character context (a, b) the next
/// character is drawn from a row with `floor_mass` spread evenly over the whole alphabet
/// (so the chain is irreducible and aperiodic) and the rest split among 2–4 successors
/// picked at random, with weights uniform on [1, 2^24]. Rows are stored as integer
/// counts summing to 2^32 and sampled with one 32-bit word per character, so the
/// probabilities used for the entropy are exactly those used for sampling.
struct markov_options {
  std::string alphabet = "abcdefghijklmnopqr .";  ///< 2..64 distinct characters (the table has size³ rows)
  std::uint64_t language_seed = 1;                ///< picks the transition table
  std::uint32_t min_successors = 2;               ///< >= 1
  std::uint32_t max_successors = 4;               ///< in [min_successors, alphabet size]
  double floor_mass = 0.05;                       ///< in (0, 1); at least one count per symbol

  /// invalid_argument naming the first bad field.
  status validate() const;
};

/// The order-2 Markov chain behind the synthetic language, with its exact entropies.
/// With the default options (docs/testbed.md): unigram entropy H(X) = 2.9772, bigram
/// H(X2|X1) = 2.6953 and entropy rate H(X3|X1,X2) = 1.1368 nats/char (ln 20 = 2.9957).
class markov_chain {
 public:
  /// Builds the table and its stationary distribution (power iteration in double until
  /// the L1 change is below 1e-14). Errors: invalid_argument from options.validate(),
  /// or when the iteration has not converged after 10 000 rounds (a floor_mass so small
  /// that the chain barely mixes).
  static result<markov_chain> create(const markov_options& options = {});

  std::size_t vocab() const noexcept { return v_; }
  const markov_options& options() const noexcept { return o_; }
  /// P(c | a, b): exactly count / 2^32. @pre a, b, c < vocab().
  double probability(std::size_t a, std::size_t b, std::size_t c) const noexcept;
  /// Stationary distribution over pairs, index a·vocab() + b.
  std::span<const double> stationary() const noexcept { return pi_; }

  /// H(X) of the stationary marginal, in nats: the best unigram loss.
  double unigram_entropy() const noexcept { return h1_; }
  /// H(X2 | X1), in nats: the best loss of a model that sees one character back.
  double bigram_entropy() const noexcept { return h2_; }
  /// H(X3 | X1, X2) = Σ_s π(s)·H(P(.|s)), in nats: the entropy rate, the best loss
  /// once two characters of context are visible.
  double entropy_rate() const noexcept { return h_; }
  /// Best mean loss over the `context` targets of a sequence drawn by sample(): the
  /// first target sees one character (bigram), the others two or more (entropy rate):
  /// (H(X2|X1) + (context − 1)·H) / context. @pre context >= 1.
  double loss_floor(std::size_t context) const noexcept;

  /// −Σ ln P(seq[i] | seq[..i]) over i = 1 .. size − 1 (nats): seq[1] is scored with the
  /// stationary P(X2 | X1), later characters with the chain. 0 for fewer than 2.
  /// @pre every token < vocab().
  double log_loss(std::span<const std::uint8_t> seq) const noexcept;

  /// Draws out.size() characters: the first pair from the stationary distribution, the
  /// rest from the chain; consumes exactly max(out.size(), 2) − 1 words of `rng`.
  void sample(counter_rng& rng, std::span<std::uint8_t> out) const noexcept;

 private:
  markov_chain() = default;
  markov_options o_;
  std::size_t v_ = 0;
  std::vector<std::uint64_t> cum_;       // per state, v_ cumulative counts (last = 2^32)
  std::vector<std::uint64_t> pair_cum_;  // cumulative stationary pair counts (last = 2^32)
  std::vector<double> pi_;
  double h1_ = 0, h2_ = 0, h_ = 0;
};

/// The default data: fresh sequences from a markov_chain (infinite i.i.d. data, no
/// overfitting). Train sequences use counter_rng(seed, worker·2^40 + step); the
/// validation set uses counter_rng(validation_seed, 2^63), a stream no batch uses.
class markov_source final : public data_source {
 public:
  /// Errors: invalid_argument for context == 0 or validation_sequences == 0, or from
  /// options.validate().
  static result<markov_source> create(std::size_t context, const markov_options& options = {},
                                      std::size_t validation_sequences = 64, std::uint64_t validation_seed = 0x7e57);

  const markov_chain& chain() const noexcept { return chain_; }

  std::size_t vocab() const noexcept override { return chain_.vocab(); }
  std::size_t context() const noexcept override { return context_; }
  status train_batch(std::uint64_t seed, std::uint64_t worker, std::uint64_t step,
                     std::span<std::uint8_t> out) const override;
  std::span<const std::uint8_t> validation() const noexcept override { return validation_; }
  /// chain().loss_floor(context()).
  std::optional<double> loss_floor() const noexcept override { return chain_.loss_floor(context_); }
  /// Mean of chain().log_loss() over the validation targets.
  std::optional<double> validation_floor() const noexcept override { return validation_floor_; }
  std::string decode(std::span<const std::uint8_t> tokens) const override;
  result<std::vector<std::uint8_t>> encode(std::string_view text) const override;

 private:
  markov_source(markov_chain c, std::size_t context) : chain_(std::move(c)), context_(context) {}
  markov_chain chain_;
  std::size_t context_;
  std::vector<std::uint8_t> validation_;
  double validation_floor_ = 0;
};

/// Windows of a text: the vocabulary is the sorted set of distinct bytes (so at most
/// 256 symbols); the first 90% of the bytes train, the last 10% validate. A training
/// sequence is a window at a uniformly random start drawn from counter_rng(seed,
/// worker·2^40 + step); the validation set is up to `validation_sequences` evenly
/// spaced windows of the held-out part. The loss floor is unknown.
class text_source final : public data_source {
 public:
  /// Errors: invalid_argument when context or validation_sequences is 0, the text is
  /// empty, or either part is shorter than context + 1 bytes.
  static result<text_source> from_text(std::string_view text, std::size_t context,
                                       std::size_t validation_sequences = 64);

  std::size_t vocab() const noexcept override { return symbols_.size(); }
  std::size_t context() const noexcept override { return context_; }
  status train_batch(std::uint64_t seed, std::uint64_t worker, std::uint64_t step,
                     std::span<std::uint8_t> out) const override;
  std::span<const std::uint8_t> validation() const noexcept override { return validation_; }
  std::optional<double> loss_floor() const noexcept override { return std::nullopt; }
  std::optional<double> validation_floor() const noexcept override { return std::nullopt; }
  std::string decode(std::span<const std::uint8_t> tokens) const override;
  result<std::vector<std::uint8_t>> encode(std::string_view text) const override;

  /// Byte of each token id, ascending.
  std::span<const char> symbols() const noexcept { return symbols_; }
  /// Tokens of the training part (the first 90%).
  std::span<const std::uint8_t> train_tokens() const noexcept { return train_; }

 private:
  text_source() = default;
  std::size_t context_ = 0;
  std::vector<char> symbols_;
  std::vector<std::uint8_t> train_;
  std::vector<std::uint8_t> validation_;
};

/// Reads a whole file and builds a text_source from it. Errors: invalid_argument when
/// the file cannot be opened, plus those of text_source::from_text(); data_loss when
/// reading fails midway.
result<text_source> load_text_file(const std::string& path, std::size_t context, std::size_t validation_sequences = 64);

/// The data source an example's command line asks for: load_text_file(text_path, ...)
/// when text_path is non-empty, else markov_source with default options. Errors as
/// those two.
result<std::unique_ptr<data_source>> open_source(const std::string& text_path, std::size_t context);

}  // namespace dtrain::testbed
