// A fixed pool of threads for work that blocks: synced RocksDB writes (fsync) and calls to other
// services. gRPC callback reactors must not block their thread, so handlers that would hand the
// work here and finish the reactor from the pool. Many threads on purpose: blocked writers waiting
// on one fsync is exactly what lets RocksDB group-commit them. Work runs in the trace that was
// current where it was submitted (libs/trace), so a handler's hand-off logs in its call's trace.
// Its threads are named `name` (its first 15 bytes, as Linux keeps them), so `top -H`, perf and
// /proc/<pid>/task/*/comm tell the pools apart. Non-copyable; the destructor drains the queue.
#pragma once

#include <deque>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "libs/trace/trace.h"

namespace crm::rpc {

class Executor {
 public:
  Executor(std::string name, int threads);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  void Submit(absl::AnyInvocable<void() &&> work);

 private:
  void Loop();

  struct Task {
    absl::AnyInvocable<void() &&> work;
    std::optional<trace::TraceContext> trace;
  };
  absl::Mutex mu_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace crm::rpc
