#include "services/gateway/event_loop.h"

#include <event2/event.h>
#include <event2/thread.h>

#include <mutex>

#include "libs/base/thread_name.h"

namespace crm::gateway {

EventLoop::EventLoop() {
  // Posting from other threads needs libevent's locking and cross-thread wakeups.
  static std::once_flag threads;
  std::call_once(threads, [] { evthread_use_pthreads(); });
  event_config* config = event_config_new();
  event_config_set_flag(config, EVENT_BASE_FLAG_NO_CACHE_TIME);
  base_ = event_base_new_with_config(config);
  event_config_free(config);
  wake_ = event_new(base_, -1, 0, &EventLoop::OnWake, this);
}

EventLoop::~EventLoop() {
  Stop();
  event_free(wake_);
  event_base_free(base_);
}

void EventLoop::Start() {
  thread_ = std::thread([this] {
    thread_id_ = std::this_thread::get_id();
    // EVLOOP_NO_EXIT_ON_EMPTY: a loop with no connection yet keeps waiting for posted work.
    event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY);
    RunPosted();
  });
  NameThread(thread_, "front-door");
}

void EventLoop::Post(std::function<void()> task) {
  {
    absl::MutexLock lock(&mu_);
    posted_.push_back(std::move(task));
  }
  event_active(wake_, 0, 0);
}

void EventLoop::OnWake(int, short, void* self) { static_cast<EventLoop*>(self)->RunPosted(); }

void EventLoop::RunPosted() {
  std::vector<std::function<void()>> tasks;
  bool stopping = false;
  {
    absl::MutexLock lock(&mu_);
    tasks.swap(posted_);
    stopping = stopping_;
  }
  for (auto& t : tasks) t();
  if (stopping) event_base_loopbreak(base_);
}

void EventLoop::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  event_active(wake_, 0, 0);
  if (thread_.joinable()) thread_.join();
}

}  // namespace crm::gateway
