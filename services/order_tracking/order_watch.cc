#include "services/order_tracking/order_watch.h"

#include "libs/api/validate.h"
#include "libs/rpc/status.h"
#include "services/order_tracking/order_lifecycle.h"

namespace crm::order_tracking {

OrderWatcher::OrderWatcher(OrderWatchHub* hub, std::string order_key)
    : hub_(hub), order_key_(std::move(order_key)) {}

void OrderWatcher::Push(const v1::OrderUpdate& update) {
  absl::MutexLock lock(&mu_);
  if (finishing_ || end_requested_) return;
  if (update.order().version() <= last_version_) return;
  last_version_ = update.order().version();
  queue_.push_back(update);
  if (IsFinal(update.order().status())) {
    end_requested_ = true;
    end_status_ = grpc::Status::OK;
  }
  if (!write_in_flight_) WriteNextLocked();
}

void OrderWatcher::End(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  if (end_requested_ || finishing_) return;
  end_requested_ = true;
  end_status_ = status;
  if (!write_in_flight_) WriteNextLocked();
}

void OrderWatcher::WriteNextLocked() {
  if (!queue_.empty()) {
    writing_ = std::move(queue_.front());
    queue_.pop_front();
    write_in_flight_ = true;
    StartWrite(&writing_);
    return;
  }
  if (end_requested_ && !finishing_) {
    finishing_ = true;
    Finish(end_status_);
  }
}

void OrderWatcher::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  write_in_flight_ = false;
  if (!ok) {
    // The client went away; OnDone follows once Finish completes.
    if (!finishing_) {
      finishing_ = true;
      Finish(grpc::Status::CANCELLED);
    }
    return;
  }
  WriteNextLocked();
}

void OrderWatcher::OnCancel() {
  absl::MutexLock lock(&mu_);
  queue_.clear();
  if (!write_in_flight_ && !finishing_) {
    finishing_ = true;
    Finish(grpc::Status::CANCELLED);
  }
}

void OrderWatcher::OnDone() {
  hub_->Remove(this);
  delete this;
}

bool OrderWatchHub::Add(OrderWatcher* watcher) {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return false;
  watchers_[watcher->order_key()].insert(watcher);
  watchers_gauge_->Increment();
  return true;
}

void OrderWatchHub::Remove(OrderWatcher* watcher) {
  absl::MutexLock lock(&mu_);
  auto it = watchers_.find(watcher->order_key());
  if (it == watchers_.end() || it->second.erase(watcher) == 0) return;
  watchers_gauge_->Decrement();
  if (it->second.empty()) watchers_.erase(it);
}

void OrderWatchHub::Publish(const v1::Order& order, const std::string& change, absl::Time when) {
  absl::MutexLock lock(&mu_);
  auto it = watchers_.find(Key(order.customer_id(), order.order_id()));
  if (it == watchers_.end()) return;
  v1::OrderUpdate update;
  *update.mutable_order() = order;
  update.set_change(change);
  api::SetTimestamp(when, update.mutable_time());
  for (OrderWatcher* w : it->second) w->Push(update);
}

void OrderWatchHub::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutting_down_ = true;
  for (auto& [key, set] : watchers_) {
    for (OrderWatcher* w : set)
      w->End(rpc::ToGrpc(absl::UnavailableError("server shutting down; watch again")));
  }
}

int OrderWatchHub::watcher_count() {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (auto& [key, set] : watchers_) n += static_cast<int>(set.size());
  return n;
}

}  // namespace crm::order_tracking
