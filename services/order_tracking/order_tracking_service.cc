#include "services/order_tracking/order_tracking_service.h"

#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/loyalty.grpc.pb.h"
#include "libs/api/paging.h"
#include "libs/api/validate.h"
#include "libs/base/error_reason.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "libs/metrics/families.h"
#include "libs/rpc/caller_auth.h"
#include "libs/rpc/handler.h"
#include "libs/rpc/peer.h"
#include "libs/rpc/status.h"
#include "libs/rpc/unary.h"
#include "libs/sharding/shard_map.h"
#include "libs/store/idempotency.h"
#include "services/order_tracking/history_import.h"
#include "services/order_tracking/order_changes.h"
#include "services/order_tracking/order_lifecycle.h"
#include "services/order_tracking/order_workflows.h"

namespace crm::order_tracking {
namespace {

// A review's stars, 1 to this; the open orders a purchase summary lists at most, and when the
// request does not say.
constexpr int kMaxRating = 5;
constexpr int kMaxOpenOrdersInSummary = 50;
constexpr int kDefaultOpenOrdersInSummary = 10;

using api::Invalid;
using rpc::Finish;
using rpc::FinishOn;

// The order a request names: any request with customer_id and order_id.
template <typename Request>
absl::Status ValidateOrderIds(const Request& req) {
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req.customer_id()));
  return api::RequiredId("order_id", req.order_id());
}

absl::StatusOr<absl::Time> OptionalEventTime(const std::string& field,
                                             const v1::AdvancePackageRequest& r, absl::Time now) {
  if (!r.has_event_time()) return now;
  CRM_ASSIGN_OR_RETURN(auto t, api::ToTime(field, r.event_time()));
  if (t > now + kClockSkew) return Invalid(field, "is in the future");
  return t;
}

absl::Status ValidateMove(const v1::AdvancePackageRequest& r) {
  if (r.status() == v1::PACKAGE_STATUS_UNSPECIFIED || !v1::PackageStatus_IsValid(r.status()) ||
      r.status() == v1::PACKAGE_STATUS_AT_PROCESSING_CENTER) {
    return Invalid("status",
                   "must be the package's next status (PICKING ... DELIVERED, DELIVERY_FAILED, "
                   "RETURNED_TO_SENDER)");
  }
  if (r.status() == v1::PACKAGE_STATUS_HANDED_TO_CARRIER) {
    CRM_RETURN_IF_ERROR(api::RequiredText("carrier", r.carrier(), 100));
    CRM_RETURN_IF_ERROR(api::RequiredId("tracking_number", r.tracking_number()));
  } else {
    CRM_RETURN_IF_ERROR(api::OptionalText("carrier", r.carrier(), 100));
    if (!r.tracking_number().empty()) {
      CRM_RETURN_IF_ERROR(api::RequiredId("tracking_number", r.tracking_number()));
    }
  }
  if (r.status() == v1::PACKAGE_STATUS_DELIVERY_FAILED) {
    CRM_RETURN_IF_ERROR(api::RequiredText("failure_reason", r.failure_reason(), 300));
  }
  if (!v1::CarrierType_IsValid(r.carrier_type()))
    return Invalid("carrier_type", "is not a carrier type");
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string*>{"station", &r.station()},
        {"courier_name", &r.courier_name()},
        {"courier_phone", &r.courier_phone()}}) {
    CRM_RETURN_IF_ERROR(api::OptionalText(field, *value, 100));
  }
  if (r.has_eta()) {
    CRM_RETURN_IF_ERROR(api::ToTime("eta", r.eta()));
  }
  return absl::OkStatus();
}

