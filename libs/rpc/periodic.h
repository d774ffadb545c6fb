// A service's background chore (maintenance, SLA sweeps, refreshes): runs a task on a thread of its own
// every `interval` until Stop(), which wakes a waiting thread at once instead of letting it sleep out the
// interval. Thread-safe; Stop() is idempotent and runs on destruction.
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

 private:
  // Waits for one interval; false once stopping.
  bool Wait(absl::Duration interval);

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace crm::rpc
