// toploc_verify/models.cpp: training the honest model and deriving the cheaters' models.
#include "toploc_verify/models.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "dtrain/optim/lr_schedule.h"
#include "testbed/adamw.h"
#include "testbed/eval.h"

namespace dtrain::toploc_demo {

using testbed::tiny_gpt;

result<trained_model> train_model(const testbed::data_source& data, std::uint64_t seed, std::size_t steps, double lr) {
  constexpr std::size_t batch = 8;
  auto m = tiny_gpt::create(testbed::gpt_config::small(data.vocab(), seed));
  if (!m.ok()) return m.status();
  testbed::adamw_options ao;
  ao.lr = lr;
  auto opt = testbed::adamw::create(m->param_count(), ao);
  if (!opt.ok()) return opt.status();
  DTRAIN_RETURN_IF_ERROR(opt->set_decay_mask(testbed::decay_mask(m->param_layout())));
  const auto total = static_cast<std::uint64_t>(steps);
  const optim::lr_schedule schedule =
      optim::lr_schedule::cosine(lr, 0.1 * lr, std::max<std::uint64_t>(1, total / 10), std::max<std::uint64_t>(1, total));
  std::vector<std::uint8_t> tokens(batch * data.sequence_length());
  for (std::uint64_t s = 0; s < total; ++s) {
    DTRAIN_RETURN_IF_ERROR(data.train_batch(seed, 0, s, tokens));
    auto loss = m->forward_backward(tokens, batch);
    if (!loss.ok()) return loss.status();
    DTRAIN_RETURN_IF_ERROR(opt->set_lr(schedule.at(s)));
    DTRAIN_RETURN_IF_ERROR(opt->step(m->params(), m->grads()));
  }
  auto val = testbed::eval_loss(*m, data);
  if (!val.ok()) return val.status();
  return trained_model{std::move(*m), static_cast<double>(*val)};
}

result<tiny_gpt> drop_last_layer(const tiny_gpt& m) {
  testbed::gpt_config c = m.config();
  if (c.n_layer < 2) return invalid_argument("drop_last_layer: the model has a single layer");
  c.n_layer -= 1;
  auto out = tiny_gpt::create(c);
  if (!out.ok()) return out.status();
  // Tensor names do not depend on the depth ("h0.attn.w_qkv", "lnf.g", ...), so every
  // tensor of the shallower model has a namesake of the same shape in m.
  for (const auto& dst : out->param_layout()) {
    const auto src = std::find_if(m.param_layout().begin(), m.param_layout().end(),
                                  [&](const testbed::tensor_info& t) { return t.name == dst.name; });
    if (src == m.param_layout().end() || src->rows != dst.rows || src->cols != dst.cols)
      return internal_error("drop_last_layer: no tensor '" + dst.name + "' of the same shape");
    std::copy_n(m.params().begin() + static_cast<std::ptrdiff_t>(src->offset), dst.size(),
                out->params().begin() + static_cast<std::ptrdiff_t>(dst.offset));
  }
  return out;
}

tiny_gpt int8_roundtrip(const tiny_gpt& m) {
  tiny_gpt q = m;
  for (const auto& t : q.param_layout()) {
    if (!t.is_matrix()) continue;
    const auto w = q.params().subspan(t.offset, t.size());
    float amax = 0;
    for (const float x : w) amax = std::max(amax, std::fabs(x));
    if (amax == 0) continue;
    const float scale = amax / 127.0f;
    for (float& x : w) x = std::clamp(std::nearbyint(x / scale), -127.0f, 127.0f) * scale;
  }
  return q;
}

result<testbed::basic_tiny_gpt<double>> to_double(const tiny_gpt& m) {
  auto d = testbed::basic_tiny_gpt<double>::create(m.config());
  if (!d.ok()) return d.status();
  std::copy(m.params().begin(), m.params().end(), d->params().begin());
  return d;
}

}  // namespace dtrain::toploc_demo