// CreateOrder's order lines, shipping fee, payment method, delivery window and address; sets
// *total (lines plus shipping) and *currency.
absl::Status ValidateNewOrder(const v1::CreateOrderRequest& req, int64_t* total,
                              std::string* currency) {
  CRM_RETURN_IF_ERROR(ValidateOrderLines("items", req.items(), kMaxItems,
                                         /*category_required=*/true, total, currency));
  CRM_RETURN_IF_ERROR(AddShippingFee("shipping_fee", req.shipping_fee(), *currency, total));
  if (req.payment_method() == v1::PAYMENT_METHOD_TYPE_UNSPECIFIED ||
      !v1::PaymentMethodType_IsValid(req.payment_method())) {
    return Invalid("payment_method", "must be CARD, CASH_ON_DELIVERY or ACCOUNT_BALANCE");
  }
  if (!req.has_delivery_window() || !req.delivery_window().has_start_time() ||
      !req.delivery_window().has_end_time()) {
    return Invalid("delivery_window", "start_time and end_time are required");
  }
  CRM_ASSIGN_OR_RETURN(
      auto start, api::ToTime("delivery_window.start_time", req.delivery_window().start_time()));
  CRM_ASSIGN_OR_RETURN(auto end,
                       api::ToTime("delivery_window.end_time", req.delivery_window().end_time()));
  if (end <= start) return Invalid("delivery_window.end_time", "must be after start_time");
  if (!req.shipping_address_id().empty()) {
    CRM_RETURN_IF_ERROR(api::RequiredId("shipping_address_id", req.shipping_address_id()));
  }
  if (!req.coupon_id().empty()) CRM_RETURN_IF_ERROR(api::RequiredId("coupon_id", req.coupon_id()));
  return absl::OkStatus();
}

absl::Status ValidateReturnRequest(const v1::RequestReturnRequest& req) {
  CRM_RETURN_IF_ERROR(ValidateOrderIds(req));
  CRM_RETURN_IF_ERROR(api::RequiredRequestId(req.request_id()));
  CRM_RETURN_IF_ERROR(api::RequiredText("reason", req.reason(), 500));
  if (req.fault() == v1::FAULT_UNSPECIFIED || !v1::Fault_IsValid(req.fault())) {
    return Invalid("fault", "must be CUSTOMER, MERCHANT or CARRIER");
  }
  if (req.items().empty()) return Invalid("items", "name at least one item to return");
  for (int i = 0; i < req.items_size(); ++i) {
    CRM_RETURN_IF_ERROR(
        api::RequiredId(absl::StrCat("items[", i, "].item_id"), req.items(i).item_id()));
  }
  return absl::OkStatus();
}

// AdvanceReturn's target status, with the pickup window at the door or the rejection reason it
// needs.
absl::Status ValidateReturnMove(const v1::AdvanceReturnRequest& req) {
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req.customer_id()));
  CRM_RETURN_IF_ERROR(api::RequiredId("return_id", req.return_id()));
  if (req.status() == v1::RETURN_STATUS_UNSPECIFIED ||
      req.status() == v1::RETURN_STATUS_REQUESTED || !v1::ReturnStatus_IsValid(req.status())) {
    return Invalid("status", "must be PICKUP_SCHEDULED, RECEIVED, REFUNDED or REJECTED");
  }
  if (req.status() == v1::RETURN_STATUS_PICKUP_SCHEDULED) {
    if (!req.has_pickup_start_time() || !req.has_pickup_end_time()) {
      return Invalid("pickup_start_time", "the pickup window at the door is required");
    }
    CRM_ASSIGN_OR_RETURN(auto start, api::ToTime("pickup_start_time", req.pickup_start_time()));
    CRM_ASSIGN_OR_RETURN(auto end, api::ToTime("pickup_end_time", req.pickup_end_time()));
    if (end <= start) return Invalid("pickup_end_time", "must be after pickup_start_time");
  }
  if (req.status() == v1::RETURN_STATUS_REJECTED) {
    CRM_RETURN_IF_ERROR(api::RequiredText("rejection_reason", req.rejection_reason(), 500));
  }
  return absl::OkStatus();
}

