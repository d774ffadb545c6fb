#include "libs/rpc/periodic.h"

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
  while (!stopping_ && absl::Now() < until) mu_.AwaitWithDeadline(absl::Condition(&stopping_), until);
  return !stopping_;
}

void PeriodicTask::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace crm::rpc
