// toploc_verify/models.h: the models of the TOPLOC demo: the honest tiny GPT, briefly
// trained, and the cheaper models a dishonest node could serve instead of it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dtrain/core/status.h"
#include "testbed/corpus.h"
#include "testbed/tiny_gpt.h"

namespace dtrain::toploc_demo {

/// A model trained by train_model() and its validation loss (nats per character).
struct trained_model {
  testbed::tiny_gpt model;
  double val_loss = 0;
};

/// gpt_config::small() for `data`, initialised from `seed`, trained for `steps` AdamW
/// steps of batch 8 (peak lr `lr`, 10% linear warmup, cosine to 10%) on the data stream
/// of `seed`. Deterministic for a given binary and CPU.
/// Errors: those of tiny_gpt, adamw and the data source.
result<trained_model> train_model(const testbed::data_source& data, std::uint64_t seed, std::size_t steps, double lr);

/// A model of n_layer - 1 blocks that copies every tensor of `m` with the same name
/// (param_layout()): embeddings, the first n_layer - 1 blocks, the final norm and the
/// head. The last block is skipped. Errors: invalid_argument when m has one layer.
result<testbed::tiny_gpt> drop_last_layer(const testbed::tiny_gpt& m);

/// A copy of `m` whose weight matrices and embeddings (tensor_info::is_matrix()) are
/// quantized to int8 and back, per tensor, symmetric: scale = max|w| / 127,
/// w' = scale · clamp(round_half_even(w / scale), -127, 127). Biases and norms stay fp32.
testbed::tiny_gpt int8_roundtrip(const testbed::tiny_gpt& m);

/// The same parameters in a double-precision model: other arithmetic, same function.
result<testbed::basic_tiny_gpt<double>> to_double(const testbed::tiny_gpt& m);

}  // namespace dtrain::toploc_demo