absl::Status ValidateReview(const v1::SubmitReviewRequest& req) {
  CRM_RETURN_IF_ERROR(ValidateOrderIds(req));
  CRM_RETURN_IF_ERROR(api::RequiredId("item_id", req.item_id()));
  CRM_RETURN_IF_ERROR(api::RequiredRequestId(req.request_id()));
  if (req.rating() < 1 || req.rating() > kMaxRating) {
    return Invalid("rating",
                   absl::StrCat("must be 1 (strongly dislike) to ", kMaxRating, " (love)"));
  }
  return api::OptionalText("text", req.text(), 2000);
}

}  // namespace

OrderMetrics::OrderMetrics(prometheus::Registry& r)
    : created(metrics::Counter(r, "crm_orders_created_total", "Orders placed.")),
      delivered(metrics::CounterFamily(r, "crm_orders_delivered_total",
                                       "Orders delivered in full, by timeliness against the agreed "
                                       "window (early, on_time, late).")),
      delivery_failed(
          metrics::Counter(r, "crm_packages_delivery_failed_total", "Failed delivery attempts.")),
      cancelled(metrics::Counter(r, "crm_orders_cancelled_total", "Orders cancelled.")),
      returns(metrics::CounterFamily(r, "crm_returns_total",
                                     "Return steps taken, by the status reached (requested, "
                                     "pickup_scheduled, received, refunded, rejected).")),
      refunded_minor(metrics::CounterFamily(r, "crm_refunds_minor_units_total",
                                            "Money refunded, in minor units, by currency.")),
      tracking_events(
          metrics::CounterFamily(r, "crm_tracking_events_total",
                                 "Carrier tracking events received, by outcome (applied, "
                                 "duplicate, stale, unknown_tracking_number, rejected).")),
      imported(metrics::CounterFamily(r, "crm_history_imported_total",
                                      "Orders and returns imported from a shop's history "
                                      "(ImportOrders), by kind (order, return).")),
      reviews(metrics::Counter(r, "crm_reviews_total", "Reviews submitted.")),
      watchers(metrics::Gauge(r, "crm_order_watchers", "Open WatchOrder streams.")) {}

OrderTrackingService::OrderTrackingService(OrderTrackingStore* store, Clock* clock,
                                           rpc::Executor* writes, rpc::Backends* backends,
                                           ReturnRules return_rules, prometheus::Registry& registry)
    : store_(store),
      clock_(clock),
      writes_(writes),
      backends_(backends),
      return_rules_(std::move(return_rules)),
      metrics_(registry),
      hub_(&metrics_.watchers) {}

void OrderTrackingService::Committed(const v1::Order& order, const OrderChange& change,
                                     absl::Time now) {
  if (change.unchanged) return;
  for (const auto& e : change.events) {
    if (e.has_order_delivered()) {
      metrics_.delivered
          .Add({{"timeliness",
                 absl::AsciiStrToLower(
                     v1::Timeliness_Name(e.order_delivered().timeliness()).substr(11))}})
          .Increment();
    }
    if (e.has_delivery_failed()) metrics_.delivery_failed.Increment();
    if (e.has_order_cancelled()) metrics_.cancelled.Increment();
  }
  hub_.Publish(order, change.summary.empty() ? "updated" : change.summary, now);
}

absl::Status OrderTrackingService::UpdateAndPublish(
    absl::string_view customer_id, absl::string_view order_id, absl::Time now,
    absl::FunctionRef<absl::Status(v1::Order&, OrderChange&)> change, v1::Order* out) {
  OrderChange applied;
  absl::Status s = store_->UpdateOrder(customer_id, order_id, now, change, out, &applied);
  if (s.ok()) Committed(*out, applied, now);
  return s;
}

