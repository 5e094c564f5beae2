// testbed/tiny_gpt.h: a char-level decoder-only transformer (GPT-2 shape, pre-LayerNorm)
// on the CPU, with a hand-written backward pass. All parameters live in one contiguous
// buffer and all gradients in a second buffer of the same layout, so the DiLoCo engine,
// codecs and optimizers see the model as one flat span. Architecture and measurements:
// docs/testbed.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dtrain/core/status.h"

namespace dtrain::testbed {

/// Shape of a tiny_gpt. Every size must be >= 1; see validate().
struct gpt_config {
  std::size_t vocab = 20;       ///< symbols; tokens are bytes, so at most 256
  std::size_t context = 32;     ///< T: positions per sequence (also the positional table size)
  std::size_t d_model = 64;     ///< residual width; a multiple of n_head
  std::size_t n_layer = 2;      ///< transformer blocks
  std::size_t n_head = 4;       ///< attention heads per block
  std::size_t d_ff = 128;       ///< hidden width of the MLP
  std::size_t max_batch = 8;    ///< largest batch a call may pass; sizes the workspace
  std::uint64_t init_seed = 0;  ///< parameters are a pure function of this and the shape
  /// Std of the weight init; finite, > 0. GPT-2 uses 0.02 at d_model 768; at d_model 64
  /// 0.1 learns the two-characters-back rule of the synthetic language about twice as
  /// fast (docs/testbed.md), so it is the default here.
  double init_std = 0.1;

  /// The default used by the comparison sweep (bench/compare) and the examples:
  /// context 32, d_model 64, 2 layers, 4 heads of 16, d_ff 128, max_batch 8, init_std
  /// 0.1: 71 680 parameters at vocab 20 (the default corpus), about 3 ms per
  /// forward_backward at batch 8 on one core of a 2-vCPU AMD EPYC VM (docs/testbed.md).
  static gpt_config small(std::size_t vocab = 20, std::uint64_t init_seed = 0) {
    gpt_config c;
    c.vocab = vocab;
    c.init_seed = init_seed;
    return c;
  }

  /// invalid_argument when a size is zero, vocab > 256, d_model % n_head != 0, init_std
  /// is not finite and > 0, or the parameter count or workspace would exceed 2^31
  /// elements.
  status validate() const;
  /// Number of parameters this shape has (validate() first; not checked here).
  std::size_t param_count() const noexcept;
};

/// One named tensor inside params()/grads(): a row-major rows x cols block starting at
/// `offset`. Biases and LayerNorm parameters are 1 x n.
struct tensor_info {
  std::string name;  ///< e.g. "wte", "h0.attn.w_qkv", "lnf.g", "head.w"
  std::size_t offset = 0;
  std::size_t rows = 0;
  std::size_t cols = 0;

  std::size_t size() const noexcept { return rows * cols; }
  /// True for weight matrices and embeddings (the tensors AdamW decays, as in GPT-2 /
  /// nanoGPT); false for biases and LayerNorm gains/offsets.
  bool is_matrix() const noexcept { return rows > 1 && cols > 1; }
};

/// The transformer. Architecture: GPT-2 (Radford et al. 2019) with pre-LayerNorm blocks
/// (Xiong et al., arXiv 2002.04745):
///   x = wte[token] + wpe[position]
///   per block: x += W_o·CausalSelfAttention(LN1(x)) + b_o;  x += W_proj·GELU(W_fc·LN2(x) + b_fc) + b_proj
///   h = LN_f(x)  (the "hidden states" of forward_hidden);  logits = h·head.w  (no bias)
/// - GELU is the tanh approximation 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))), with tanh
///   evaluated as 1 − 2/(e^{2z} + 1) through Eigen's vectorized exp.
/// - The output head is NOT tied to the token embedding (separate d_model x vocab matrix).
/// - LayerNorm eps = 1e-5; attention scale 1/√(d_model/n_head).
/// - Init: weights ~ init_std·N(0,1), the two residual projections (w_o, w_proj) scaled by
///   1/√(2·n_layer) as in GPT-2; biases 0; LayerNorm gains 1. N(0,1) is approximated by
///   the Irwin–Hall sum of 12 uniforms minus 6 (integer arithmetic, no libm), so the
///   initial parameters are bit-identical on every machine for a given config.
/// Tensors, in buffer order: wte (vocab x d), wpe (context x d), per block i
/// h<i>.ln1.{g,b}, h<i>.attn.{w_qkv (d x 3d), b_qkv, w_o (d x d), b_o}, h<i>.ln2.{g,b},
/// h<i>.mlp.{w_fc (d x d_ff), b_fc, w_proj (d_ff x d), b_proj}, then lnf.{g,b}, head.w
/// (d x vocab). Weights are stored input-major: y = x·W.
///
/// Single-threaded; one instance per thread (copies are independent, e.g. one per
/// worker from a common start). Workspace for max_batch sequences is allocated by
/// create(); forward passes never allocate (generate() does, for its result).
template <class T>
class basic_tiny_gpt {
 public:
  using value_type = T;

