#include "libs/rpc/executor.h"

#include "libs/base/thread_name.h"

namespace crm::rpc {

Executor::Executor(std::string name, int threads) {
  threads_.reserve(threads);
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { Loop(); });
    NameThread(threads_.back(), name);
  }
}

Executor::~Executor() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (auto& t : threads_) t.join();
}

void Executor::Submit(absl::AnyInvocable<void() &&> work) {
  Task task{std::move(work), trace::Current()};
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(task));
}

void Executor::Loop() {
  for (;;) {
    Task task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Executor* e)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(e->mu_) { return e->stopping_ || !e->queue_.empty(); },
          this));
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    // Also when there is none: a task without a trace must not log in the previous task's.
    trace::Scope scope(task.trace);
    std::move(task.work)();
  }
}

}  // namespace crm::rpc