grpc::ServerUnaryReactor* OrderTrackingService::ChangeOrder(
    Ctx* ctx, const std::string& customer_id, const std::string& order_id, v1::Order* resp,
    absl::AnyInvocable<absl::Status(v1::Order&, OrderChange&, absl::Time now)> change) {
  const absl::Time now = clock_->Now();
  return FinishOn(*writes_, ctx,
                  [this, customer_id, order_id, now, resp, change = std::move(change)]() mutable {
                    return UpdateAndPublish(
                        customer_id, order_id, now,
                        [&](v1::Order& o, OrderChange& c) { return change(o, c, now); }, resp);
                  });
}

grpc::ServerUnaryReactor* OrderTrackingService::CreateOrder(Ctx* ctx,
                                                            const v1::CreateOrderRequest* req,
                                                            v1::Order* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredRequestId(req->request_id()); !s.ok()) return Finish(ctx, s);
  auto caller = rpc::CallerOf(*ctx);
  if (!caller.ok()) return Finish(ctx, caller.status());
  int64_t total = 0;
  std::string currency;
  if (auto s = ValidateNewOrder(*req, &total, &currency); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return FinishOn(
      *writes_, ctx,
      [this, req, resp, now, total, currency,
       request_id = rpc::ScopedRequestId(*caller, req->request_id())]() -> absl::Status {
        const uint64_t fingerprint = store::RequestFingerprint(*req);
        // The customer must exist, and the order keeps a copy of the address it ships to.
        CRM_ASSIGN_OR_RETURN(v1::Customer customer,
                             rpc::FetchCustomer(*backends_, req->customer_id()));
        CRM_ASSIGN_OR_RETURN(v1::Address address,
                             ShippingAddress(customer, req->shipping_address_id()));
        v1::Order order = NewOrder(*req, OrderIdFor(req->customer_id(), request_id), total,
                                   currency, address, now);
        if (!req->coupon_id().empty()) {
          // A retry of a placed order answers it without asking loyalty again.
          CRM_ASSIGN_OR_RETURN(
              const bool placed,
              store_->FindCreatedOrder(req->customer_id(), request_id, fingerprint, resp));
          if (placed) return absl::OkStatus();
          CRM_RETURN_IF_ERROR(ReserveCoupon(req->coupon_id(), order));
        }
        absl::Status s =
            store_->CreateOrder(order, OrderPlacedEvent(order), request_id, fingerprint, now, resp);
        if (s.ok() && resp->order_id() == order.order_id()) metrics_.created.Increment();
        return s;
      });
}

absl::Status OrderTrackingService::ReserveCoupon(const std::string& coupon_id, v1::Order& order) {
  v1::ReserveCouponRequest reserve;
  reserve.set_customer_id(order.customer_id());
  reserve.set_coupon_id(coupon_id);
  // The order id is the reservation's key: a retried CreateOrder names the same order, so the
  // coupon is reserved once.
  reserve.set_order_id(order.order_id());
  *reserve.mutable_items() = CouponLines(order);
  CRM_ASSIGN_OR_RETURN(const v1::CouponReservation reservation,
                       rpc::Peer<v1::LoyaltyService>(backends_).Call(
                           order.customer_id(), "reserve the coupon",
                           &v1::LoyaltyService::Stub::ReserveCoupon, reserve));
  return ApplyDiscount(coupon_id, reservation.discount(), reservation.rule(), order);
}

grpc::ServerUnaryReactor* OrderTrackingService::ImportOrders(Ctx* ctx,
                                                             const v1::ImportOrdersRequest* req,
                                                             v1::ImportOrdersResponse* resp) {
  const absl::Time now = clock_->Now();
  if (auto s = ValidateImport(*req, now); !s.ok()) return Finish(ctx, s);
  return FinishOn(*writes_, ctx, [this, req, resp, now]() -> absl::Status {
    CRM_RETURN_IF_ERROR(rpc::FetchCustomer(*backends_, req->customer_id()));
    const uint32_t bucket = sharding::BucketOf(req->customer_id());
    absl::Status s = store_->ImportHistory(
        *req, now,
        [&](int i, v1::Order* order, OrderChange* change) {
          BuildImportedOrder(req->customer_id(), req->orders(i),
                             sharding::NewIdInBucket("o", bucket), order, change);
        },
        [&](int i, v1::Order& order, v1::Return* ret, OrderChange* change) {
          return ApplyImportedReturn(absl::StrCat("returns[", i, "]"), req->returns(i),
                                     sharding::NewIdInBucket("r", bucket), order, ret, change);
        },
        resp);
    if (s.ok()) {
      metrics_.imported.Add({{"kind", "order"}}).Increment(resp->orders_imported());
      metrics_.imported.Add({{"kind", "return"}}).Increment(resp->returns_imported());
    }
    return s;
  });
}

