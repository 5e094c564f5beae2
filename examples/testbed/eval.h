// testbed/eval.h: validation loss of a tiny GPT on a data source's fixed validation set.
#pragma once

#include "dtrain/core/status.h"
#include "testbed/corpus.h"
#include "testbed/tiny_gpt.h"

namespace dtrain::testbed {

/// Mean cross-entropy (nats per target) over every target of data.validation(), in
/// chunks of model.config().max_batch sequences; grads() untouched. Deterministic.
/// Errors: invalid_argument when the model's context differs from data.context() or
/// its vocab is smaller than data.vocab().
template <class T>
result<T> eval_loss(basic_tiny_gpt<T>& model, const data_source& data);

extern template result<float> eval_loss(basic_tiny_gpt<float>&, const data_source&);
extern template result<double> eval_loss(basic_tiny_gpt<double>&, const data_source&);

}  // namespace dtrain::testbed
