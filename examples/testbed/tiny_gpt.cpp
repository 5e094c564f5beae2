// testbed/tiny_gpt.cpp: forward and backward passes of the tiny GPT with Eigen. The
// linear layers run on all batch·len rows at once; attention runs per (sequence, head)
// on small len x len blocks. Every activation the backward pass needs is kept in one
// workspace slab sized for max_batch at create().
#include "testbed/tiny_gpt.h"

#include <algorithm>
#include <cmath>
#include <new>
#include <string>
#include <type_traits>

#include <Eigen/Core>

#include "dtrain/core/rng.h"

namespace dtrain::testbed {
namespace {

constexpr double ln_eps = 1e-5;
constexpr double gelu_a = 0.044715;
constexpr double gelu_c = 0.7978845608028654;  // sqrt(2/pi)
constexpr std::size_t max_elements = std::size_t{1} << 31;

// Per-block tensors in buffer order (indices into the layout after wte, wpe).
// clang-format off
enum block_tensor : std::size_t {
  ln1_g, ln1_b, w_qkv, b_qkv, w_o, b_o, ln2_g, ln2_b, w_fc, b_fc, w_proj, b_proj, per_block
};
// clang-format on
constexpr const char* block_names[per_block] = {"ln1.g",    "ln1.b",    "attn.w_qkv", "attn.b_qkv",
                                                "attn.w_o", "attn.b_o", "ln2.g",      "ln2.b",
                                                "mlp.w_fc", "mlp.b_fc", "mlp.w_proj", "mlp.b_proj"};

std::vector<tensor_info> make_layout(const gpt_config& c) {
  std::vector<tensor_info> v;
  std::size_t off = 0;
  auto add = [&](std::string name, std::size_t rows, std::size_t cols) {
    v.push_back({std::move(name), off, rows, cols});
    off += rows * cols;
  };
  const std::size_t d = c.d_model;
  add("wte", c.vocab, d);
  add("wpe", c.context, d);
  for (std::size_t l = 0; l < c.n_layer; ++l) {
    const std::string p = "h" + std::to_string(l) + ".";
    const std::size_t shapes[per_block][2] = {{1, d}, {1, d}, {d, 3 * d},  {1, 3 * d},  {d, d},      {1, d},
                                              {1, d}, {1, d}, {d, c.d_ff}, {1, c.d_ff}, {c.d_ff, d}, {1, d}};
    for (std::size_t k = 0; k < per_block; ++k) add(p + block_names[k], shapes[k][0], shapes[k][1]);
  }
  add("lnf.g", 1, d);
  add("lnf.b", 1, d);
  add("head.w", d, c.vocab);
  return v;
}

// Offsets of the activation buffers inside the workspace slab, for n = max_batch·context
// rows. Per block: LN1 (xhat, out, rstd), qkv, attention probabilities, attention output,
// LN2 (xhat, out, rstd), MLP pre-activation h, tanh t and GELU output g.
struct work_plan {
  std::size_t n, d, dff, v, t, heads, batch;
  std::size_t block_size;
  // offsets within one block
  std::size_t o_ln1_xhat, o_ln1_out, o_ln1_rstd, o_qkv, o_prob, o_att, o_ln2_xhat, o_ln2_out, o_ln2_rstd, o_h, o_t, o_g;
  // global offsets (after the blocks)
  std::size_t o_blocks, o_x, o_lnf_xhat, o_lnf_out, o_lnf_rstd, o_logits, o_dx, o_dy, o_dqkv, o_datt, o_dff, o_dprob,
      total;