grpc::ServerUnaryReactor* OrderTrackingService::GetOrder(Ctx* ctx, const v1::GetOrderRequest* req,
                                                         v1::Order* resp) {
  if (auto s = ValidateOrderIds(*req); !s.ok()) return Finish(ctx, s);
  return rpc::FinishWith(ctx, store_->GetOrder(req->customer_id(), req->order_id()), resp);
}

grpc::ServerUnaryReactor* OrderTrackingService::ListOrders(Ctx* ctx,
                                                           const v1::ListOrdersRequest* req,
                                                           v1::ListOrdersResponse* resp) {
  return Finish(ctx,
                rpc::ReadCustomerPage(*req, "orders", {20, 100},
                                      std::bind_front(&OrderTrackingStore::ListOrders, store_),
                                      resp->mutable_orders(), resp->mutable_next_page_token()));
}

grpc::ServerUnaryReactor* OrderTrackingService::GetPurchaseSummary(
    Ctx* ctx, const v1::GetPurchaseSummaryRequest* req, v1::PurchaseSummary* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (req->open_order_limit() < 0 || req->open_order_limit() > kMaxOpenOrdersInSummary) {
    return Finish(
        ctx, api::Invalid("open_order_limit", absl::StrCat("must be 0-", kMaxOpenOrdersInSummary)));
  }
  // One row and the open orders shown, however many orders the customer has (it runs on the
  // reactor thread, for every 360° view).
  const int open_limit =
      req->open_order_limit() == 0 ? kDefaultOpenOrdersInSummary : req->open_order_limit();
  return rpc::FinishWith(ctx, store_->PurchaseSummary(req->customer_id(), open_limit), resp);
}

grpc::ServerUnaryReactor* OrderTrackingService::GetOrderHistory(
    Ctx* ctx, const v1::GetOrderHistoryRequest* req, v1::GetOrderHistoryResponse* resp) {
  if (auto s = ValidateOrderIds(*req); !s.ok()) return Finish(ctx, s);
  return rpc::FinishWith(ctx, store_->History(req->customer_id(), req->order_id()),
                         resp->mutable_entries());
}

grpc::ServerUnaryReactor* OrderTrackingService::PayOrder(Ctx* ctx, const v1::PayOrderRequest* req,
                                                         v1::Order* resp) {
  if (auto s = ValidateOrderIds(*req); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredText("payment_reference", req->payment_reference(), 128); !s.ok())
    return Finish(ctx, s);
  return ChangeOrder(ctx, req->customer_id(), req->order_id(), resp,
                     [req](v1::Order& o, OrderChange& c, absl::Time now) {
                       return ApplyPayment(*req, now, o, c);
                     });
}

grpc::ServerUnaryReactor* OrderTrackingService::CancelOrder(Ctx* ctx,
                                                            const v1::CancelOrderRequest* req,
                                                            v1::Order* resp) {
  if (auto s = ValidateOrderIds(*req); !s.ok()) return Finish(ctx, s);
  if (auto s = api::OptionalText("reason", req->reason(), 500); !s.ok()) return Finish(ctx, s);
  auto caller = rpc::CallerOf(*ctx);
  if (!caller.ok()) return Finish(ctx, caller.status());
  return ChangeOrder(
      ctx, req->customer_id(), req->order_id(), resp,
      [req, actor = rpc::Actor(*caller)](v1::Order& o, OrderChange& c, absl::Time now) {
        return ApplyCancellation(*req, actor, now, o, c);
      });
}

