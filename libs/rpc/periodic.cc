#include "libs/rpc/periodic.h"

#include <algorithm>

namespace crm::rpc {

void PeriodicTask::Start(absl::Duration interval, std::function<void()> task, FirstRun first) {
  thread_ = std::thread([this, interval, task = std::move(task), first] {
    if (first == FirstRun::kAfterInterval && !Wait(interval)) return;
    do {
      task();
    } while (Wait(interval));
  });
}

bool PeriodicTask::Wait(absl::Duration interval) {
  absl::MutexLock lock(&mu_);
  const absl::Time until = absl::Now() + interval;
  while (!stopping_) {
    const absl::Time deadline = std::min(until, run_at_);
    if (absl::Now() >= deadline) break;
    // Wakes for Stop and for a RunAt that moves the deadline.
    const uint64_t seen = run_at_changes_;
    auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || run_at_changes_ != seen;
    };
    mu_.AwaitWithDeadline(absl::Condition(&changed), deadline);
  }
  run_at_ = absl::InfiniteFuture();
  return !stopping_;
}

void PeriodicTask::RunAt(absl::Time when) {
  absl::MutexLock lock(&mu_);
  run_at_ = when;
  ++run_at_changes_;
}

void PeriodicTask::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace crm::rpc
