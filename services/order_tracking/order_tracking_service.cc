#include "services/order_tracking/order_tracking_service.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/loyalty.grpc.pb.h"
#include "libs/api/paging.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "libs/metrics/families.h"
#include "libs/rpc/caller_auth.h"
#include "libs/rpc/peer.h"
#include "libs/rpc/status.h"
#include "libs/rpc/unary.h"
#include "libs/sharding/shard_map.h"
#include "libs/store/idempotency.h"
#include "services/order_tracking/history_import.h"
#include "services/order_tracking/order_changes.h"
#include "services/order_tracking/order_lifecycle.h"

namespace crm::order_tracking {
namespace {

using api::Invalid;
using rpc::Finish;
using rpc::FinishOn;

absl::Status ValidateOrderIds(absl::string_view customer_id, absl::string_view order_id) {
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", customer_id));
  return api::RequiredId("order_id", order_id);
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

grpc::ServerUnaryReactor* OrderTrackingService::CreateOrder(Ctx* ctx,
                                                            const v1::CreateOrderRequest* req,
                                                            v1::Order* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredRequestId(req->request_id()); !s.ok()) return Finish(ctx, s);
  auto caller = rpc::CallerOf(*ctx);
  if (!caller.ok()) return Finish(ctx, caller.status());
  int64_t total = 0;
  std::string currency;
  if (auto s = ValidateOrderLines("items", req->items(), kMaxItems, /*category_required=*/true,
                                  &total, &currency);
      !s.ok()) {
    return Finish(ctx, s);
  }
  if (auto s = AddShippingFee("shipping_fee", req->shipping_fee(), currency, &total); !s.ok())
    return Finish(ctx, s);
  if (req->payment_method() == v1::PAYMENT_METHOD_TYPE_UNSPECIFIED ||
      !v1::PaymentMethodType_IsValid(req->payment_method())) {
    return Finish(ctx,
                  Invalid("payment_method", "must be CARD, CASH_ON_DELIVERY or ACCOUNT_BALANCE"));
  }
  if (!req->has_delivery_window() || !req->delivery_window().has_start_time() ||
      !req->delivery_window().has_end_time()) {
    return Finish(ctx, Invalid("delivery_window", "start_time and end_time are required"));
  }
  auto start = api::ToTime("delivery_window.start_time", req->delivery_window().start_time());
  if (!start.ok()) return Finish(ctx, start.status());
  auto end = api::ToTime("delivery_window.end_time", req->delivery_window().end_time());
  if (!end.ok()) return Finish(ctx, end.status());
  if (*end <= *start)
    return Finish(ctx, Invalid("delivery_window.end_time", "must be after start_time"));
  if (!req->shipping_address_id().empty()) {
    if (auto s = api::RequiredId("shipping_address_id", req->shipping_address_id()); !s.ok())
      return Finish(ctx, s);
  }
  const absl::Time now = clock_->Now();
  return FinishOn(
      *writes_, ctx,
      [this, req, resp, now, total, currency,
       request_id = rpc::ScopedRequestId(*caller, req->request_id())]() -> absl::Status {
        // The customer must exist, and the order keeps a copy of the address it ships to.
        CRM_ASSIGN_OR_RETURN(auto fetched, rpc::FetchCustomer(*backends_, req->customer_id()));
        const v1::Customer& customer = fetched;
        const std::string address_id = req->shipping_address_id().empty()
                                           ? customer.default_address_id()
                                           : req->shipping_address_id();
        const v1::Address* address = nullptr;
        for (const auto& a : customer.addresses()) {
          if (a.address_id() == address_id) address = &a;
        }
        if (address == nullptr) {
          if (req->shipping_address_id().empty()) {
            return absl::FailedPreconditionError(
                "shipping_address_id: the customer has no address yet; add one first");
          }
          return absl::NotFoundError(absl::StrCat(
              "shipping_address_id: the customer has no address \"", address_id, "\""));
        }
        v1::Order order;
        order.set_order_id(sharding::NewIdInBucket("o", sharding::BucketOf(req->customer_id())));
        order.set_customer_id(req->customer_id());
        for (int i = 0; i < req->items_size(); ++i) {
          auto* item = order.add_items();
          *item = req->items(i);
          item->set_item_id(std::to_string(i + 1));
        }
        order.set_payment_method(req->payment_method());
        *order.mutable_shipping_fee() = req->shipping_fee();
        order.mutable_shipping_fee()->set_currency(currency);
        order.mutable_total()->set_amount_minor(total);
        order.mutable_total()->set_currency(currency);
        *order.mutable_delivery_window() = req->delivery_window();
        order.set_status(v1::ORDER_STATUS_PLACED);
        *order.mutable_shipping_address() = *address;
        api::SetTimestamp(now, order.mutable_create_time());
        const v1::Event placed = OrderPlacedEvent(order);
        absl::Status s = store_->CreateOrder(order, placed, request_id,
                                             store::RequestFingerprint(*req), now, resp);
        if (s.ok() && resp->order_id() == order.order_id()) metrics_.created.Increment();
        return s;
      });
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
  if (auto s = ValidateOrderIds(req->customer_id(), req->order_id()); !s.ok())
    return Finish(ctx, s);
  auto o = store_->GetOrder(req->customer_id(), req->order_id());
  if (!o.ok()) return Finish(ctx, o.status());
  *resp = std::move(*o);
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* OrderTrackingService::ListOrders(Ctx* ctx,
                                                           const v1::ListOrdersRequest* req,
                                                           v1::ListOrdersResponse* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  auto size = api::PageSize("page_size", req->page_size(), 20, 100);
  if (!size.ok()) return Finish(ctx, size.status());
  const std::string scope = absl::StrCat("orders/", req->customer_id());
  auto after = api::DecodePageToken(scope, req->page_token());
  if (!after.ok()) return Finish(ctx, after.status());
  std::vector<v1::Order> orders;
  std::string last;
  bool more = false;
  if (auto s = store_->ListOrders(req->customer_id(), *after, *size, &orders, &last, &more);
      !s.ok()) {
    return Finish(ctx, s);
  }
  for (auto& o : orders) *resp->add_orders() = std::move(o);
  if (more) resp->set_next_page_token(api::EncodePageToken(scope, last));
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* OrderTrackingService::GetPurchaseSummary(
    Ctx* ctx, const v1::GetPurchaseSummaryRequest* req, v1::PurchaseSummary* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (req->open_order_limit() < 0 || req->open_order_limit() > 50) {
    return Finish(ctx, api::Invalid("open_order_limit", "must be 0-50"));
  }
  auto orders = store_->AllOrders(req->customer_id());
  if (!orders.ok()) return Finish(ctx, orders.status());
  auto returns = store_->ListReturns(req->customer_id(), "");
  if (!returns.ok()) return Finish(ctx, returns.status());
  *resp = SummarisePurchases(req->customer_id(), *std::move(orders), *returns,
                             req->open_order_limit() == 0 ? 10 : req->open_order_limit());
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* OrderTrackingService::GetOrderHistory(
    Ctx* ctx, const v1::GetOrderHistoryRequest* req, v1::GetOrderHistoryResponse* resp) {
  if (auto s = ValidateOrderIds(req->customer_id(), req->order_id()); !s.ok())
    return Finish(ctx, s);
  auto h = store_->History(req->customer_id(), req->order_id());
  if (!h.ok()) return Finish(ctx, h.status());
  for (auto& e : *h) *resp->add_entries() = std::move(e);
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* OrderTrackingService::PayOrder(Ctx* ctx, const v1::PayOrderRequest* req,
                                                         v1::Order* resp) {
  if (auto s = ValidateOrderIds(req->customer_id(), req->order_id()); !s.ok())
    return Finish(ctx, s);
  if (auto s = api::RequiredText("payment_reference", req->payment_reference(), 128); !s.ok())
    return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return FinishOn(*writes_, ctx, [this, req, resp, now] {
    OrderChange applied;
    absl::Status s = store_->UpdateOrder(
        req->customer_id(), req->order_id(), now,
        [&](v1::Order& o, OrderChange& c) -> absl::Status {
          if (o.status() == v1::ORDER_STATUS_PAID &&
              o.payment_reference() == req->payment_reference()) {
            c.unchanged = true;  // the same payment reported again
            return absl::OkStatus();
          }
          if (o.payment_method() == v1::PAYMENT_METHOD_TYPE_CASH_ON_DELIVERY) {
            return absl::FailedPreconditionError(
                "order_id: a cash-on-delivery order is paid at the door, on delivery");
          }
          if (o.status() != v1::ORDER_STATUS_PLACED) {
            return absl::FailedPreconditionError(absl::StrCat("order_id: the order is ",
                                                              OrderStatusName(o.status()),
                                                              "; only a PLACED order can be paid"));
          }
          o.set_status(v1::ORDER_STATUS_PAID);
          o.set_payment_reference(req->payment_reference());
          api::SetTimestamp(now, o.mutable_paid_time());
          c.history.push_back(HistoryEntry("paid", "payment", now));
          c.summary = "paid";
          return absl::OkStatus();
        },
        resp, &applied);
    if (s.ok()) Committed(*resp, applied, now);
    return s;
  });
}

grpc::ServerUnaryReactor* OrderTrackingService::CancelOrder(Ctx* ctx,
                                                            const v1::CancelOrderRequest* req,
                                                            v1::Order* resp) {
  if (auto s = ValidateOrderIds(req->customer_id(), req->order_id()); !s.ok())
    return Finish(ctx, s);
  if (auto s = api::OptionalText("reason", req->reason(), 500); !s.ok()) return Finish(ctx, s);
  auto caller = rpc::CallerOf(*ctx);
  if (!caller.ok()) return Finish(ctx, caller.status());
  const absl::Time now = clock_->Now();
  return FinishOn(*writes_, ctx, [this, req, resp, now, actor = rpc::Actor(*caller)] {
    OrderChange applied;
    absl::Status s = store_->UpdateOrder(
        req->customer_id(), req->order_id(), now,
        [&](v1::Order& o, OrderChange& c) -> absl::Status {
          if (o.status() == v1::ORDER_STATUS_CANCELLED) {
            c.unchanged = true;
            return absl::OkStatus();
          }
          CRM_RETURN_IF_ERROR(CheckCancellable(o));
          o.set_status(v1::ORDER_STATUS_CANCELLED);
          o.set_cancel_reason(req->reason());
          c.history.push_back(HistoryEntry(absl::StrCat("cancelled: ", req->reason()), actor, now));
          c.summary = "cancelled";
          v1::Event e;
          e.mutable_order_cancelled()->set_order_id(o.order_id());
          e.mutable_order_cancelled()->set_reason(req->reason());
          c.events.push_back(std::move(e));
          return absl::OkStatus();
        },
        resp, &applied);
    if (s.ok()) Committed(*resp, applied, now);
    return s;
  });
}

grpc::ServerUnaryReactor* OrderTrackingService::ProcessOrder(Ctx* ctx,
                                                             const v1::ProcessOrderRequest* req,
                                                             v1::Order* resp) {
  if (auto s = ValidateOrderIds(req->customer_id(), req->order_id()); !s.ok())
    return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return FinishOn(*writes_, ctx, [this, req, resp, now] {
    OrderChange applied;
    absl::Status s = store_->UpdateOrder(
        req->customer_id(), req->order_id(), now,
        [&](v1::Order& o, OrderChange& c) -> absl::Status {
          if (!o.packages().empty()) {
            c.unchanged = true;  // already processed
            return absl::OkStatus();
          }
          const bool cod = o.payment_method() == v1::PAYMENT_METHOD_TYPE_CASH_ON_DELIVERY;
          if (!(o.status() == v1::ORDER_STATUS_PAID ||
                (cod && o.status() == v1::ORDER_STATUS_PLACED))) {
            return absl::FailedPreconditionError(
                absl::StrCat("order_id: the order is ", OrderStatusName(o.status()),
                             "; it must be paid (or cash on delivery) before processing"));
          }
          CRM_RETURN_IF_ERROR(CheckSplitPlan(o, req->packages()));
          CreatePackages(o, req->packages());
          c.history.push_back(
              HistoryEntry(absl::StrCat("at processing center, ", o.packages_size(), " package(s)"),
                           "warehouse", now));
          c.summary = "at processing center";
          return absl::OkStatus();
        },
        resp, &applied);
    if (s.ok()) Committed(*resp, applied, now);
    return s;
  });
}

absl::Status OrderTrackingService::MovePackage(const v1::AdvancePackageRequest& move,
                                               absl::Time now, v1::Order* out) {
  CRM_ASSIGN_OR_RETURN(auto when, OptionalEventTime("event_time", move, now));
  OrderChange applied;
  absl::Status s = store_->UpdateOrder(
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
      out, &applied);
  if (s.ok()) Committed(*out, applied, now);
  return s;
}

grpc::ServerUnaryReactor* OrderTrackingService::AdvancePackage(Ctx* ctx,
                                                               const v1::AdvancePackageRequest* req,
                                                               v1::Order* resp) {
  if (auto s = ValidateOrderIds(req->customer_id(), req->order_id()); !s.ok())
    return Finish(ctx, s);
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
  if (auto s = ValidateOrderIds(req->customer_id(), req->order_id()); !s.ok()) {
    watcher->End(rpc::ToGrpc(s));
    return watcher;
  }
  // Register first, then read: a change committed in between reaches the watcher either way, and
  // the version check drops whichever copy arrives second.
  if (!hub_.Add(watcher)) {
    watcher->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down; watch again"));
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

grpc::ServerUnaryReactor* OrderTrackingService::RequestReturn(Ctx* ctx,
                                                              const v1::RequestReturnRequest* req,
                                                              v1::Return* resp) {
  if (auto s = ValidateOrderIds(req->customer_id(), req->order_id()); !s.ok())
    return Finish(ctx, s);
  if (auto s = api::RequiredRequestId(req->request_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredText("reason", req->reason(), 500); !s.ok()) return Finish(ctx, s);
  if (req->fault() == v1::FAULT_UNSPECIFIED || !v1::Fault_IsValid(req->fault())) {
    return Finish(ctx, Invalid("fault", "must be CUSTOMER, MERCHANT or CARRIER"));
  }
  if (req->items().empty())
    return Finish(ctx, Invalid("items", "name at least one item to return"));
  for (int i = 0; i < req->items_size(); ++i) {
    if (auto s = api::RequiredId(absl::StrCat("items[", i, "].item_id"), req->items(i).item_id());
        !s.ok())
      return Finish(ctx, s);
  }
  auto caller = rpc::CallerOf(*ctx);
  if (!caller.ok()) return Finish(ctx, caller.status());
  const absl::Time now = clock_->Now();
  return FinishOn(
      *writes_, ctx,
      [this, req, resp, now, actor = rpc::Actor(*caller),
       request_id = rpc::ScopedRequestId(*caller, req->request_id())] {
        // A membership tier may extend return windows: ask loyalty only when the plain window has
        // passed.
        int extra_days = 0;
        if (auto current = store_->GetOrder(req->customer_id(), req->order_id()); current.ok()) {
          auto plain = CheckReturnRequest(*current, req->items(), return_rules_, 0, now);
          if (!plain.ok() &&
              plain.status().message().find("return window") != absl::string_view::npos) {
            CRM_ASSIGN_OR_RETURN(auto extension, ReturnWindowExtension(req->customer_id()));
            extra_days = extension;
          }
        }
        v1::Order order;
        absl::Status s = store_->CreateReturn(
            req->customer_id(), req->order_id(), request_id, store::RequestFingerprint(*req), now,
            [&](v1::Order& o, v1::Return& r, OrderChange& c) -> absl::Status {
              CRM_ASSIGN_OR_RETURN(
                  auto window_end,
                  CheckReturnRequest(o, req->items(), return_rules_, extra_days, now));
              r.set_return_id(sharding::NewIdInBucket("r", sharding::BucketOf(req->customer_id())));
              r.set_order_id(o.order_id());
              r.set_customer_id(o.customer_id());
              *r.mutable_items() = req->items();
              r.set_reason(req->reason());
              r.set_fault(req->fault());
              r.set_status(v1::RETURN_STATUS_REQUESTED);
              api::SetTimestamp(now, r.mutable_request_time());
              api::SetTimestamp(now, r.mutable_update_time());
              api::SetTimestamp(window_end, r.mutable_window_end_time());
              for (const auto& it : req->items())
                (*o.mutable_returned_quantities())[it.item_id()] += it.quantity();
              c.history.push_back(HistoryEntry(
                  absl::StrCat("return ", r.return_id(), " requested: ", req->reason()), actor,
                  now));
              c.summary = "return requested";
              return absl::OkStatus();
            },
            resp, &order);
        if (s.ok()) metrics_.returns.Add({{"status", "requested"}}).Increment();
        return s;
      });
}

grpc::ServerUnaryReactor* OrderTrackingService::AdvanceReturn(Ctx* ctx,
                                                              const v1::AdvanceReturnRequest* req,
                                                              v1::Return* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredId("return_id", req->return_id()); !s.ok()) return Finish(ctx, s);
  if (req->status() == v1::RETURN_STATUS_UNSPECIFIED ||
      req->status() == v1::RETURN_STATUS_REQUESTED || !v1::ReturnStatus_IsValid(req->status())) {
    return Finish(ctx,
                  Invalid("status", "must be PICKUP_SCHEDULED, RECEIVED, REFUNDED or REJECTED"));
  }
  if (req->status() == v1::RETURN_STATUS_PICKUP_SCHEDULED) {
    auto start = api::ToTime("pickup_start_time", req->pickup_start_time());
    auto end = api::ToTime("pickup_end_time", req->pickup_end_time());
    if (!req->has_pickup_start_time() || !req->has_pickup_end_time()) {
      return Finish(ctx, Invalid("pickup_start_time", "the pickup window at the door is required"));
    }
    if (!start.ok()) return Finish(ctx, start.status());
    if (!end.ok()) return Finish(ctx, end.status());
    if (*end <= *start)
      return Finish(ctx, Invalid("pickup_end_time", "must be after pickup_start_time"));
  }
  if (req->status() == v1::RETURN_STATUS_REJECTED) {
    if (auto s = api::RequiredText("rejection_reason", req->rejection_reason(), 500); !s.ok())
      return Finish(ctx, s);
  }
  auto caller = rpc::CallerOf(*ctx);
  if (!caller.ok()) return Finish(ctx, caller.status());
  const absl::Time now = clock_->Now();
  return FinishOn(*writes_, ctx, [this, req, resp, now, actor = rpc::Actor(*caller)] {
    v1::Order order;
    absl::Status s = store_->UpdateReturn(
        req->customer_id(), req->return_id(), now,
        [&](v1::Order& o, v1::Return& r, OrderChange& c) -> absl::Status {
          if (r.status() == req->status()) {
            c.unchanged = true;
            return absl::OkStatus();
          }
          CRM_RETURN_IF_ERROR(CheckReturnMove(r.status(), req->status()));
          r.set_status(req->status());
          std::string what =
              absl::StrCat("return ", r.return_id(), " ", ReturnStatusName(req->status()));
          switch (req->status()) {
            case v1::RETURN_STATUS_PICKUP_SCHEDULED:
              *r.mutable_pickup_start_time() = req->pickup_start_time();
              *r.mutable_pickup_end_time() = req->pickup_end_time();
              break;
            case v1::RETURN_STATUS_REFUNDED: {
              bool shipping = false;
              *r.mutable_refund_amount() = RefundAmount(o, r, &shipping);
              r.set_shipping_refunded(shipping);
              if (shipping) o.set_shipping_refunded(true);
              absl::StrAppend(&what, " ", r.refund_amount().amount_minor(), " ",
                              r.refund_amount().currency());
              c.events.push_back(OrderRefundedEvent(o, r));
              break;
            }
            case v1::RETURN_STATUS_REJECTED:
              r.set_rejection_reason(req->rejection_reason());
              for (const auto& ri : r.items())
                (*o.mutable_returned_quantities())[ri.item_id()] -= ri.quantity();
              break;
            default:
              break;
          }
          c.history.push_back(HistoryEntry(what, actor, now));
          c.summary = what;
          return absl::OkStatus();
        },
        resp, &order);
    if (s.ok()) {
      metrics_.returns.Add({{"status", absl::AsciiStrToLower(ReturnStatusName(resp->status()))}})
          .Increment();
      if (resp->status() == v1::RETURN_STATUS_REFUNDED &&
          req->status() == v1::RETURN_STATUS_REFUNDED) {
        metrics_.refunded_minor.Add({{"currency", resp->refund_amount().currency()}})
            .Increment(static_cast<double>(resp->refund_amount().amount_minor()));
      }
    }
    return s;
  });
}

grpc::ServerUnaryReactor* OrderTrackingService::ListReturns(Ctx* ctx,
                                                            const v1::ListReturnsRequest* req,
                                                            v1::ListReturnsResponse* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (!req->order_id().empty()) {
    if (auto s = api::RequiredId("order_id", req->order_id()); !s.ok()) return Finish(ctx, s);
  }
  auto returns = store_->ListReturns(req->customer_id(), req->order_id());
  if (!returns.ok()) return Finish(ctx, returns.status());
  for (auto& r : *returns) *resp->add_returns() = std::move(r);
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* OrderTrackingService::SubmitReview(Ctx* ctx,
                                                             const v1::SubmitReviewRequest* req,
                                                             v1::Review* resp) {
  if (auto s = ValidateOrderIds(req->customer_id(), req->order_id()); !s.ok())
    return Finish(ctx, s);
  if (auto s = api::RequiredId("item_id", req->item_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredRequestId(req->request_id()); !s.ok()) return Finish(ctx, s);
  if (req->rating() < 1 || req->rating() > 5)
    return Finish(ctx, Invalid("rating", "must be 1 (strongly dislike) to 5 (love)"));
  if (auto s = api::OptionalText("text", req->text(), 2000); !s.ok()) return Finish(ctx, s);
  auto caller = rpc::CallerOf(*ctx);
  if (!caller.ok()) return Finish(ctx, caller.status());
  const absl::Time now = clock_->Now();
  return FinishOn(
      *writes_, ctx,
      [this, req, resp, now, request_id = rpc::ScopedRequestId(*caller, req->request_id())] {
        absl::Status s = store_->CreateReview(
            req->customer_id(), req->order_id(), req->item_id(), request_id,
            store::RequestFingerprint(*req), now,
            [&](v1::Order& o, v1::Review& r, OrderChange& c) -> absl::Status {
              const v1::OrderItem* item = FindItem(o, req->item_id());
              if (item == nullptr) {
                return absl::NotFoundError(
                    absl::StrCat("item_id: the order has no item \"", req->item_id(), "\""));
              }
              const v1::Package* p = PackageOfItem(o, item->item_id());
              if (p == nullptr || p->status() != v1::PACKAGE_STATUS_DELIVERED) {
                return absl::FailedPreconditionError(
                    "item_id: an item can be reviewed once it has been delivered");
              }
              r.set_review_id(sharding::NewId("rv"));
              r.set_order_id(o.order_id());
              r.set_item_id(item->item_id());
              r.set_sku(item->sku());
              r.set_rating(req->rating());
              r.set_text(req->text());
              api::SetTimestamp(now, r.mutable_create_time());
              o.add_reviewed_item_ids(item->item_id());
              c.history.push_back(HistoryEntry(
                  absl::StrCat("review of item ", item->item_id(), ": ", req->rating(), " stars"),
                  "customer", now));
              c.summary = "reviewed";
              v1::Event e;
              auto* rs = e.mutable_review_submitted();
              rs->set_order_id(o.order_id());
              rs->set_item_id(item->item_id());
              rs->set_sku(item->sku());
              rs->set_category(item->category());
              rs->set_review_id(r.review_id());
              rs->set_rating(req->rating());
              rs->set_text(req->text());
              c.events.push_back(std::move(e));
              return absl::OkStatus();
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