grpc::ServerUnaryReactor* OrderTrackingService::ProcessOrder(Ctx* ctx,
                                                             const v1::ProcessOrderRequest* req,
                                                             v1::Order* resp) {
  if (auto s = ValidateOrderIds(*req); !s.ok()) return Finish(ctx, s);
  return ChangeOrder(ctx, req->customer_id(), req->order_id(), resp,
                     [req](v1::Order& o, OrderChange& c, absl::Time now) {
                       return ApplyProcessing(*req, now, o, c);
                     });
}

absl::Status OrderTrackingService::MovePackage(const v1::AdvancePackageRequest& move,
                                               absl::Time now, v1::Order* out) {
  CRM_ASSIGN_OR_RETURN(auto when, OptionalEventTime("event_time", move, now));
  return UpdateAndPublish(
      move.customer_id(), move.order_id(), now,
      [&](v1::Order& o, OrderChange& c) -> absl::Status {
        v1::Package* p = FindPackage(o, move.package_id());
        if (p == nullptr) {
          return absl::NotFoundError(
              absl::StrCat("package_id: the order has no package \"", move.package_id(), "\""));
        }
        if (p->status() == move.status()) {
          c.unchanged = true;  // a repeated move
          return absl::OkStatus();
        }
        CRM_RETURN_IF_ERROR(CheckPackageMove(p->status(), move.status()));
        MoveAndDescribe(o, *p, move, when, "operations", c);
        return absl::OkStatus();
      },
      out);
}