  explicit work_plan(const gpt_config& c)
      : n(c.max_batch * c.context),
        d(c.d_model),
        dff(c.d_ff),
        v(c.vocab),
        t(c.context),
        heads(c.n_head),
        batch(c.max_batch) {
    std::size_t off = 0;
    auto take = [&off](std::size_t count) {
      const std::size_t o = off;
      off += count;
      return o;
    };
    o_ln1_xhat = take(n * d);
    o_ln1_out = take(n * d);
    o_ln1_rstd = take(n);
    o_qkv = take(n * 3 * d);
    o_prob = take(batch * heads * t * t);
    o_att = take(n * d);
    o_ln2_xhat = take(n * d);
    o_ln2_out = take(n * d);
    o_ln2_rstd = take(n);
    o_h = take(n * dff);
    o_t = take(n * dff);
    o_g = take(n * dff);
    block_size = off;
    off = 0;
    o_blocks = take(block_size * c.n_layer);
    o_x = take(n * d);
    o_lnf_xhat = take(n * d);
    o_lnf_out = take(n * d);
    o_lnf_rstd = take(n);
    o_logits = take(n * v);
    o_dx = take(n * d);
    o_dy = take(n * d);
    o_dqkv = take(n * 3 * d);
    o_datt = take(n * d);
    o_dff = take(n * dff);
    o_dprob = take(t * t);
    total = off;
  }
};

template <class T>
using mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using mmap = Eigen::Map<mat<T>>;
template <class T>
using cmap = Eigen::Map<const mat<T>>;
template <class T>
using smap = Eigen::Map<mat<T>, 0, Eigen::OuterStride<>>;  // a column block of a wider matrix
template <class T>
using rvec = Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>;
template <class T>
using crvec = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>;

// LayerNorm over the rows of x (rows x d): xhat = (x - mean)·rstd, out = xhat·g + b.
template <class T>
void layernorm_forward(const T* x, const T* g, const T* b, T* xhat, T* out, T* rstd, std::size_t rows, std::size_t d) {
  const crvec<T> gv(g, static_cast<Eigen::Index>(d)), bv(b, static_cast<Eigen::Index>(d));
  for (std::size_t r = 0; r < rows; ++r) {
    const crvec<T> xr(x + r * d, static_cast<Eigen::Index>(d));
    rvec<T> xh(xhat + r * d, static_cast<Eigen::Index>(d));
    const T mean = xr.sum() / static_cast<T>(d);
    xh = xr.array() - mean;
    const T var = xh.squaredNorm() / static_cast<T>(d);
    const T rs = T(1) / std::sqrt(var + static_cast<T>(ln_eps));
    rstd[r] = rs;
    xh *= rs;
    rvec<T>(out + r * d, static_cast<Eigen::Index>(d)) = xh.cwiseProduct(gv) + bv;
  }
}

// LayerNorm backward: dy is d(loss)/d(out); writes dg, db (overwrite) and ADDS d/dx to dx.
template <class T>
void layernorm_backward(const T* dy, const T* xhat, const T* rstd, const T* g, T* dg, T* db, T* dx, std::size_t rows,
                        std::size_t d) {
  const auto di = static_cast<Eigen::Index>(d);
  const crvec<T> gv(g, di);
  rvec<T> dgv(dg, di), dbv(db, di);
  dgv.setZero();
  dbv.setZero();
  for (std::size_t r = 0; r < rows; ++r) {
    const crvec<T> dyr(dy + r * d, di), xh(xhat + r * d, di);
    dgv += dyr.cwiseProduct(xh);
    dbv += dyr;
    // dxhat = dy·g;  dx = rstd·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat))
    const T m1 = dyr.dot(gv) / static_cast<T>(d);
    const T m2 = dyr.cwiseProduct(gv).dot(xh) / static_cast<T>(d);
    rvec<T> dxr(dx + r * d, di);
    dxr.array() += rstd[r] * (dyr.cwiseProduct(gv).array() - m1 - xh.array() * m2);
  }
}

// Sum of the rows of m (rows x cols) into out (overwrite).
template <class T>
void column_sums(const T* m, T* out, std::size_t rows, std::size_t cols) {
  const auto ci = static_cast<Eigen::Index>(cols);
  rvec<T> o(out, ci);
  o.setZero();
  for (std::size_t r = 0; r < rows; ++r) o += crvec<T>(m + r * cols, ci);
}

// C = A·B (accumulate: C += A·B) in panels of at most 128 x 128 x 128. Eigen packs its
// GEMM operands into buffers of up to kc·mc and kc·nc scalars and takes them from the
// stack only below EIGEN_STACK_ALLOCATION_LIMIT (128 KiB); bounding every dimension by
// 128 keeps them there (128² doubles = 128 KiB), so no product ever touches the heap,
// whatever the model size. The summation order is fixed by the shapes: deterministic.
constexpr Eigen::Index panel = 128;
template <class C, class A, class B>
void product(C&& c, const A& a, const B& b, bool accumulate) {
  static_assert(sizeof(typename std::decay_t<C>::Scalar) * panel * panel <= EIGEN_STACK_ALLOCATION_LIMIT);
  const Eigen::Index m = a.rows(), k = a.cols(), n = b.cols();
  DTRAIN_ASSERT(b.rows() == k && c.rows() == m && c.cols() == n && k > 0);
  for (Eigen::Index i = 0; i < m; i += panel) {
    const Eigen::Index mi = std::min(panel, m - i);
    for (Eigen::Index j = 0; j < n; j += panel) {
      const Eigen::Index nj = std::min(panel, n - j);
      auto cb = c.block(i, j, mi, nj);
      for (Eigen::Index p = 0; p < k; p += panel) {
        const Eigen::Index kp = std::min(panel, k - p);
        if (p == 0 && !accumulate) {
          cb.noalias() = a.block(i, p, mi, kp) * b.block(p, j, kp, nj);
        } else {
          cb.noalias() += a.block(i, p, mi, kp) * b.block(p, j, kp, nj);
        }
      }
    }
  }
}

// Irwin–Hall approximation of N(0,1): sum of 12 uniforms on [0,1) minus 6. Exact integer
// arithmetic, so every machine produces the same bits.
double irwin_hall_normal(const counter_rng& rng, std::uint64_t index) {
  std::uint64_t sum = 0;
  for (std::uint64_t k = 0; k < 12; ++k) sum += rng.at(12 * index + k) >> 8;  // 24-bit words
  return (static_cast<double>(sum) - 6.0 * 16777216.0) * 0x1p-24;
}

}  // namespace

status gpt_config::validate() const {
  if (vocab == 0 || context == 0 || d_model == 0 || n_layer == 0 || n_head == 0 || d_ff == 0 || max_batch == 0)
    return invalid_argument("gpt_config: every size must be >= 1 (vocab " + std::to_string(vocab) + ", context " +
                            std::to_string(context) + ", d_model " + std::to_string(d_model) + ", n_layer " +
                            std::to_string(n_layer) + ", n_head " + std::to_string(n_head) + ", d_ff " +
                            std::to_string(d_ff) + ", max_batch " + std::to_string(max_batch) + ")");
  if (!std::isfinite(init_std) || !(init_std > 0))
    return invalid_argument("gpt_config: init_std " + std::to_string(init_std) + " is not finite and > 0");
  if (vocab > 256) return invalid_argument("gpt_config: vocab " + std::to_string(vocab) + " > 256 (tokens are bytes)");
  if (d_model % n_head != 0)
    return invalid_argument("gpt_config: d_model " + std::to_string(d_model) + " is not a multiple of n_head " +
                            std::to_string(n_head));
  // Bound each factor first so that the products below cannot overflow.
  constexpr std::size_t lim = std::size_t{1} << 20;
  if (context > lim || d_model > lim || n_layer > lim || d_ff > lim || max_batch > lim)
    return invalid_argument("gpt_config: a size exceeds 2^20");
  if (param_count() > max_elements || max_batch * context > max_elements / (3 * d_model + d_ff + vocab) ||
      work_plan(*this).total > max_elements)
    return invalid_argument("gpt_config: parameters or workspace exceed 2^31 elements");
  return ok_status();
}

std::size_t gpt_config::param_count() const noexcept {
  const std::size_t d = d_model;
  const std::size_t block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * d_ff + d_ff) + (d_ff * d + d);
  return vocab * d + context * d + n_layer * block + 2 * d + d * vocab;
}

