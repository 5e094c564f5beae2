// tests/process/process_util.h: child processes for the multi-process tests (the swarm
// launcher's helper, examples/common/child_process.h).
#pragma once

#include "common/child_process.h"

namespace dtrain::test {
using examples::child;
using examples::temp_dir;
}  // namespace dtrain::test
