// The consuming half of the outbox: crm.v1.EventSink for a service that reacts to other services'
// events. Each event is applied in its own transaction together with a record of its id, so a
// redelivered event is recognised and changes nothing; the WAL is synced once per batch before the
// acknowledgement, so an acknowledged event survives a crash.
//
// The handler decides what an event means for this service; the Subscription beside it says which
// events it acts on, and producers send only those (served as EventSink/GetSubscription). Its
// errors: ABORTED / UNAVAILABLE are transient (the producer retries); anything else is a refusal,
// retried a few times and then dead-lettered by the producer. Events the handler does not care
// about should return OK. Each event is applied in the trace it was written in (its traceparent),
// and with debug logging writes an "event applied" line there.
#pragma once

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "crm/v1/events.grpc.pb.h"
#include "libs/clock/clock.h"
#include "libs/events/subscription.h"
#include "libs/rpc/executor.h"
#include "libs/store/store.h"
#include "libs/trace/trace.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/registry.h"

namespace crm::events {

class EventConsumer final : public v1::EventSink::CallbackService {
 public:
  static constexpr const char* kConsumedFamily = "consumed_events";
  using Handler = std::function<absl::Status(store::Transaction& txn, const v1::Event& event)>;

  // Not owned: all must outlive the consumer.
  EventConsumer(store::Store* store, Subscription subscription, Handler handler,
                rpc::Executor* executor, prometheus::Registry& registry);

  grpc::ServerUnaryReactor* DeliverEvents(grpc::CallbackServerContext* ctx,
                                          const v1::DeliverEventsRequest* request,
                                          v1::DeliverEventsResponse* response) override;
  grpc::ServerUnaryReactor* GetSubscription(grpc::CallbackServerContext* ctx,
                                            const v1::GetSubscriptionRequest* request,
                                            v1::Subscription* response) override;

  // Applies events in order; stops at the first refusal (what DeliverEvents does, without gRPC).
  absl::Status Apply(const v1::DeliverEventsRequest& request, v1::DeliverEventsResponse* response);

  // Applies a delivered batch on `threads` threads (1 by default): each customer's events stay on
  // one thread, in their order; different customers' events are independent. For a consumer whose
  // handler is CPU-bound (recommendation learning an imported history). The acknowledgement is
  // still a prefix: events after a refusal that were applied on another thread are redelivered
  // and recognised as duplicates.
  void ApplyOnThreads(int threads) { apply_threads_ = std::max(1, threads); }

  // Runs `hook` after each delivered batch that applied something, once it is durable and before it
  // is acknowledged (a service that folds work per batch, e.g. refreshing derived rows, does it
  // here).
  void OnBatchApplied(std::function<void()> hook) { after_batch_ = std::move(hook); }

  // Deletes the records of events that happened before `before`; their producers have long stopped
  // redelivering them. Returns how many were deleted.
  absl::StatusOr<int64_t> ForgetConsumedBefore(absl::Time before);

 private:
  store::Store* const store_;
  rocksdb::ColumnFamilyHandle* const consumed_;
  const Subscription subscription_;
  Handler handler_;
  rpc::Executor* const executor_;
  prometheus::Family<prometheus::Counter>& applied_;
  std::function<void()> after_batch_;
  int apply_threads_ = 1;

  struct Refusal {
    int index;  // in the request; events_size() when none was refused
    absl::Status status;
  };
  // Applies the request's events at `indices`, in order, each in its own transaction and in the
  // trace it was written in (`delivery`'s when it has none), stopping at the first one refused.
  Refusal ApplyInOrder(const v1::DeliverEventsRequest& request, const std::vector<int>& indices,
                       const std::optional<trace::TraceContext>& delivery);
};

}  // namespace crm::events