std::vector<std::uint8_t> decay_mask(std::span<const tensor_info> layout) {
  std::size_t n = 0;
  for (const auto& t : layout) n = std::max(n, t.offset + t.size());
  std::vector<std::uint8_t> mask(n, 0);
  for (const auto& t : layout)
    if (t.is_matrix()) std::fill_n(mask.begin() + static_cast<std::ptrdiff_t>(t.offset), t.size(), std::uint8_t{1});
  return mask;
}

template <class T>
result<basic_tiny_gpt<T>> basic_tiny_gpt<T>::create(const gpt_config& config) {
  DTRAIN_RETURN_IF_ERROR(config.validate());
  basic_tiny_gpt m(config);
  try {
    m.layout_ = make_layout(config);
    m.params_.assign(config.param_count(), T(0));
    m.grads_.assign(config.param_count(), T(0));
    m.work_.assign(work_plan(config).total, T(0));
  } catch (const std::bad_alloc&) {
    return resource_exhausted("tiny_gpt: cannot allocate " + std::to_string(config.param_count()) +
                              " parameters and their workspace");
  }
  DTRAIN_ASSERT(m.layout_.back().offset + m.layout_.back().size() == m.params_.size());
  m.init_params();
  return m;
}

template <class T>
void basic_tiny_gpt<T>::init_params() {
  const double resid_scale = 1.0 / std::sqrt(2.0 * static_cast<double>(cfg_.n_layer));
  for (std::size_t i = 0; i < layout_.size(); ++i) {
    const tensor_info& ti = layout_[i];
    T* p = params_.data() + ti.offset;
    const bool gain = ti.name.ends_with(".g");
    if (!ti.is_matrix()) {  // biases 0, LayerNorm gains 1
      std::fill_n(p, ti.size(), gain ? T(1) : T(0));
      continue;
    }
    double std_dev = cfg_.init_std;
    if (ti.name.ends_with("attn.w_o") || ti.name.ends_with("mlp.w_proj")) std_dev *= resid_scale;
    const counter_rng rng(cfg_.init_seed, i);  // one stream per tensor
    for (std::size_t k = 0; k < ti.size(); ++k) p[k] = static_cast<T>(std_dev * irwin_hall_normal(rng, k));
  }
}

