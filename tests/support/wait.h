// Waiting in tests for something that happens on another thread or in another process: check a
// condition until it holds or a deadline passes, instead of sleeping a guessed time. Header-only.
#pragma once

#include <algorithm>

#include "absl/functional/function_ref.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace crm::testing {

// True as soon as `condition()` holds; false if it still does not when `limit` has passed. Checks
// often at first and then every 50 ms at most.
inline bool WaitUntil(absl::FunctionRef<bool()> condition, absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  for (absl::Duration pause = absl::Milliseconds(1);;
       pause = std::min(pause * 2, absl::Milliseconds(50))) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(std::min(pause, deadline - absl::Now()));
  }
}

}  // namespace crm::testing
