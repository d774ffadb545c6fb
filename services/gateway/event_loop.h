// One libevent loop on a thread of its own: everything a front-door connection does (reading,
// parsing, writing, talking to the services) runs on the loop that accepted it, so connection state
// needs no locks. Other threads hand work to a loop with Post (gRPC callbacks of the slow path,
// shutdown). An idle connection costs a few buffers on its loop, never a thread. Thread-safe: Post
// and Stop from anywhere; everything else on the loop.
#pragma once

#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

struct event_base;
struct event;

namespace crm::gateway {

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Runs the loop on a new thread until Stop.
  void Start();
  // Runs `task` on the loop's thread, soon. Tasks posted before Stop run before the loop ends.
  void Post(std::function<void()> task);
  // Ends the loop after the posted tasks and joins its thread. Idempotent.
  void Stop();

  event_base* base() const { return base_; }
  bool InLoopThread() const { return std::this_thread::get_id() == thread_id_; }

 private:
  static void OnWake(int, short, void* self);
  void RunPosted();

  event_base* base_ = nullptr;
  event* wake_ = nullptr;
  std::thread thread_;
  std::thread::id thread_id_;
  absl::Mutex mu_;
  std::vector<std::function<void()>> posted_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace crm::gateway