template <class T>
status basic_tiny_gpt<T>::check_tokens(std::span<const std::uint8_t> tokens, std::size_t batch) const {
  if (batch == 0 || batch > cfg_.max_batch)
    return invalid_argument("tiny_gpt: batch " + std::to_string(batch) + " outside [1, max_batch " +
                            std::to_string(cfg_.max_batch) + "]");
  if (tokens.size() != batch * (cfg_.context + 1))
    return invalid_argument("tiny_gpt: " + std::to_string(tokens.size()) + " tokens for batch " +
                            std::to_string(batch) + " x (context " + std::to_string(cfg_.context) + " + 1)");
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] >= cfg_.vocab)
      return out_of_range("tiny_gpt: token " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                          " >= vocab " + std::to_string(cfg_.vocab));
  return ok_status();
}

template <class T>
T basic_tiny_gpt<T>::forward(const std::uint8_t* tokens, std::size_t batch, std::size_t len, std::size_t stride,
                             stage until, T* per_token) {
  const work_plan w(cfg_);
  const std::size_t n = batch * len, d = w.d, dff = w.dff, hs = d / w.heads;
  const auto ni = static_cast<Eigen::Index>(n), di = static_cast<Eigen::Index>(d);
  const auto li = static_cast<Eigen::Index>(len), hi = static_cast<Eigen::Index>(hs);
  const T* P = params_.data();
  T* W = work_.data();
  auto tensor = [&](std::size_t l, std::size_t k) { return P + layout_[2 + l * per_block + k].offset; };

  // Embeddings.
  const T* wte = P + layout_[0].offset;
  const T* wpe = P + layout_[1].offset;
  mmap<T> x(W + w.o_x, ni, di);
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t t = 0; t < len; ++t)
      x.row(static_cast<Eigen::Index>(b * len + t)) =
          crvec<T>(wte + tokens[b * stride + t] * d, di) + crvec<T>(wpe + t * d, di);

  const T scale = T(1) / std::sqrt(static_cast<T>(hs));
  for (std::size_t l = 0; l < cfg_.n_layer; ++l) {
    T* B = W + w.o_blocks + l * w.block_size;
    // Attention sub-block.
    layernorm_forward(x.data(), tensor(l, ln1_g), tensor(l, ln1_b), B + w.o_ln1_xhat, B + w.o_ln1_out, B + w.o_ln1_rstd,
                      n, d);
    mmap<T> qkv(B + w.o_qkv, ni, 3 * di);
    product(qkv, cmap<T>(B + w.o_ln1_out, ni, di), cmap<T>(tensor(l, w_qkv), di, 3 * di), false);
    qkv.rowwise() += crvec<T>(tensor(l, b_qkv), 3 * di);
    for (std::size_t b = 0; b < batch; ++b) {
      for (std::size_t h = 0; h < w.heads; ++h) {
        T* base = B + w.o_qkv + b * len * 3 * d + h * hs;
        const smap<T> q(base, li, hi, Eigen::OuterStride<>(3 * di));
        const smap<T> k(base + d, li, hi, Eigen::OuterStride<>(3 * di));
        const smap<T> v(base + 2 * d, li, hi, Eigen::OuterStride<>(3 * di));
        mmap<T> pr(B + w.o_prob + (b * w.heads + h) * len * len, li, li);
        product(pr, q, k.transpose(), false);
        for (Eigen::Index i = 0; i < li; ++i) {  // causal softmax of scale·s over j <= i
          auto row = pr.row(i).head(i + 1);
          const T mx = row.maxCoeff();
          row = ((row.array() - mx) * scale).exp();
          row /= row.sum();
          pr.row(i).tail(li - i - 1).setZero();
        }
        smap<T> y(B + w.o_att + b * len * d + h * hs, li, hi, Eigen::OuterStride<>(di));
        product(y, pr, v, false);
      }
    }
    product(x, cmap<T>(B + w.o_att, ni, di), cmap<T>(tensor(l, w_o), di, di), true);
    x.rowwise() += crvec<T>(tensor(l, b_o), di);

    // MLP sub-block.
    layernorm_forward(x.data(), tensor(l, ln2_g), tensor(l, ln2_b), B + w.o_ln2_xhat, B + w.o_ln2_out, B + w.o_ln2_rstd,
                      n, d);
    const auto fi = static_cast<Eigen::Index>(dff);
    mmap<T> hpre(B + w.o_h, ni, fi), th(B + w.o_t, ni, fi), g(B + w.o_g, ni, fi);
    product(hpre, cmap<T>(B + w.o_ln2_out, ni, di), cmap<T>(tensor(l, w_fc), di, fi), false);
    hpre.rowwise() += crvec<T>(tensor(l, b_fc), fi);
    // tanh(u) = 1 − 2/(e^{2u} + 1), u = c·(h + a·h³); e^{2u} = inf gives exactly 1.
    th.array() = (static_cast<T>(2 * gelu_c) * (hpre.array() + static_cast<T>(gelu_a) * hpre.array().cube())).exp();
    th.array() = T(1) - T(2) / (th.array() + T(1));
    g.array() = T(0.5) * hpre.array() * (T(1) + th.array());
    product(x, g, cmap<T>(tensor(l, w_proj), fi, di), true);
    x.rowwise() += crvec<T>(tensor(l, b_proj), di);
  }

  const std::size_t nt = 2 + cfg_.n_layer * per_block;
  layernorm_forward(x.data(), P + layout_[nt].offset, P + layout_[nt + 1].offset, W + w.o_lnf_xhat, W + w.o_lnf_out,
                    W + w.o_lnf_rstd, n, d);
  if (until == stage::hidden) return T(0);
  const auto vi = static_cast<Eigen::Index>(w.v);
  mmap<T> logits(W + w.o_logits, ni, vi);
  product(logits, cmap<T>(W + w.o_lnf_out, ni, di), cmap<T>(P + layout_[nt + 2].offset, di, vi), false);
  if (until == stage::logits) return T(0);

  // Softmax cross-entropy; logits become probabilities for the backward pass.
  double total = 0;
  for (std::size_t b = 0; b < batch; ++b) {
    for (std::size_t t = 0; t < len; ++t) {
      const auto r = static_cast<Eigen::Index>(b * len + t);
      auto row = logits.row(r);
      const T mx = row.maxCoeff();
      const T target_logit = row(tokens[b * stride + t + 1]);
      row = (row.array() - mx).exp();
      const T s = row.sum();
      row /= s;
      const T l = std::log(s) + mx - target_logit;
      if (per_token != nullptr) per_token[b * len + t] = l;
      total += static_cast<double>(l);
    }
  }
  return static_cast<T>(total / static_cast<double>(n));
}

