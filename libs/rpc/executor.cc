#include "libs/rpc/executor.h"

#include <pthread.h>

namespace crm::rpc {

Executor::Executor(std::string name, int threads) {
  // Linux keeps 15 bytes of a thread's name.
  if (name.size() > 15) name.resize(15);
  threads_.reserve(threads);
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { Loop(); });
    // Named here, not by the thread itself, so the name is there once the constructor returns.
    pthread_setname_np(threads_.back().native_handle(), name.c_str());
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
