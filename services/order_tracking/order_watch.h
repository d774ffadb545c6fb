// Live order watching (seed 002 §1.2.2 "Order Watch") without a thread per watcher: each WatchOrder
// call is a callback-API write reactor registered in the hub; committed changes are published to
// the hub, which queues them on every watcher of that order; a watcher writes one update at a time
// from its write completion and finishes after the update that makes the order final (delivered,
// cancelled, returned). Updates carry the order's version, so a late or duplicate publish is
// dropped. Thread-safe.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "absl/synchronization/mutex.h"
#include "crm/v1/order_tracking.pb.h"
#include "grpcpp/support/server_callback.h"
#include "prometheus/gauge.h"

namespace crm::order_tracking {

class OrderWatchHub;

class OrderWatcher final : public grpc::ServerWriteReactor<v1::OrderUpdate> {
 public:
  OrderWatcher(OrderWatchHub* hub, std::string order_key);
  // Queues an update unless it is older than what was already queued or sent.
  void Push(const v1::OrderUpdate& update);
  // Ends the stream with `status` after the queued updates (server shutdown, or the order
  // vanished).
  void End(const grpc::Status& status);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  const std::string& order_key() const { return order_key_; }

 private:
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  OrderWatchHub* const hub_;
  const std::string order_key_;
  absl::Mutex mu_;
  std::deque<v1::OrderUpdate> queue_ ABSL_GUARDED_BY(mu_);
  v1::OrderUpdate writing_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status end_status_ ABSL_GUARDED_BY(mu_);
  bool end_requested_ ABSL_GUARDED_BY(mu_) = false;
  int64_t last_version_ ABSL_GUARDED_BY(mu_) = -1;
};

class OrderWatchHub {
 public:
  explicit OrderWatchHub(prometheus::Gauge* watchers) : watchers_gauge_(watchers) {}

  // The key watchers of one order share.
  static std::string Key(const std::string& customer_id, const std::string& order_id) {
    return customer_id + "/" + order_id;
  }
  // Registers a new watcher; false when shutting down (the caller finishes it UNAVAILABLE).
  bool Add(OrderWatcher* watcher);
  void Remove(OrderWatcher* watcher);
  // Sends `order` with a description of the change to everyone watching it.
  void Publish(const v1::Order& order, const std::string& change, absl::Time when);
  // Ends every stream (server shutdown); later Adds are refused.
  void Shutdown();
  int watcher_count();

 private:
  absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::set<OrderWatcher*>> watchers_ ABSL_GUARDED_BY(mu_);
  prometheus::Gauge* watchers_gauge_;
};

}  // namespace crm::order_tracking