template <class T>
void basic_tiny_gpt<T>::backward(const std::uint8_t* tokens, std::size_t batch, std::size_t len, std::size_t stride) {
  const work_plan w(cfg_);
  const std::size_t n = batch * len, d = w.d, dff = w.dff, hs = d / w.heads;
  const auto ni = static_cast<Eigen::Index>(n), di = static_cast<Eigen::Index>(d);
  const auto li = static_cast<Eigen::Index>(len), hi = static_cast<Eigen::Index>(hs);
  const auto vi = static_cast<Eigen::Index>(w.v), fi = static_cast<Eigen::Index>(dff);
  const T* P = params_.data();
  T* G = grads_.data();
  T* W = work_.data();
  auto off = [&](std::size_t l, std::size_t k) { return layout_[2 + l * per_block + k].offset; };
  const std::size_t nt = 2 + cfg_.n_layer * per_block;

  // d(mean CE)/d(logits) = (softmax − onehot) / n, in place of the probabilities.
  mmap<T> dlogits(W + w.o_logits, ni, vi);
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t t = 0; t < len; ++t)
      dlogits(static_cast<Eigen::Index>(b * len + t), tokens[b * stride + t + 1]) -= T(1);
  dlogits *= T(1) / static_cast<T>(n);

  const std::size_t o_head = layout_[nt + 2].offset;
  product(mmap<T>(G + o_head, di, vi), cmap<T>(W + w.o_lnf_out, ni, di).transpose(), dlogits, false);
  mmap<T> dy(W + w.o_dy, ni, di), dx(W + w.o_dx, ni, di);
  product(dy, dlogits, cmap<T>(P + o_head, di, vi).transpose(), false);
  dx.setZero();
  layernorm_backward(dy.data(), W + w.o_lnf_xhat, W + w.o_lnf_rstd, P + layout_[nt].offset, G + layout_[nt].offset,
                     G + layout_[nt + 1].offset, dx.data(), n, d);

  const T scale = T(1) / std::sqrt(static_cast<T>(hs));
  for (std::size_t l = cfg_.n_layer; l-- > 0;) {
    T* B = W + w.o_blocks + l * w.block_size;
    // MLP: x += g·W_proj + b_proj,  g = GELU(h),  h = ln2_out·W_fc + b_fc.
    const cmap<T> g(B + w.o_g, ni, fi), hpre(B + w.o_h, ni, fi), th(B + w.o_t, ni, fi);
    product(mmap<T>(G + off(l, w_proj), fi, di), g.transpose(), dx, false);
    column_sums(dx.data(), G + off(l, b_proj), n, d);
    mmap<T> dh(W + w.o_dff, ni, fi);
    product(dh, dx, cmap<T>(P + off(l, w_proj), fi, di).transpose(), false);
    // GELU'(h) = ½(1 + t) + ½·h·(1 − t²)·c·(1 + 3a·h²)
    dh.array() *= T(0.5) * (T(1) + th.array()) + T(0.5) * hpre.array() * (T(1) - th.array().square()) *
                                                     static_cast<T>(gelu_c) *
                                                     (T(1) + static_cast<T>(3 * gelu_a) * hpre.array().square());
    product(mmap<T>(G + off(l, w_fc), di, fi), cmap<T>(B + w.o_ln2_out, ni, di).transpose(), dh, false);
    column_sums(dh.data(), G + off(l, b_fc), n, dff);
    product(dy, dh, cmap<T>(P + off(l, w_fc), di, fi).transpose(), false);
    layernorm_backward(dy.data(), B + w.o_ln2_xhat, B + w.o_ln2_rstd, P + off(l, ln2_g), G + off(l, ln2_g),
                       G + off(l, ln2_b), dx.data(), n, d);

    // Attention: x += att·W_o + b_o.
    product(mmap<T>(G + off(l, w_o), di, di), cmap<T>(B + w.o_att, ni, di).transpose(), dx, false);
    column_sums(dx.data(), G + off(l, b_o), n, d);
    mmap<T> datt(W + w.o_datt, ni, di);
    product(datt, dx, cmap<T>(P + off(l, w_o), di, di).transpose(), false);
    for (std::size_t b = 0; b < batch; ++b) {
      for (std::size_t h = 0; h < w.heads; ++h) {
        const std::size_t qoff = b * len * 3 * d + h * hs;
        const T* base = B + w.o_qkv + qoff;
        const Eigen::OuterStride<> s3(3 * di), s1(di);
        const Eigen::Map<const mat<T>, 0, Eigen::OuterStride<>> q(base, li, hi, s3), k(base + d, li, hi, s3),
            v(base + 2 * d, li, hi, s3);
        const cmap<T> pr(B + w.o_prob + (b * w.heads + h) * len * len, li, li);
        const Eigen::Map<const mat<T>, 0, Eigen::OuterStride<>> dyh(datt.data() + b * len * d + h * hs, li, hi, s1);
        T* dbase = W + w.o_dqkv + qoff;
        smap<T> dq(dbase, li, hi, s3), dk(dbase + d, li, hi, s3), dv(dbase + 2 * d, li, hi, s3);
        mmap<T> dp(W + w.o_dprob, li, li);
        product(dp, dyh, v.transpose(), false);
        product(dv, pr.transpose(), dyh, false);
        // dS_ij = scale·P_ij·(dP_ij − Σ_k dP_ik P_ik); zero above the diagonal because P is.
        for (Eigen::Index i = 0; i < li; ++i) {
          const T r = dp.row(i).head(i + 1).dot(pr.row(i).head(i + 1));
          dp.row(i).head(i + 1) =
              scale * pr.row(i).head(i + 1).cwiseProduct((dp.row(i).head(i + 1).array() - r).matrix());
          dp.row(i).tail(li - i - 1).setZero();
        }
        product(dq, dp, k, false);
        product(dk, dp.transpose(), q, false);
      }
    }
    const cmap<T> dqkv(W + w.o_dqkv, ni, 3 * di);
    product(mmap<T>(G + off(l, w_qkv), di, 3 * di), cmap<T>(B + w.o_ln1_out, ni, di).transpose(), dqkv, false);
    column_sums(dqkv.data(), G + off(l, b_qkv), n, 3 * d);
    product(dy, dqkv, cmap<T>(P + off(l, w_qkv), di, 3 * di).transpose(), false);
    layernorm_backward(dy.data(), B + w.o_ln1_xhat, B + w.o_ln1_rstd, P + off(l, ln1_g), G + off(l, ln1_g),
                       G + off(l, ln1_b), dx.data(), n, d);
  }

  // Embeddings: scatter-add the residual-stream gradient.
  T* dwte = G + layout_[0].offset;
  T* dwpe = G + layout_[1].offset;
  std::fill_n(dwte, layout_[0].size(), T(0));
  std::fill_n(dwpe, layout_[1].size(), T(0));
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t t = 0; t < len; ++t) {
      const auto row = dx.row(static_cast<Eigen::Index>(b * len + t));
      rvec<T>(dwte + tokens[b * stride + t] * d, di) += row;
      rvec<T>(dwpe + t * d, di) += row;
    }
}

