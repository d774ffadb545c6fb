// crm.v1.OrderTrackingService over gRPC's callback API: validates each request, applies the
// lifecycle (order_lifecycle.h) and return rules (returns.h) through OrderTrackingStore, publishes
// committed changes to watchers (order_watch.h) and emits events through the outbox. Writes run on
// the write executor (synced WAL; concurrent writers share fsyncs); reads finish on gRPC's thread.
#pragma once

#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "libs/clock/clock.h"
#include "libs/events/consumer.h"
#include "libs/events/producer.h"
#include "libs/rpc/backends.h"
#include "libs/rpc/executor.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "services/order_tracking/order_changes.h"
#include "services/order_tracking/order_tracking_store.h"
#include "services/order_tracking/order_watch.h"
#include "services/order_tracking/returns.h"

namespace crm::order_tracking {

// Business metrics, each defined once here.
struct OrderMetrics {
  explicit OrderMetrics(prometheus::Registry& registry);
  prometheus::Counter& created;
  prometheus::Family<prometheus::Counter>& delivered;  // {timeliness}
  prometheus::Counter& delivery_failed;
  prometheus::Counter& cancelled;
  prometheus::Family<prometheus::Counter>& returns;          // {status}
  prometheus::Family<prometheus::Counter>& refunded_minor;   // {currency}
  prometheus::Family<prometheus::Counter>& tracking_events;  // {outcome}
  prometheus::Family<prometheus::Counter>& imported;         // {kind}
  prometheus::Counter& reviews;
  prometheus::Gauge& watchers;
};

class OrderTrackingService final : public v1::OrderTrackingService::CallbackService {
 public:
  // `backends` reaches customer-profile (the customer and address of a new order) and loyalty
  // (return window extensions, coupons). Not owned.
  OrderTrackingService(OrderTrackingStore* store, Clock* clock, rpc::Executor* writes,
                       rpc::Backends* backends, ReturnRules return_rules,
                       prometheus::Registry& registry);

  using Ctx = grpc::CallbackServerContext;
  using Reactor = grpc::ServerUnaryReactor;
  Reactor* CreateOrder(Ctx*, const v1::CreateOrderRequest*, v1::Order*) override;
  Reactor* ImportOrders(Ctx*, const v1::ImportOrdersRequest*, v1::ImportOrdersResponse*) override;
  Reactor* GetOrder(Ctx*, const v1::GetOrderRequest*, v1::Order*) override;
  Reactor* ListOrders(Ctx*, const v1::ListOrdersRequest*, v1::ListOrdersResponse*) override;
  Reactor* GetPurchaseSummary(Ctx*, const v1::GetPurchaseSummaryRequest*,
                              v1::PurchaseSummary*) override;
  Reactor* GetOrderHistory(Ctx*, const v1::GetOrderHistoryRequest*,
                           v1::GetOrderHistoryResponse*) override;
  Reactor* PayOrder(Ctx*, const v1::PayOrderRequest*, v1::Order*) override;
  Reactor* CancelOrder(Ctx*, const v1::CancelOrderRequest*, v1::Order*) override;
  Reactor* ProcessOrder(Ctx*, const v1::ProcessOrderRequest*, v1::Order*) override;
  Reactor* AdvancePackage(Ctx*, const v1::AdvancePackageRequest*, v1::Order*) override;
  Reactor* AddTrackingEvents(Ctx*, const v1::AddTrackingEventsRequest*,
                             v1::AddTrackingEventsResponse*) override;
  grpc::ServerWriteReactor<v1::OrderUpdate>* WatchOrder(Ctx*,
                                                        const v1::WatchOrderRequest*) override;
  Reactor* RequestReturn(Ctx*, const v1::RequestReturnRequest*, v1::Return*) override;
  Reactor* AdvanceReturn(Ctx*, const v1::AdvanceReturnRequest*, v1::Return*) override;
  Reactor* ListReturns(Ctx*, const v1::ListReturnsRequest*, v1::ListReturnsResponse*) override;
  Reactor* ListReviews(Ctx*, const v1::ListReviewsRequest*, v1::ListReviewsResponse*) override;
  Reactor* SubmitReview(Ctx*, const v1::SubmitReviewRequest*, v1::Review*) override;
  Reactor* GetReturnPolicy(Ctx*, const v1::GetReturnPolicyRequest*, v1::ReturnPolicy*) override;

  OrderWatchHub& watch_hub() { return hub_; }

 private:
  // After a committed change: metrics for what it emitted, and the update for watchers.
  void Committed(const v1::Order& order, const OrderChange& change, absl::Time now);
  // Runs `change` on the order through the store and, once it is written, Committed.
  absl::Status UpdateAndPublish(absl::string_view customer_id, absl::string_view order_id,
                                absl::Time now,
                                absl::FunctionRef<absl::Status(v1::Order&, OrderChange&)> change,
                                v1::Order* out);
  // Runs `change` on the order through UpdateAndPublish on the write executor, made now, and
  // finishes the call with its status.
  Reactor* ChangeOrder(
      Ctx* ctx, const std::string& customer_id, const std::string& order_id, v1::Order* resp,
      absl::AnyInvocable<absl::Status(v1::Order&, OrderChange&, absl::Time now)> change);
  // Has loyalty reserve the customer's coupon for the new order (keyed by its id) and applies the
  // discount to it; loyalty's verdict (NOT_FOUND, FAILED_PRECONDITION naming coupon_id or items)
  // keeps its code, UNAVAILABLE when loyalty cannot answer.
  absl::Status ReserveCoupon(const std::string& coupon_id, v1::Order& order);
  absl::Status MovePackage(const v1::AdvancePackageRequest& move, absl::Time now, v1::Order* out);
  // Days the customer's membership adds to return windows (asks loyalty).
  absl::StatusOr<int> ReturnWindowExtension(const std::string& customer_id);
  // The days to extend the return's windows by: the membership's extension when the plain window
  // has passed, else 0.
  absl::StatusOr<int> ExtraReturnDays(const v1::RequestReturnRequest& req, absl::Time now);
  // Metrics for a committed AdvanceReturn: the step, and the money of a refund.
  void CountReturnStep(const v1::AdvanceReturnRequest& req, const v1::Return& ret);
  // One carrier event of AddTrackingEvents, in its own transaction: fills `result`; an error only
  // when the store fails.
  absl::Status ApplyTrackingEvent(const v1::TrackingEvent& e, absl::Time now,
                                  v1::TrackingEventResult* result);

  OrderTrackingStore* const store_;
  Clock* const clock_;
  rpc::Executor* const writes_;
  rpc::Backends* const backends_;
  const ReturnRules return_rules_;
  OrderMetrics metrics_;
  OrderWatchHub hub_;
};

}  // namespace crm::order_tracking
