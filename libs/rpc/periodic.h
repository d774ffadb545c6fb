// A service's background chore (maintenance, SLA sweeps, refreshes): runs a task on a thread of its
// own every `interval` until Stop(), which wakes a waiting thread at once instead of letting it
// sleep out the interval. RunAt brings the next run forward (or moves an earlier request), e.g.
// when the data the task summarises has changed a lot. Thread-safe; Stop() is idempotent and runs
// on destruction.
#pragma once

#include <functional>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace crm::rpc {

class PeriodicTask {
 public:
  enum class FirstRun { kNow, kAfterInterval };

  PeriodicTask() = default;
  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;
  ~PeriodicTask() { Stop(); }

  void Start(absl::Duration interval, std::function<void()> task, FirstRun first = FirstRun::kNow);
  void Stop();
  // The next run happens at `when` if that is before the interval ends; replaces an earlier RunAt
  // that has not run yet (so a caller can push it back while a burst of changes goes on).
  void RunAt(absl::Time when);

 private:
  // Waits for one interval; false once stopping.
  bool Wait(absl::Duration interval);

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time run_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  uint64_t run_at_changes_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace crm::rpc