template <class T>
result<T> basic_tiny_gpt<T>::forward_backward(std::span<const std::uint8_t> tokens, std::size_t batch) {
  DTRAIN_RETURN_IF_ERROR(check_tokens(tokens, batch));
  const std::size_t stride = cfg_.context + 1;
  const T l = forward(tokens.data(), batch, cfg_.context, stride, stage::loss, nullptr);
  backward(tokens.data(), batch, cfg_.context, stride);
  return l;
}

template <class T>
result<T> basic_tiny_gpt<T>::loss(std::span<const std::uint8_t> tokens, std::size_t batch, std::span<T> per_token) {
  DTRAIN_RETURN_IF_ERROR(check_tokens(tokens, batch));
  if (!per_token.empty() && per_token.size() != batch * cfg_.context)
    return invalid_argument("tiny_gpt::loss: per_token holds " + std::to_string(per_token.size()) + ", need " +
                            std::to_string(batch * cfg_.context));
  return forward(tokens.data(), batch, cfg_.context, cfg_.context + 1, stage::loss,
                 per_token.empty() ? nullptr : per_token.data());
}

template <class T>
status basic_tiny_gpt<T>::forward_hidden(std::span<const std::uint8_t> tokens, std::span<T> out) {
  const std::size_t len = tokens.size();
  if (len == 0 || len > cfg_.context)
    return invalid_argument("tiny_gpt::forward_hidden: length " + std::to_string(len) + " outside [1, context " +
                            std::to_string(cfg_.context) + "]");
  if (out.size() != len * cfg_.d_model)
    return invalid_argument("tiny_gpt::forward_hidden: out holds " + std::to_string(out.size()) + ", need " +
                            std::to_string(len * cfg_.d_model));
  for (std::size_t i = 0; i < len; ++i)
    if (tokens[i] >= cfg_.vocab)
      return out_of_range("tiny_gpt::forward_hidden: token " + std::to_string(tokens[i]) + " >= vocab " +
                          std::to_string(cfg_.vocab));
  forward(tokens.data(), 1, len, len, stage::hidden, nullptr);
  const work_plan w(cfg_);
  std::copy_n(work_.data() + w.o_lnf_out, out.size(), out.data());
  return ok_status();
}

