// testbed/eval.cpp: validation loss.
#include "testbed/eval.h"

#include <algorithm>
#include <string>

namespace dtrain::testbed {

template <class T>
result<T> eval_loss(basic_tiny_gpt<T>& model, const data_source& data) {
  const gpt_config& c = model.config();
  if (c.context != data.context() || c.vocab < data.vocab())
    return invalid_argument("eval_loss: model (context " + std::to_string(c.context) + ", vocab " +
                            std::to_string(c.vocab) + ") does not fit the data (context " +
                            std::to_string(data.context()) + ", vocab " + std::to_string(data.vocab()) + ")");
  const auto val = data.validation();
  const std::size_t len = data.sequence_length(), n = data.validation_sequences();
  double total = 0;
  for (std::size_t i = 0; i < n; i += c.max_batch) {
    const std::size_t b = std::min(c.max_batch, n - i);
    auto l = model.loss(val.subspan(i * len, b * len), b);
    if (!l.ok()) return std::move(l).status();
    total += static_cast<double>(*l) * static_cast<double>(b);  // chunk means weighted by size
  }
  return static_cast<T>(total / static_cast<double>(n));
}

template result<float> eval_loss(basic_tiny_gpt<float>&, const data_source&);
template result<double> eval_loss(basic_tiny_gpt<double>&, const data_source&);

}  // namespace dtrain::testbed
