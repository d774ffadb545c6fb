// Times tests reason in. Header-only.
#pragma once

#include "absl/time/time.h"

namespace crm::testing {

// When the clock of every ServiceHarness starts (ManualClock's default): 2026-01-01T00:00:00Z.
inline constexpr absl::Time kHarnessStart = absl::FromUnixSeconds(1767225600);

inline constexpr absl::Duration kDay = absl::Hours(24);

}  // namespace crm::testing