template <class T>
result<std::vector<std::uint8_t>> basic_tiny_gpt<T>::generate(std::span<const std::uint8_t> prompt, std::size_t n_new,
                                                              double temperature, std::uint64_t seed) {
  if (prompt.empty()) return invalid_argument("tiny_gpt::generate: empty prompt");
  if (!(temperature >= 0) || !std::isfinite(temperature))
    return invalid_argument("tiny_gpt::generate: temperature " + std::to_string(temperature) +
                            " is not finite and >= 0");
  for (std::uint8_t tok : prompt)
    if (tok >= cfg_.vocab)
      return out_of_range("tiny_gpt::generate: prompt token " + std::to_string(tok) + " >= vocab " +
                          std::to_string(cfg_.vocab));
  std::vector<std::uint8_t> seq;
  std::vector<double> prob;
  try {
    prob.resize(cfg_.vocab);
    seq.reserve(prompt.size() + n_new);
  } catch (const std::exception&) {  // bad_alloc, or length_error for a huge n_new
    return resource_exhausted("tiny_gpt::generate: cannot allocate " + std::to_string(n_new) + " tokens");
  }
  seq.assign(prompt.begin(), prompt.end());
  counter_rng rng(seed);
  const work_plan w(cfg_);
  for (std::size_t s = 0; s < n_new; ++s) {
    const std::size_t len = std::min(seq.size(), cfg_.context);
    forward(seq.data() + (seq.size() - len), 1, len, len, stage::logits, nullptr);
    const T* logit = work_.data() + w.o_logits + (len - 1) * w.v;
    std::size_t best = 0;
    for (std::size_t j = 1; j < w.v; ++j)
      if (logit[j] > logit[best]) best = j;
    if (temperature > 0) {
      double sum = 0;
      for (std::size_t j = 0; j < w.v; ++j) {
        prob[j] = std::exp((static_cast<double>(logit[j]) - static_cast<double>(logit[best])) / temperature);
        sum += prob[j];
      }
      const double u = static_cast<double>(rng.next_u32()) * 0x1p-32 * sum;
      double acc = 0;
      std::size_t pick = w.v - 1;
      for (std::size_t j = 0; j < w.v; ++j) {
        acc += prob[j];
        if (u < acc) {
          pick = j;
          break;
        }
      }
      best = pick;
    }
    seq.push_back(static_cast<std::uint8_t>(best));
  }
  return seq;
}

template class basic_tiny_gpt<float>;
template class basic_tiny_gpt<double>;

}  // namespace dtrain::testbed
