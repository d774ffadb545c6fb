// An injectable source of "now". Services read time only through a Clock so that tests can move it
// (SLA deadlines, return windows, point expiry, decay) instead of sleeping. Implementations are
// thread-safe.
#pragma once

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace crm {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// Wall-clock time, shifted by a fixed offset (zero in production; demos may run "in the future").
class SystemClock final : public Clock {
 public:
  explicit SystemClock(absl::Duration offset = absl::ZeroDuration()) : offset_(offset) {}
  absl::Time Now() const override;
  // A process-wide instance with no offset.
  static SystemClock* Default();

 private:
  const absl::Duration offset_;
};

// A clock that only moves when told to; for tests.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(
      absl::Time start = absl::FromUnixSeconds(1767225600));  // 2026-01-01T00:00:00Z
  absl::Time Now() const override;
  void Set(absl::Time t);
  void Advance(absl::Duration d);

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace crm