grpc::ServerUnaryReactor* OrderTrackingService::AdvancePackage(Ctx* ctx,
                                                               const v1::AdvancePackageRequest* req,
                                                               v1::Order* resp) {
  if (auto s = ValidateOrderIds(*req); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredId("package_id", req->package_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = ValidateMove(*req); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  if (auto t = OptionalEventTime("event_time", *req, now); !t.ok()) return Finish(ctx, t.status());
  return FinishOn(*writes_, ctx, [this, req, resp, now] { return MovePackage(*req, now, resp); });
}

grpc::ServerUnaryReactor* OrderTrackingService::AddTrackingEvents(
    Ctx* ctx, const v1::AddTrackingEventsRequest* req, v1::AddTrackingEventsResponse* resp) {
  const absl::Time now = clock_->Now();
  if (auto s = ValidateTrackingEvents(*req, now); !s.ok()) return Finish(ctx, s);
  return FinishOn(*writes_, ctx, [this, req, resp, now]() -> absl::Status {
    for (const auto& e : req->events()) {
      v1::TrackingEventResult* result = resp->add_results();
      result->set_carrier_event_id(e.carrier_event_id());
      CRM_RETURN_IF_ERROR(ApplyTrackingEvent(e, now, result));
      const std::string outcome =
          absl::AsciiStrToLower(v1::TrackingEventResult::Outcome_Name(result->outcome()).substr(8));
      metrics_.tracking_events.Add({{"outcome", outcome}}).Increment();
    }
    // One fsync for the whole batch before the carrier is told it was received.
    return store_->SyncWal();
  });
}

absl::Status OrderTrackingService::ApplyTrackingEvent(const v1::TrackingEvent& e, absl::Time now,
                                                      v1::TrackingEventResult* result) {
  CRM_ASSIGN_OR_RETURN(auto ref, store_->FindTrackingNumber(e.tracking_number()));
  if (!ref.has_value()) {
    result->set_outcome(v1::TrackingEventResult::OUTCOME_UNKNOWN_TRACKING_NUMBER);
    return absl::OkStatus();
  }
  bool duplicate = false;
  v1::Order order;
  OrderChange applied;
  CRM_RETURN_IF_ERROR(store_->ApplyCarrierEvent(
      *ref, e.carrier_event_id(), e.tracking_number(), now,
      [&](v1::Order& o, OrderChange& c) -> absl::Status {
        v1::Package* p = FindPackage(o, ref->package_id);
        if (p == nullptr) return absl::DataLossError("tracking number points at a missing package");
        std::string detail;
        result->set_outcome(ApplyCarrierNews(e, o, *p, c, &detail));
        result->set_detail(detail);
        return absl::OkStatus();
      },
      &duplicate, &order, &applied));
  if (duplicate) {
    result->set_outcome(v1::TrackingEventResult::OUTCOME_DUPLICATE);
    result->clear_detail();
  } else {
    Committed(order, applied, now);
  }
  return absl::OkStatus();
}

grpc::ServerWriteReactor<v1::OrderUpdate>* OrderTrackingService::WatchOrder(
    Ctx* ctx, const v1::WatchOrderRequest* req) {
  auto* watcher = new OrderWatcher(&hub_, OrderWatchHub::Key(req->customer_id(), req->order_id()));
  if (auto s = ValidateOrderIds(*req); !s.ok()) {
    watcher->End(rpc::ToGrpc(s));
    return watcher;
  }
  // Register first, then read: a change committed in between reaches the watcher either way, and
  // the version check drops whichever copy arrives second.
  if (!hub_.Add(watcher)) {
    watcher->End(rpc::ToGrpc(absl::UnavailableError("server shutting down; watch again")));
    return watcher;
  }
  auto order = store_->GetOrder(req->customer_id(), req->order_id());
  if (!order.ok()) {
    watcher->End(rpc::ToGrpc(order.status()));
    return watcher;
  }
  v1::OrderUpdate current;
  *current.mutable_order() = std::move(*order);
  current.set_change("current state");
  api::SetTimestamp(clock_->Now(), current.mutable_time());
  watcher->Push(current);
  return watcher;
}

absl::StatusOr<int> OrderTrackingService::ReturnWindowExtension(const std::string& customer_id) {
  v1::GetMembershipRequest req;
  req.set_customer_id(customer_id);
  CRM_ASSIGN_OR_RETURN(
      auto m, rpc::Peer<v1::LoyaltyService>(backends_).Call(
                  customer_id, "tell whether a membership benefit extends the return window",
                  &v1::LoyaltyService::Stub::GetMembership, req));
  return m.benefits().return_window_extension_days();
}

absl::StatusOr<int> OrderTrackingService::ExtraReturnDays(const v1::RequestReturnRequest& req,
                                                          absl::Time now) {
  // A membership tier may extend return windows: ask loyalty only when the plain window has passed.
  auto current = store_->GetOrder(req.customer_id(), req.order_id());
  if (!current.ok()) return 0;
  auto plain = CheckReturnRequest(*current, req.items(), return_rules_, 0, now);
  if (plain.ok() || !HasReason(plain.status(), kReasonReturnWindowClosed)) {
    return 0;
  }
  return ReturnWindowExtension(req.customer_id());
}

grpc::ServerUnaryReactor* OrderTrackingService::RequestReturn(Ctx* ctx,
                                                              const v1::RequestReturnRequest* req,
                                                              v1::Return* resp) {
  if (auto s = ValidateReturnRequest(*req); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return rpc::FinishAsCallerOn(
      *writes_, ctx, [this, req, resp, now](const auth::Caller& caller) -> absl::Status {
        CRM_ASSIGN_OR_RETURN(const int extra_days, ExtraReturnDays(*req, now));
        v1::Order order;
        absl::Status s = store_->CreateReturn(
            req->customer_id(), req->order_id(), rpc::ScopedRequestId(caller, req->request_id()),
            store::RequestFingerprint(*req), now,
            [&](v1::Order& o, v1::Return& r, OrderChange& c) {
              return ApplyReturnRequest(*req, return_rules_, extra_days, rpc::Actor(caller), now, o,
                                        r, c);
            },
            resp, &order);
        if (s.ok()) metrics_.returns.Add({{"status", "requested"}}).Increment();
        return s;
      });
}

grpc::ServerUnaryReactor* OrderTrackingService::AdvanceReturn(Ctx* ctx,
                                                              const v1::AdvanceReturnRequest* req,
                                                              v1::Return* resp) {
  if (auto s = ValidateReturnMove(*req); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return rpc::FinishAsCallerOn(*writes_, ctx, [this, req, resp, now](const auth::Caller& caller) {
    const std::string actor = rpc::Actor(caller);
    v1::Order order;
    bool repeated = false;  // the return was already there: a retried call counts nothing again
    absl::Status s = store_->UpdateReturn(
        req->customer_id(), req->return_id(), now,
        [&](v1::Order& o, v1::Return& r, OrderChange& c) {
          CRM_RETURN_IF_ERROR(ApplyReturnMove(*req, actor, now, o, r, c));
          repeated = c.unchanged;
          return absl::OkStatus();
        },
        resp, &order);
    if (s.ok() && !repeated) CountReturnStep(*req, *resp);
    return s;
  });
}

void OrderTrackingService::CountReturnStep(const v1::AdvanceReturnRequest& req,
                                           const v1::Return& ret) {
  metrics_.returns.Add({{"status", absl::AsciiStrToLower(ReturnStatusName(ret.status()))}})
      .Increment();
  if (ret.status() == v1::RETURN_STATUS_REFUNDED && req.status() == v1::RETURN_STATUS_REFUNDED) {
    metrics_.refunded_minor.Add({{"currency", ret.refund_amount().currency()}})
        .Increment(static_cast<double>(ret.refund_amount().amount_minor()));
  }
}

grpc::ServerUnaryReactor* OrderTrackingService::ListReviews(Ctx* ctx,
                                                            const v1::ListReviewsRequest* req,
                                                            v1::ListReviewsResponse* resp) {
  return Finish(ctx,
                rpc::ReadCustomerPage(*req, "reviews", {20, 100},
                                      std::bind_front(&OrderTrackingStore::ListReviews, store_),
                                      resp->mutable_reviews(), resp->mutable_next_page_token()));
}

grpc::ServerUnaryReactor* OrderTrackingService::ListReturns(Ctx* ctx,
                                                            const v1::ListReturnsRequest* req,
                                                            v1::ListReturnsResponse* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (!req->order_id().empty()) {
    if (auto s = api::RequiredId("order_id", req->order_id()); !s.ok()) return Finish(ctx, s);
  }
  return rpc::FinishWith(ctx, store_->ListReturns(req->customer_id(), req->order_id()),
                         resp->mutable_returns());
}

grpc::ServerUnaryReactor* OrderTrackingService::SubmitReview(Ctx* ctx,
                                                             const v1::SubmitReviewRequest* req,
                                                             v1::Review* resp) {
  if (auto s = ValidateReview(*req); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return rpc::FinishRequestOn(*writes_, ctx, req->request_id(),
                              [this, req, resp, now](const std::string& request_id) {
                                absl::Status s = store_->CreateReview(
                                    req->customer_id(), req->order_id(), req->item_id(), request_id,
                                    store::RequestFingerprint(*req), now,
                                    [&](v1::Order& o, v1::Review& r, OrderChange& c) {
                                      return ApplyReview(*req, now, o, r, c);
                                    },
                                    resp);
                                if (s.ok()) metrics_.reviews.Increment();
                                return s;
                              });
}

grpc::ServerUnaryReactor* OrderTrackingService::GetReturnPolicy(Ctx* ctx,
                                                                const v1::GetReturnPolicyRequest*,
                                                                v1::ReturnPolicy* resp) {
  *resp = return_rules_.ToProto();
  return Finish(ctx, absl::OkStatus());
}

}  // namespace crm::order_tracking