  /// Validates `config` (errors as gpt_config::validate()), allocates parameters,
  /// gradients and workspace, and initializes parameters from config.init_seed.
  /// resource_exhausted if allocation fails.
  static result<basic_tiny_gpt> create(const gpt_config& config);

  const gpt_config& config() const noexcept { return cfg_; }
  std::size_t param_count() const noexcept { return params_.size(); }

  /// All parameters, one buffer in param_layout() order. Writable: the caller may load
  /// averaged or decoded parameters into it at any time between calls.
  std::span<T> params() noexcept { return params_; }
  std::span<const T> params() const noexcept { return params_; }
  /// Gradients of the last forward_backward(), same layout as params().
  std::span<T> grads() noexcept { return grads_; }
  std::span<const T> grads() const noexcept { return grads_; }
  /// Named tensors covering params() exactly, in order, without gaps.
  std::span<const tensor_info> param_layout() const noexcept { return layout_; }

  /// Mean next-token cross-entropy (nats) of `batch` sequences and its gradient.
  /// `tokens` holds batch x (context + 1) tokens, sequence after sequence; the inputs
  /// are tokens [0, context) of each sequence and the targets tokens [1, context].
  /// Overwrites grads() with d(loss)/d(params). Does not allocate. Deterministic for a
  /// given binary and CPU; not promised bit-identical across builds (docs/testbed.md).
  /// Errors (nothing computed, grads() unchanged): invalid_argument when batch is 0 or
  /// exceeds max_batch, or tokens.size() != batch·(context + 1); out_of_range when a
  /// token is >= vocab.
  result<T> forward_backward(std::span<const std::uint8_t> tokens, std::size_t batch);

  /// Forward only: the same loss as forward_backward(), grads() untouched. When
  /// `per_token` is non-empty it must hold batch·context entries and receives the loss
  /// of every target (sequence-major). Errors as forward_backward(), plus
  /// invalid_argument for a wrongly sized per_token.
  result<T> loss(std::span<const std::uint8_t> tokens, std::size_t batch, std::span<T> per_token = {});

  /// Final hidden states (after LN_f, before the head) of one sequence of
  /// len = tokens.size() tokens, 1 <= len <= context, written row-major to `out`
  /// (len x d_model). Position p depends on tokens [0, p] only (causal).
  /// Errors: invalid_argument for len outside [1, context] or out.size() !=
  /// len·d_model; out_of_range for a token >= vocab (out untouched on error).
  status forward_hidden(std::span<const std::uint8_t> tokens, std::span<T> out);

  /// Autoregressive sampling: returns the prompt followed by n_new tokens. Each new
  /// token is predicted from the last min(length, context) tokens. temperature == 0 is
  /// greedy (argmax, lowest id on ties); temperature > 0 samples softmax(logits / t)
  /// with counter_rng(seed). Deterministic for a given (params, prompt, t, seed) on one
  /// machine (sampling uses libm's exp).
  /// Errors: invalid_argument for an empty prompt or a negative or non-finite
  /// temperature; out_of_range for a prompt token >= vocab.
  result<std::vector<std::uint8_t>> generate(std::span<const std::uint8_t> prompt, std::size_t n_new,
                                             double temperature, std::uint64_t seed);

 private:
  explicit basic_tiny_gpt(const gpt_config& c) : cfg_(c) {}
  status check_tokens(std::span<const std::uint8_t> tokens, std::size_t batch) const;
  enum class stage : std::uint8_t { hidden, logits, loss };
  // The forward pass over `batch` sequences of `len` positions read with a stride of
  // `stride` tokens, up to `until`; fills the workspace and returns the mean loss
  // (stage::loss, targets at offset +1) or 0.
  T forward(const std::uint8_t* tokens, std::size_t batch, std::size_t len, std::size_t stride, stage until,
            T* per_token);
  void backward(const std::uint8_t* tokens, std::size_t batch, std::size_t len, std::size_t stride);
  void init_params();

  gpt_config cfg_;
  std::vector<T> params_;
  std::vector<T> grads_;
  std::vector<T> work_;  // activations and backward scratch, one slab
  std::vector<tensor_info> layout_;
};

using tiny_gpt = basic_tiny_gpt<float>;

extern template class basic_tiny_gpt<float>;
extern template class basic_tiny_gpt<double>;

/// Per-element AdamW decay mask for a model (1 where tensor_info::is_matrix(), else 0),
/// for basic_adamw::set_decay_mask().
std::vector<std::uint8_t> decay_mask(std::span<const tensor_info> layout);

}  // namespace dtrain::testbed
