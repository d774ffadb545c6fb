// crm.v1.OrderTrackingService end to end: the real order-tracking and customer-profile services on
// free loopback ports over real RocksDB, called through generated stubs; events to a real consumer.
#include <functional>
#include <set>
#include <thread>
#include <tuple>

#include "absl/synchronization/notification.h"
#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "libs/api/validate.h"
#include "services/loyalty/loyalty_component.h"
#include "services/order_tracking/order_lifecycle.h"
#include "services/order_tracking/order_tracking_component.h"
#include "tests/support/event_recorder.h"
#include "tests/support/metric_value.h"
#include "tests/support/metrics_page.h"
#include "tests/support/outbox_events.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"
#include "tests/support/shop_calls.h"
#include "tests/support/test_time.h"
#include "tests/support/wait.h"
#include "tests/support/with_customer_profile.h"

namespace crm::order_tracking {
namespace {

using OrderHarness = testing::ServiceHarness<OrderTrackingComponent>;
using Stub = v1::OrderTrackingService::Stub;
using P = v1::PackageStatus;

constexpr absl::Time kStart = testing::kHarnessStart;

using testing::Call;
using testing::RequireError;

// A package's moves from the warehouse to the carrier, and on to the customer's door.
const std::vector<P> kToCarrier = {v1::PACKAGE_STATUS_PICKING, v1::PACKAGE_STATUS_PACKED,
                                   v1::PACKAGE_STATUS_HANDED_TO_CARRIER};
const std::vector<P> kOutForDelivery = {v1::PACKAGE_STATUS_PICKING, v1::PACKAGE_STATUS_PACKED,
                                        v1::PACKAGE_STATUS_HANDED_TO_CARRIER,
                                        v1::PACKAGE_STATUS_OUT_FOR_DELIVERY};

// customer-profile and order-tracking wired together; optionally order events go to a recorder.
struct World : testing::WithCustomerProfile {
  explicit World(const std::string& event_sinks = "none", bool serve_metrics = false)
      : orders(CallingProfile(OrderOptions(event_sinks, serve_metrics))) {}

  static OrderHarness::Options OrderOptions(const std::string& sinks, bool metrics) {
    OrderHarness::Options o;
    o.event_sinks = sinks;
    o.serve_metrics = metrics;
    return o;
  }

  // A registered customer with a (default) address, ready to order.
  std::string Customer(const std::string& email) {
    const std::string customer_id = WithCustomerProfile::Customer(email);
    testing::AddAddress(profiles.get(), customer_id, "addr-" + email, "陈静", "杭州",
                        "文一西路969号");
    return customer_id;
  }

  v1::CreateOrderRequest OrderRequest(
      const std::string& customer_id, const std::string& request_id,
      v1::PaymentMethodType payment = v1::PAYMENT_METHOD_TYPE_CARD) {
    v1::CreateOrderRequest r;
    r.set_customer_id(customer_id);
    r.set_request_id(request_id);
    testing::AddLine(r, "sku-phone-x", "phones", 1, 399900)->set_name("Phone X");
    testing::AddLine(r, "sku-cable", "accessories", 2, 2900);
    r.set_payment_method(payment);
    r.mutable_shipping_fee()->set_amount_minor(1000);
    r.mutable_shipping_fee()->set_currency("CNY");
    api::SetTimestamp(kStart + absl::Hours(48), r.mutable_delivery_window()->mutable_start_time());
    api::SetTimestamp(kStart + absl::Hours(52), r.mutable_delivery_window()->mutable_end_time());
    return r;
  }

  v1::Order Create(const std::string& customer_id, const std::string& request_id,
                   v1::PaymentMethodType payment = v1::PAYMENT_METHOD_TYPE_CARD) {
    v1::Order o;
    const grpc::Status s =
        Call(stub.get(), &Stub::CreateOrder, OrderRequest(customer_id, request_id, payment), &o);
    INFO(s.error_message());
    REQUIRE(s.ok());
    return o;
  }

  grpc::Status Pay(const v1::Order& o, v1::Order* out) {
    auto r = testing::AboutOrder<v1::PayOrderRequest>(o);
    r.set_payment_reference("pay-" + o.order_id());
    return Call(stub.get(), &Stub::PayOrder, r, out);
  }

  grpc::Status Process(const v1::Order& o, v1::Order* out, bool split = false) {
    auto r = testing::AboutOrder<v1::ProcessOrderRequest>(o);
    if (split) {
      for (int i = 1; i <= 2; ++i) {
        auto* p = r.add_packages();
        p->set_split_reason(i == 1 ? v1::SPLIT_REASON_FASTEST_SPLIT : v1::SPLIT_REASON_PRESALE);
        auto* it = p->add_items();
        it->set_item_id(std::to_string(i));
        it->set_quantity(i == 1 ? 1 : 2);
      }
    }
    return Call(stub.get(), &Stub::ProcessOrder, r, out);
  }

  grpc::Status Advance(const v1::Order& o, const std::string& package_id, P status, v1::Order* out,
                       absl::Time when = absl::InfinitePast()) {
    v1::AdvancePackageRequest r = testing::AdvanceRequest(
        o, package_id, status, testing::SfExpressWhenHanded(status, "SF" + package_id));
    if (status == v1::PACKAGE_STATUS_DELIVERY_FAILED) r.set_failure_reason("nobody home");
    if (when != absl::InfinitePast()) api::SetTimestamp(when, r.mutable_event_time());
    return Call(stub.get(), &Stub::AdvancePackage, r, out);
  }

  // Moves a package through `moves` in order (each at `when`, if given), every move accepted.
  void Walk(const v1::Order& o, std::string package_id, const std::vector<P>& moves, v1::Order* out,
            absl::Time when = absl::InfinitePast()) {
    for (P s : moves) REQUIRE(Advance(o, package_id, s, out, when).ok());
  }

  // Pays and processes `o`: the order at the processing center, its packages made.
  v1::Order PayAndProcess(const v1::Order& o) {
    v1::Order out;
    REQUIRE(Pay(o, &out).ok());
    REQUIRE(Process(o, &out).ok());
    return out;
  }
  // A new customer's order (request id "r"), paid for and processed into one package.
  v1::Order ProcessedOrder(const std::string& email) {
    return PayAndProcess(Create(Customer(email), "r"));
  }

  grpc::Status Get(const std::string& customer_id, const std::string& order_id, v1::Order* out) {
    v1::GetOrderRequest get;
    get.set_customer_id(customer_id);
    get.set_order_id(order_id);
    return Call(stub.get(), &Stub::GetOrder, get, out);
  }
  v1::Order Get(const v1::Order& o) {
    v1::Order out;
    REQUIRE(Get(o.customer_id(), o.order_id(), &out).ok());
    return out;
  }

  // Pays (unless cash on delivery), processes and delivers every package at `when`.
  v1::Order Deliver(v1::Order o, absl::Time when) {
    if (orders.clock().Now() < when) orders.clock().Set(when);
    v1::Order out;
    if (o.payment_method() != v1::PAYMENT_METHOD_TYPE_CASH_ON_DELIVERY) REQUIRE(Pay(o, &out).ok());
    REQUIRE(Process(o, &out).ok());
    for (const auto& p : out.packages()) {
      Walk(o, p.package_id(), kOutForDelivery, &out, when - absl::Hours(1));
      REQUIRE(Advance(o, p.package_id(), v1::PACKAGE_STATUS_DELIVERED, &out, when).ok());
    }
    return out;
  }

  OrderHarness orders;
  std::unique_ptr<Stub> stub = v1::OrderTrackingService::NewStub(orders.channel());
};

TEST_CASE(
    "create an order for a registered customer, get it, list it, a retry returns the same order",
    "[order_tracking]") {
  World w;
  const std::string cid = w.Customer("buyer@example.com");
  const v1::Order o = w.Create(cid, "req-1");
  CHECK(o.status() == v1::ORDER_STATUS_PLACED);
  CHECK(o.total().amount_minor() == 399900 + 2 * 2900 + 1000);
  CHECK(o.items(1).item_id() == "2");
  CHECK(o.shipping_address().city() == "杭州");
  CHECK(w.Create(cid, "req-1").order_id() == o.order_id());

  w.orders.clock().Advance(absl::Minutes(5));
  const v1::Order second = w.Create(cid, "req-2");
  v1::ListOrdersRequest list;
  list.set_customer_id(cid);
  list.set_page_size(1);
  v1::ListOrdersResponse page;
  REQUIRE(Call(w.stub.get(), &Stub::ListOrders, list, &page).ok());
  REQUIRE(page.orders_size() == 1);
  CHECK(page.orders(0).order_id() == second.order_id());  // newest first
  list.set_page_token(page.next_page_token());
  REQUIRE(Call(w.stub.get(), &Stub::ListOrders, list, &page).ok());
  REQUIRE(page.orders_size() == 1);
  CHECK(page.orders(0).order_id() == o.order_id());
  CHECK(page.next_page_token().empty());

  v1::Order got;
  REQUIRE(w.Get(cid, o.order_id(), &got).ok());
  CHECK(got.order_id() == o.order_id());
  // Someone else's order is not visible.
  RequireError(w.Get(w.Customer("other@example.com"), o.order_id(), &got),
               grpc::StatusCode::NOT_FOUND, "order_id:");
}

TEST_CASE("bad orders are refused naming the field, and nothing is written",
          "[order_tracking][validation]") {
  World w;
  const std::string cid = w.Customer("careful@example.com");
  auto create = [&](v1::CreateOrderRequest r) {
    v1::Order o;
    return Call(w.stub.get(), &Stub::CreateOrder, r, &o);
  };
  auto base = w.OrderRequest(cid, "bad");
  RequireError(create(w.OrderRequest("c-nobody", "x")), grpc::StatusCode::NOT_FOUND,
               "customer_id:");
  auto r = base;
  r.clear_items();
  RequireError(create(r), grpc::StatusCode::INVALID_ARGUMENT, "items:");
  r = base;
  r.mutable_items(0)->mutable_unit_price()->set_amount_minor(-1);
  RequireError(create(r), grpc::StatusCode::INVALID_ARGUMENT, "items[0].unit_price.amount_minor:");
  r = base;
  r.mutable_items(0)->mutable_unit_price()->set_amount_minor(int64_t{1} << 49);
  r.mutable_items(0)->set_quantity(10000);
  RequireError(create(r), grpc::StatusCode::INVALID_ARGUMENT, "items[0].unit_price:");
  r = base;
  r.mutable_items(1)->set_quantity(0);
  RequireError(create(r), grpc::StatusCode::INVALID_ARGUMENT, "items[1].quantity:");
  r = base;
  r.mutable_items(1)->mutable_unit_price()->set_currency("USD");
  RequireError(create(r), grpc::StatusCode::INVALID_ARGUMENT, "items[1].unit_price.currency:");
  r = base;
  r.mutable_items(0)->set_category("");
  RequireError(create(r), grpc::StatusCode::INVALID_ARGUMENT, "items[0].category:");
  r = base;
  *r.mutable_delivery_window()->mutable_end_time() = r.delivery_window().start_time();
  RequireError(create(r), grpc::StatusCode::INVALID_ARGUMENT, "delivery_window.end_time:");
  r = base;
  r.clear_delivery_window();
  RequireError(create(r), grpc::StatusCode::INVALID_ARGUMENT, "delivery_window:");
  r = base;
  r.set_payment_method(v1::PAYMENT_METHOD_TYPE_UNSPECIFIED);
  RequireError(create(r), grpc::StatusCode::INVALID_ARGUMENT, "payment_method:");
  r = base;
  r.mutable_shipping_fee()->set_amount_minor(-5);
  RequireError(create(r), grpc::StatusCode::INVALID_ARGUMENT, "shipping_fee.amount_minor:");
  r = base;
  r.set_shipping_address_id("a-missing");
  RequireError(create(r), grpc::StatusCode::NOT_FOUND, "shipping_address_id:");
  r = base;
  r.clear_request_id();
  RequireError(create(r), grpc::StatusCode::INVALID_ARGUMENT, "request_id:");

  v1::ListOrdersRequest list;
  list.set_customer_id(cid);
  v1::ListOrdersResponse page;
  REQUIRE(Call(w.stub.get(), &Stub::ListOrders, list, &page).ok());
  CHECK(page.orders_size() == 0);
}

TEST_CASE("an order goes through its lifecycle in split packages, with its full history",
          "[order_tracking][lifecycle]") {
  World w;
  const v1::Order o = w.Create(w.Customer("split@example.com"), "r");
  v1::Order now;
  REQUIRE(w.Pay(o, &now).ok());
  CHECK(now.status() == v1::ORDER_STATUS_PAID);
  REQUIRE(w.Process(o, &now, /*split=*/true).ok());
  REQUIRE(now.packages_size() == 2);
  CHECK(now.status() == v1::ORDER_STATUS_AT_PROCESSING_CENTER);
  const std::string p1 = now.packages(0).package_id(), p2 = now.packages(1).package_id();
  w.orders.clock().Set(kStart + absl::Hours(51));
  CHECK(now.packages(1).split_reason() == v1::SPLIT_REASON_PRESALE);

  w.Walk(o, p1, kOutForDelivery, &now);
  CHECK(now.status() == v1::ORDER_STATUS_AT_PROCESSING_CENTER);  // p2 is still at the center
  CHECK(now.packages(0).tracking_number() == "SF" + p1);
  CHECK(now.packages(0).has_out_of_warehouse_time());
  REQUIRE(w.Advance(o, p1, v1::PACKAGE_STATUS_DELIVERED, &now, kStart + absl::Hours(50)).ok());
  w.Walk(o, p2, kOutForDelivery, &now);
  CHECK(now.status() == v1::ORDER_STATUS_OUT_FOR_DELIVERY);
  REQUIRE(w.Advance(o, p2, v1::PACKAGE_STATUS_DELIVERY_FAILED, &now).ok());
  CHECK(now.status() == v1::ORDER_STATUS_DELIVERY_FAILED);
  REQUIRE(w.Advance(o, p2, v1::PACKAGE_STATUS_OUT_FOR_DELIVERY, &now).ok());
  REQUIRE(w.Advance(o, p2, v1::PACKAGE_STATUS_DELIVERED, &now, kStart + absl::Hours(51)).ok());
  CHECK(now.status() == v1::ORDER_STATUS_DELIVERED);
  CHECK(now.timeliness() == v1::TIMELINESS_ON_TIME);
  // A repeated move is answered with the current state, not an error (safe client retries).
  v1::Order again;
  REQUIRE(w.Advance(o, p2, v1::PACKAGE_STATUS_DELIVERED, &again).ok());
  CHECK(again.version() == now.version());

  const v1::GetOrderHistoryResponse history = testing::CallOk(
      w.stub.get(), &Stub::GetOrderHistory, testing::AboutOrder<v1::GetOrderHistoryRequest>(o));
  std::vector<std::string> what;
  for (const auto& e : history.entries()) what.push_back(e.description());
  CHECK(what.front() == "order placed");
  CHECK(std::find(what.begin(), what.end(), "paid") != what.end());
  CHECK(std::count_if(what.begin(), what.end(), [](const std::string& s) {
          return s.find("DELIVERY_FAILED") != std::string::npos;
        }) == 1);
  CHECK(what.back() == "order delivered");
}

TEST_CASE("every illegal package move is FAILED_PRECONDITION and changes nothing",
          "[order_tracking][lifecycle]") {
  World w;
  const v1::Order o = w.ProcessedOrder("strict@example.com");
  const std::string pkg = o.packages(0).package_id();
  v1::Order now = o;
  // Walk the package forward; at each state try every move that is not allowed from it.
  const std::vector<P> path = {v1::PACKAGE_STATUS_AT_PROCESSING_CENTER,
                               v1::PACKAGE_STATUS_PICKING,
                               v1::PACKAGE_STATUS_PACKED,
                               v1::PACKAGE_STATUS_HANDED_TO_CARRIER,
                               v1::PACKAGE_STATUS_OUT_FOR_DELIVERY,
                               v1::PACKAGE_STATUS_DELIVERED};
  int tried = 0;
  for (size_t i = 0; i < path.size(); ++i) {
    for (int to = 2; to <= 8; ++to) {
      if (P(to) == path[i] || CheckPackageMove(path[i], P(to)).ok()) continue;
      v1::Order after;
      INFO(PackageStatusName(path[i]) << " -> " << PackageStatusName(P(to)));
      RequireError(w.Advance(o, pkg, P(to), &after), grpc::StatusCode::FAILED_PRECONDITION,
                   "status:");
      ++tried;
    }
    CHECK(w.Get(o).version() == now.version());
    if (i + 1 < path.size()) REQUIRE(w.Advance(o, pkg, path[i + 1], &now).ok());
  }
  CHECK(tried > 20);
  v1::Order out;
  RequireError(w.Advance(o, "no-such-package", v1::PACKAGE_STATUS_PICKING, &out),
               grpc::StatusCode::NOT_FOUND, "package_id:");
  const auto no_carrier = testing::AdvanceRequest(o, pkg, v1::PACKAGE_STATUS_HANDED_TO_CARRIER);
  RequireError(Call(w.stub.get(), &Stub::AdvancePackage, no_carrier, &out),
               grpc::StatusCode::INVALID_ARGUMENT, "carrier:");
}

TEST_CASE("payment, cash on delivery and cancellation follow their rules",
          "[order_tracking][lifecycle]") {
  World w;
  const std::string cid = w.Customer("pay@example.com");
  const v1::Order card = w.Create(cid, "card");
  v1::Order out;
  RequireError(w.Process(card, &out), grpc::StatusCode::FAILED_PRECONDITION,
               "order_id:");  // not paid
  REQUIRE(w.Pay(card, &out).ok());
  REQUIRE(w.Pay(card, &out).ok());  // the same payment reported twice
  const v1::Order cod = w.Create(cid, "cod", v1::PAYMENT_METHOD_TYPE_CASH_ON_DELIVERY);
  RequireError(w.Pay(cod, &out), grpc::StatusCode::FAILED_PRECONDITION, "order_id:");
  const v1::Order delivered = w.Deliver(cod, kStart + absl::Hours(49));
  CHECK(delivered.status() == v1::ORDER_STATUS_DELIVERED);
  CHECK(delivered.has_paid_time());  // collected at the door

  v1::CancelOrderRequest cancel;
  cancel.set_customer_id(cid);
  cancel.set_order_id(card.order_id());
  cancel.set_reason("changed my mind");
  REQUIRE(Call(w.stub.get(), &Stub::CancelOrder, cancel, &out).ok());
  CHECK(out.status() == v1::ORDER_STATUS_CANCELLED);
  RequireError(w.Process(card, &out), grpc::StatusCode::FAILED_PRECONDITION, "order_id:");

  const v1::Order shipped = w.Create(cid, "shipped");
  out = w.PayAndProcess(shipped);
  w.Walk(shipped, out.packages(0).package_id(), kToCarrier, &out);
  cancel.set_order_id(shipped.order_id());
  RequireError(Call(w.stub.get(), &Stub::CancelOrder, cancel, &out),
               grpc::StatusCode::FAILED_PRECONDITION, "order_id:");
}

v1::TrackingEvent Tracking(const std::string& id, const std::string& number, P status,
                           absl::Time t) {
  v1::TrackingEvent e;
  e.set_carrier_event_id(id);
  e.set_tracking_number(number);
  e.set_status(status);
  api::SetTimestamp(t, e.mutable_event_time());
  return e;
}

TEST_CASE(
    "carrier events in bulk: applied once, duplicates and late events never move a package back",
    "[order_tracking][tracking]") {
  World w;
  const v1::Order o = w.ProcessedOrder("track@example.com");
  const std::string number = "SF" + o.packages(0).package_id();
  w.orders.clock().Set(kStart + absl::Hours(60));
  v1::Order now;
  w.Walk(o, o.packages(0).package_id(), kToCarrier, &now, kStart + absl::Hours(10));
  const absl::Time t = kStart + absl::Hours(20);
  v1::AddTrackingEventsRequest batch;
  *batch.add_events() = Tracking("ev-1", number, v1::PACKAGE_STATUS_OUT_FOR_DELIVERY, t);
  auto loc = Tracking("ev-2", number, v1::PACKAGE_STATUS_UNSPECIFIED, t + absl::Minutes(10));
  loc.mutable_location()->set_latitude(30.27);
  loc.mutable_location()->set_longitude(120.12);
  api::SetTimestamp(t + absl::Hours(2), loc.mutable_eta());
  *batch.add_events() = loc;
  *batch.add_events() =
      Tracking("ev-1", number, v1::PACKAGE_STATUS_OUT_FOR_DELIVERY, t);  // duplicate
  *batch.add_events() = Tracking("ev-3", number, v1::PACKAGE_STATUS_DELIVERED, t + absl::Hours(35));
  *batch.add_events() =
      Tracking("ev-4", number, v1::PACKAGE_STATUS_OUT_FOR_DELIVERY, t + absl::Minutes(20));  // late
  *batch.add_events() = Tracking("ev-5", "NO-SUCH-NUMBER", v1::PACKAGE_STATUS_DELIVERED, t);
  v1::AddTrackingEventsResponse resp;
  REQUIRE(Call(w.stub.get(), &Stub::AddTrackingEvents, batch, &resp).ok());
  using R = v1::TrackingEventResult;
  REQUIRE(resp.results_size() == 6);
  CHECK(resp.results(0).outcome() == R::OUTCOME_APPLIED);
  CHECK(resp.results(1).outcome() == R::OUTCOME_APPLIED);
  CHECK(resp.results(2).outcome() == R::OUTCOME_DUPLICATE);
  CHECK(resp.results(3).outcome() == R::OUTCOME_APPLIED);
  CHECK(resp.results(4).outcome() == R::OUTCOME_STALE);
  CHECK(resp.results(5).outcome() == R::OUTCOME_UNKNOWN_TRACKING_NUMBER);

  now = w.Get(o);
  CHECK(now.status() == v1::ORDER_STATUS_DELIVERED);
  CHECK(now.packages(0).last_location().latitude() == Approx(30.27));
  CHECK(now.timeliness() == v1::TIMELINESS_LATE);  // delivered at 55 h, the window closed at 52 h

  // Sending the whole batch again changes nothing.
  REQUIRE(Call(w.stub.get(), &Stub::AddTrackingEvents, batch, &resp).ok());
  CHECK(w.Get(o).version() == now.version());

  v1::AddTrackingEventsRequest bad;
  *bad.add_events() = Tracking("ok", number, v1::PACKAGE_STATUS_DELIVERED, t);
  auto no_time = Tracking("x", number, v1::PACKAGE_STATUS_DELIVERED, t);
  no_time.clear_event_time();
  *bad.add_events() = no_time;
  RequireError(Call(w.stub.get(), &Stub::AddTrackingEvents, bad, &resp),
               grpc::StatusCode::INVALID_ARGUMENT, "events[1].event_time:");
}

// The ShipmentUpdated notices order-tracking wrote to its outbox for `order_id`, in order.
std::vector<v1::Event> ShipmentNotices(OrderHarness& orders, const std::string& order_id) {
  std::vector<v1::Event> notices;
  for (v1::Event& e : testing::OutboxEvents(orders.store())) {
    if (e.has_shipment_updated() && e.shipment_updated().order_id() == order_id)
      notices.push_back(std::move(e));
  }
  return notices;
}

TEST_CASE(
    "shipment notices: shipped once per package however often it is reported, out for delivery "
    "for every attempt",
    "[order_tracking][shipment]") {
  World w("test=127.0.0.1:1");  // events are kept in the outbox; delivery is not the point here
  const v1::Order o = w.ProcessedOrder("notices@example.com");
  const std::string package_id = o.packages(0).package_id();
  const std::string number = "SF" + package_id;
  w.orders.clock().Set(kStart + absl::Hours(60));
  v1::Order now;
  w.Walk(o, package_id, kToCarrier, &now, kStart + absl::Hours(10));
  REQUIRE(w.Advance(o, package_id, v1::PACKAGE_STATUS_HANDED_TO_CARRIER, &now).ok());  // a retry

  // The carrier confirms the hand-over, goes out, fails; every event is sent twice.
  v1::AddTrackingEventsRequest batch;
  for (const auto& [id, status, hour] : std::vector<std::tuple<std::string, P, int>>{
           {"ev-1", v1::PACKAGE_STATUS_HANDED_TO_CARRIER, 11},
           {"ev-2", v1::PACKAGE_STATUS_OUT_FOR_DELIVERY, 20},
           {"ev-3", v1::PACKAGE_STATUS_DELIVERY_FAILED, 22}}) {
    for (int copy = 0; copy < 2; ++copy)
      *batch.add_events() = Tracking(id, number, status, kStart + absl::Hours(hour));
  }
  v1::AddTrackingEventsResponse resp;
  REQUIRE(Call(w.stub.get(), &Stub::AddTrackingEvents, batch, &resp).ok());
  REQUIRE(Call(w.stub.get(), &Stub::AddTrackingEvents, batch, &resp).ok());
  CHECK(w.Get(o).packages(0).status() == v1::PACKAGE_STATUS_DELIVERY_FAILED);

  // The next attempt, asked for twice, and the delivery.
  for (int copy = 0; copy < 2; ++copy) {
    REQUIRE(w.Advance(o, package_id, v1::PACKAGE_STATUS_OUT_FOR_DELIVERY, &now,
                      kStart + absl::Hours(30))
                .ok());
  }
  v1::AddTrackingEventsRequest delivered;
  *delivered.add_events() =
      Tracking("ev-4", number, v1::PACKAGE_STATUS_DELIVERED, kStart + absl::Hours(32));
  REQUIRE(Call(w.stub.get(), &Stub::AddTrackingEvents, delivered, &resp).ok());
  REQUIRE(w.Get(o).status() == v1::ORDER_STATUS_DELIVERED);

  const std::vector<v1::Event> notices = ShipmentNotices(w.orders, o.order_id());
  std::vector<std::pair<v1::ShipmentStage, absl::Time>> told;
  for (const v1::Event& e : notices) {
    told.emplace_back(e.shipment_updated().stage(), api::FromTimestamp(e.occur_time()));
    CHECK(e.customer_id() == o.customer_id());
    CHECK(e.shipment_updated().package_id() == package_id);
    CHECK(e.shipment_updated().carrier() == "SF Express");
    CHECK(e.shipment_updated().tracking_number() == number);
    CHECK_FALSE(e.shipment_updated().has_promised_by());
  }
  CHECK(told == std::vector<std::pair<v1::ShipmentStage, absl::Time>>{
                    {v1::SHIPMENT_STAGE_SHIPPED, kStart + absl::Hours(10)},
                    {v1::SHIPMENT_STAGE_OUT_FOR_DELIVERY, kStart + absl::Hours(20)},
                    {v1::SHIPMENT_STAGE_OUT_FOR_DELIVERY, kStart + absl::Hours(30)}});
}

TEST_CASE(
    "shipment notices: a package's delay past the promised window is told once, not while its ETA "
    "is within it",
    "[order_tracking][shipment]") {
  World w("test=127.0.0.1:1");
  const std::string cid = w.Customer("delayed@example.com");
  const v1::Order placed = w.Create(cid, "r");  // promised between 48 h and 52 h
  v1::Order o;
  REQUIRE(w.Pay(placed, &o).ok());
  REQUIRE(w.Process(placed, &o, /*split=*/true).ok());
  REQUIRE(o.packages_size() == 2);
  const std::string first = o.packages(0).package_id(), second = o.packages(1).package_id();
  w.orders.clock().Set(kStart + absl::Hours(60));
  // A move reported with the carrier's estimate.
  auto advance_with_eta = [&](const std::string& package_id, P status, absl::Time when,
                              absl::Time eta) {
    v1::AdvancePackageRequest r = testing::AdvanceRequest(
        o, package_id, status, testing::SfExpressWhenHanded(status, "SF" + package_id));
    api::SetTimestamp(when, r.mutable_event_time());
    api::SetTimestamp(eta, r.mutable_eta());
    v1::Order out;
    REQUIRE(Call(w.stub.get(), &Stub::AdvancePackage, r, &out).ok());
  };
  // Carrier news with only an estimate.
  auto carrier_eta = [&](const std::string& id, const std::string& package_id, absl::Time when,
                         absl::Time eta) {
    v1::AddTrackingEventsRequest batch;
    v1::TrackingEvent e = Tracking(id, "SF" + package_id, v1::PACKAGE_STATUS_UNSPECIFIED, when);
    api::SetTimestamp(eta, e.mutable_eta());
    *batch.add_events() = e;
    v1::AddTrackingEventsResponse resp;
    REQUIRE(Call(w.stub.get(), &Stub::AddTrackingEvents, batch, &resp).ok());
  };
  auto delays = [&] {
    std::vector<v1::Event> delayed;
    for (v1::Event& e : ShipmentNotices(w.orders, o.order_id())) {
      if (e.shipment_updated().stage() == v1::SHIPMENT_STAGE_DELAYED)
        delayed.push_back(std::move(e));
    }
    return delayed;
  };

  // The first package: estimates inside the window (its end included) tell nothing.
  v1::Order now;
  w.Walk(o, first, {v1::PACKAGE_STATUS_PICKING, v1::PACKAGE_STATUS_PACKED}, &now,
         kStart + absl::Hours(5));
  advance_with_eta(first, v1::PACKAGE_STATUS_HANDED_TO_CARRIER, kStart + absl::Hours(10),
                   kStart + absl::Hours(50));
  carrier_eta("eta-1", first, kStart + absl::Hours(12), kStart + absl::Hours(51));
  carrier_eta("eta-2", first, kStart + absl::Hours(14), kStart + absl::Hours(52));
  CHECK(delays().empty());
  // Past the window's end: told once, also when the news is sent again, the estimate slips further,
  // or comes back and goes past again.
  carrier_eta("eta-3", first, kStart + absl::Hours(20), kStart + absl::Hours(55));
  carrier_eta("eta-3", first, kStart + absl::Hours(20), kStart + absl::Hours(55));
  carrier_eta("eta-4", first, kStart + absl::Hours(21), kStart + absl::Hours(58));
  carrier_eta("eta-5", first, kStart + absl::Hours(22), kStart + absl::Hours(50));
  carrier_eta("eta-6", first, kStart + absl::Hours(23), kStart + absl::Hours(56));
  std::vector<v1::Event> delayed = delays();
  REQUIRE(delayed.size() == 1);
  CHECK(delayed[0].customer_id() == cid);
  CHECK(delayed[0].shipment_updated().package_id() == first);
  CHECK(api::FromTimestamp(delayed[0].shipment_updated().eta()) == kStart + absl::Hours(55));
  CHECK(api::FromTimestamp(delayed[0].shipment_updated().promised_by()) ==
        kStart + absl::Hours(52));
  CHECK(api::FromTimestamp(delayed[0].occur_time()) == kStart + absl::Hours(20));
  CHECK(api::FromTimestamp(w.Get(o).packages(0).delayed_time()) == kStart + absl::Hours(20));
  CHECK_FALSE(w.Get(o).packages(1).has_delayed_time());

  // The second package goes out with a late estimate given by operations: out for delivery, then
  // delayed; the same request again tells nothing more.
  w.Walk(o, second, kToCarrier, &now, kStart + absl::Hours(30));
  for (int copy = 0; copy < 2; ++copy) {
    advance_with_eta(second, v1::PACKAGE_STATUS_OUT_FOR_DELIVERY, kStart + absl::Hours(40),
                     kStart + absl::Hours(54));
  }
  delayed = delays();
  REQUIRE(delayed.size() == 2);
  CHECK(delayed[1].shipment_updated().package_id() == second);
  CHECK(api::FromTimestamp(delayed[1].occur_time()) == kStart + absl::Hours(40));
  std::vector<v1::ShipmentStage> second_told;
  for (const v1::Event& e : ShipmentNotices(w.orders, o.order_id())) {
    if (e.shipment_updated().package_id() == second)
      second_told.push_back(e.shipment_updated().stage());
  }
  CHECK(second_told == std::vector<v1::ShipmentStage>{v1::SHIPMENT_STAGE_SHIPPED,
                                                      v1::SHIPMENT_STAGE_OUT_FOR_DELIVERY,
                                                      v1::SHIPMENT_STAGE_DELAYED});
}

TEST_CASE(
    "returns: within the window, refunded at the price paid, shipping when the carrier was at "
    "fault",
    "[order_tracking][returns]") {
  World w("test=127.0.0.1:1");  // events are kept in the outbox; delivery is not the point here
  const std::string cid = w.Customer("return@example.com");
  const v1::Order o = w.Deliver(w.Create(cid, "r"), kStart + absl::Hours(50));
  w.orders.clock().Set(kStart + absl::Hours(24 * 5));
  v1::RequestReturnRequest req = testing::OneItemReturnRequest(
      cid, o.order_id(), "ret-1", "1", "the screen flickers", v1::FAULT_CARRIER);
  v1::Return ret;
  REQUIRE(Call(w.stub.get(), &Stub::RequestReturn, req, &ret).ok());
  CHECK(ret.status() == v1::RETURN_STATUS_REQUESTED);
  v1::Return retry;
  REQUIRE(Call(w.stub.get(), &Stub::RequestReturn, req, &retry).ok());
  CHECK(retry.return_id() == ret.return_id());
  req.set_request_id("ret-2");  // the phone is already being returned
  RequireError(Call(w.stub.get(), &Stub::RequestReturn, req, &retry),
               grpc::StatusCode::FAILED_PRECONDITION, "items[0].quantity:");

  v1::AdvanceReturnRequest adv;
  adv.set_customer_id(cid);
  adv.set_return_id(ret.return_id());
  adv.set_status(v1::RETURN_STATUS_REFUNDED);
  RequireError(Call(w.stub.get(), &Stub::AdvanceReturn, adv, &ret),
               grpc::StatusCode::FAILED_PRECONDITION, "status:");
  adv.set_status(v1::RETURN_STATUS_PICKUP_SCHEDULED);
  RequireError(Call(w.stub.get(), &Stub::AdvanceReturn, adv, &ret),
               grpc::StatusCode::INVALID_ARGUMENT, "pickup_start_time:");
  api::SetTimestamp(kStart + absl::Hours(24 * 6), adv.mutable_pickup_start_time());
  api::SetTimestamp(kStart + absl::Hours(24 * 6 + 3), adv.mutable_pickup_end_time());
  REQUIRE(Call(w.stub.get(), &Stub::AdvanceReturn, adv, &ret).ok());
  adv.set_status(v1::RETURN_STATUS_RECEIVED);
  REQUIRE(Call(w.stub.get(), &Stub::AdvanceReturn, adv, &ret).ok());
  adv.set_status(v1::RETURN_STATUS_REFUNDED);
  REQUIRE(Call(w.stub.get(), &Stub::AdvanceReturn, adv, &ret).ok());
  CHECK(ret.refund_amount().amount_minor() == 399900 + 1000);
  CHECK(ret.shipping_refunded());
  // A retried refund changes nothing and counts nothing again.
  auto& registry = w.orders.metrics().registry();
  const double refunded = testing::MetricValue(registry, "crm_refunds_minor_units_total");
  const double refund_steps =
      testing::MetricValue(registry, "crm_returns_total", {{"status", "refunded"}});
  REQUIRE(Call(w.stub.get(), &Stub::AdvanceReturn, adv, &ret).ok());
  CHECK(testing::MetricValue(registry, "crm_refunds_minor_units_total") == refunded);
  CHECK(testing::MetricValue(registry, "crm_returns_total", {{"status", "refunded"}}) ==
        refund_steps);
  CHECK(refunded == 399900 + 1000);

  // Return windows depend on the membership, so loyalty answers for the customer from here on.
  testing::ServiceHarness<loyalty::LoyaltyComponent> loyalty_service(
      w.CallingProfile(testing::ServiceHarness<loyalty::LoyaltyComponent>::Options()));
  w.orders.backends().SetAddress("loyalty", testing::LoopbackAddress(loyalty_service.port()));

  // The cables, customer's fault, after the 15-day window: refused with the window's end.
  w.orders.clock().Set(kStart + absl::Hours(24 * 20));
  req.set_request_id("ret-3");
  req.set_fault(v1::FAULT_CUSTOMER);
  req.mutable_items(0)->set_item_id("2");
  const grpc::Status late = Call(w.stub.get(), &Stub::RequestReturn, req, &retry);
  RequireError(late, grpc::StatusCode::FAILED_PRECONDITION, "items[0].item_id:");
  CHECK(late.error_message().find("ended 2026-01-18T02:00:00Z") != std::string::npos);

  // A silver member (3 more days) may still return them on day 19: a delivered order of 2,599 CNY
  // makes silver.
  v1::Event silver;
  silver.set_event_id("test/0/1.1");
  silver.set_customer_id(cid);
  api::SetTimestamp(kStart + absl::Hours(24 * 16), silver.mutable_occur_time());
  auto* d = silver.mutable_order_delivered();
  d->set_order_id("o-other");
  auto* big = d->add_items();
  big->set_item_id("1");
  big->set_category("kitchen");
  big->set_quantity(1);
  big->mutable_unit_price()->set_amount_minor(259900);
  auto sink = v1::EventSink::NewStub(loyalty_service.channel());
  v1::DeliverEventsRequest deliver;
  *deliver.add_events() = silver;
  v1::DeliverEventsResponse delivered;
  REQUIRE(Call(sink.get(), &v1::EventSink::Stub::DeliverEvents, deliver, &delivered).ok());
  w.orders.clock().Set(kStart + absl::Hours(24 * 19));
  loyalty_service.clock().Set(kStart + absl::Hours(24 * 19));
  req.set_request_id("ret-4");
  REQUIRE(Call(w.stub.get(), &Stub::RequestReturn, req, &retry).ok());
  CHECK(api::FromTimestamp(retry.window_end_time()) == kStart + absl::Hours(50 + 24 * 18));

  v1::ListReturnsRequest list;
  list.set_customer_id(cid);
  v1::ListReturnsResponse returns;
  REQUIRE(Call(w.stub.get(), &Stub::ListReturns, list, &returns).ok());
  CHECK(returns.returns_size() == 2);

  // The refund is an event for the other services, with the exact amount.
  int refunds = 0;
  for (const v1::Event& e : testing::OutboxEvents(w.orders.store())) {
    if (!e.has_order_refunded()) continue;
    ++refunds;
    CHECK(e.order_refunded().amount().amount_minor() == 400900);
    CHECK(e.order_refunded().fault() == v1::FAULT_CARRIER);
  }
  CHECK(refunds == 1);
}

TEST_CASE("reviews: after delivery only, once per item, retry-safe", "[order_tracking][reviews]") {
  World w;
  const std::string cid = w.Customer("review@example.com");
  const v1::Order placed = w.Create(cid, "r");
  v1::SubmitReviewRequest req;
  req.set_customer_id(cid);
  req.set_order_id(placed.order_id());
  req.set_item_id("1");
  req.set_rating(2);
  req.set_text("电池不耐用");
  req.set_request_id("rev-1");
  v1::Review review;
  RequireError(Call(w.stub.get(), &Stub::SubmitReview, req, &review),
               grpc::StatusCode::FAILED_PRECONDITION, "item_id:");
  w.Deliver(placed, kStart + absl::Hours(50));
  req.set_rating(6);
  RequireError(Call(w.stub.get(), &Stub::SubmitReview, req, &review),
               grpc::StatusCode::INVALID_ARGUMENT, "rating:");
  req.set_rating(2);
  REQUIRE(Call(w.stub.get(), &Stub::SubmitReview, req, &review).ok());
  v1::Review retried;
  REQUIRE(Call(w.stub.get(), &Stub::SubmitReview, req, &retried).ok());
  CHECK(retried.review_id() == review.review_id());
  req.set_request_id("rev-2");
  RequireError(Call(w.stub.get(), &Stub::SubmitReview, req, &retried),
               grpc::StatusCode::ALREADY_EXISTS, "item_id:");
  req.set_item_id("9");
  req.set_request_id("rev-3");
  RequireError(Call(w.stub.get(), &Stub::SubmitReview, req, &retried), grpc::StatusCode::NOT_FOUND,
               "item_id:");
}

// Collects a WatchOrder stream on a callback reactor (no thread per watcher on the client either).
class WatchClient : public grpc::ClientReadReactor<v1::OrderUpdate> {
 public:
  WatchClient(Stub* stub, const std::string& cid, const std::string& oid) {
    req_.set_customer_id(cid);
    req_.set_order_id(oid);
    stub->async()->WatchOrder(&ctx_, &req_, this);
    StartRead(&update_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    {
      absl::MutexLock lock(&mu_);
      updates_.push_back(update_);
    }
    StartRead(&update_);
  }
  void OnDone(const grpc::Status& s) override {
    status_ = s;
    done_.Notify();
  }
  bool Wait(absl::Duration timeout) { return done_.WaitForNotificationWithTimeout(timeout); }
  std::vector<v1::OrderUpdate> updates() {
    absl::MutexLock lock(&mu_);
    return updates_;
  }
  bool WaitForUpdates(size_t n, absl::Duration timeout) {
    return testing::WaitUntil([&] { return updates().size() >= n; }, timeout);
  }
  grpc::Status status_;

 private:
  grpc::ClientContext ctx_;
  v1::WatchOrderRequest req_;
  v1::OrderUpdate update_;
  absl::Mutex mu_;
  std::vector<v1::OrderUpdate> updates_;
  absl::Notification done_;
};

TEST_CASE("a watcher sees the current state, then every transition in order, until delivery",
          "[order_tracking][watch]") {
  World w;
  const std::string cid = w.Customer("watch@example.com");
  const v1::Order o = w.Create(cid, "r");
  WatchClient watcher(w.stub.get(), cid, o.order_id());
  REQUIRE(watcher.WaitForUpdates(1, absl::Seconds(10)));
  w.Deliver(o, kStart + absl::Hours(49));
  REQUIRE(watcher.Wait(absl::Seconds(20)));
  CHECK(watcher.status_.ok());
  const auto updates = watcher.updates();
  REQUIRE(updates.size() >= 2);
  CHECK(updates.front().change() == "current state");
  std::vector<v1::OrderStatus> statuses;
  int64_t last_version = -1;
  for (const auto& u : updates) {
    CHECK(u.order().version() > last_version);
    last_version = u.order().version();
    statuses.push_back(u.order().status());
  }
  const std::vector<v1::OrderStatus> expected = {v1::ORDER_STATUS_PLACED,
                                                 v1::ORDER_STATUS_PAID,
                                                 v1::ORDER_STATUS_AT_PROCESSING_CENTER,
                                                 v1::ORDER_STATUS_PICKING,
                                                 v1::ORDER_STATUS_PACKED,
                                                 v1::ORDER_STATUS_HANDED_TO_CARRIER,
                                                 v1::ORDER_STATUS_OUT_FOR_DELIVERY,
                                                 v1::ORDER_STATUS_DELIVERED};
  CHECK(statuses == expected);
}

TEST_CASE("1,000 concurrent watchers of one order all receive the delivery",
          "[order_tracking][watch]") {
  World w;
  const std::string cid = w.Customer("crowd@example.com");
  const v1::Order o = w.Create(cid, "r");
  std::vector<std::unique_ptr<WatchClient>> watchers;
  for (int i = 0; i < 1000; ++i)
    watchers.push_back(std::make_unique<WatchClient>(w.stub.get(), cid, o.order_id()));
  for (auto& c : watchers) REQUIRE(c->WaitForUpdates(1, absl::Seconds(60)));
  w.Deliver(o, kStart + absl::Hours(49));
  int delivered = 0;
  for (auto& c : watchers) {
    REQUIRE(c->Wait(absl::Seconds(60)));
    const auto updates = c->updates();
    if (!updates.empty() && updates.back().order().status() == v1::ORDER_STATUS_DELIVERED)
      ++delivered;
  }
  CHECK(delivered == 1000);
}

TEST_CASE("a CustomerErased event anonymises the customer's orders but keeps the amounts",
          "[order_tracking][privacy]") {
  World w;
  const std::string cid = w.Customer("erase@example.com");
  const v1::Order o = w.Deliver(w.Create(cid, "r"), kStart + absl::Hours(50));
  auto sink = v1::EventSink::NewStub(w.orders.channel());
  v1::DeliverEventsRequest req;
  auto* e = req.add_events();
  e->set_event_id("customer-profile/0/1.1");
  e->set_customer_id(cid);
  e->set_producer("customer-profile");
  api::SetTimestamp(kStart, e->mutable_occur_time());
  e->mutable_customer_erased();
  v1::DeliverEventsResponse resp;
  REQUIRE(Call(sink.get(), &v1::EventSink::Stub::DeliverEvents, req, &resp).ok());
  CHECK(resp.processed_count() == 1);
  const v1::Order after = w.Get(o);
  CHECK(after.shipping_address().recipient_name().empty());
  CHECK(after.shipping_address().street().empty());
  CHECK(after.shipping_address().city() == "杭州");
  CHECK(after.total().amount_minor() == o.total().amount_minor());
  REQUIRE(Call(sink.get(), &v1::EventSink::Stub::DeliverEvents, req, &resp)
              .ok());  // redelivered: a no-op
  CHECK(resp.processed_count() == 1);
}

TEST_CASE("on-time delivery rate is a metric by timeliness", "[order_tracking][metrics]") {
  World w("none", /*serve_metrics=*/true);
  const std::string cid = w.Customer("kpi@example.com");
  w.Deliver(w.Create(cid, "a"), kStart + absl::Hours(47));  // early
  w.Deliver(w.Create(cid, "b"), kStart + absl::Hours(50));  // on time
  w.Deliver(w.Create(cid, "c"), kStart + absl::Hours(51));  // on time
  w.Deliver(w.Create(cid, "d"), kStart + absl::Hours(60));  // late
  const std::string page = testing::MetricsPage(w.orders.metrics().port());
  testing::CheckPageShows(page, {"crm_orders_delivered_total{timeliness=\"early\"} 1",
                                 "crm_orders_delivered_total{timeliness=\"on_time\"} 2",
                                 "crm_orders_delivered_total{timeliness=\"late\"} 1"});
  testing::CheckPromtoolAccepts(page);
}

// The event id's position "<epoch>.<seq>" as a comparable pair.
std::pair<uint64_t, uint64_t> PositionOf(const std::string& event_id) {
  const std::string pos = event_id.substr(event_id.rfind('/') + 1);
  const size_t dot = pos.find('.');
  return {std::stoull(pos.substr(0, dot)), std::stoull(pos.substr(dot + 1))};
}

TEST_CASE(
    "with the consumer down while 1,000 orders are delivered, it later receives every event once, "
    "in order",
    "[order_tracking][events]") {
  testing::EventRecorder recorder;
  recorder.Start();
  recorder.Stop();  // down, but its address is known
  World w("test=" + recorder.address());
  constexpr int kCustomers = 50, kOrdersEach = 20;
  std::vector<std::string> customers;
  for (int i = 0; i < kCustomers; ++i)
    customers.push_back(w.Customer("shopper" + std::to_string(i) + "@example.com"));
  w.orders.clock().Set(kStart + absl::Hours(50));
  std::vector<std::thread> threads;
  std::atomic<int> delivered{0};
  for (int t = 0; t < 10; ++t) {
    threads.emplace_back([&, t] {
      auto stub = v1::OrderTrackingService::NewStub(w.orders.channel());
      for (int c = t; c < kCustomers; c += 10) {
        for (int k = 0; k < kOrdersEach; ++k) {
          v1::Order o;
          if (!Call(stub.get(), &Stub::CreateOrder,
                    w.OrderRequest(customers[c], "o-" + std::to_string(k)), &o)
                   .ok())
            continue;
          auto pay = testing::AboutOrder<v1::PayOrderRequest>(o);
          pay.set_payment_reference("p");
          if (!Call(stub.get(), &Stub::PayOrder, pay, &o).ok()) continue;
          const auto proc = testing::AboutOrder<v1::ProcessOrderRequest>(o);
          if (!Call(stub.get(), &Stub::ProcessOrder, proc, &o).ok()) continue;
          bool ok = true;
          for (P s : testing::kWarehouseToDoor) {
            const v1::AdvancePackageRequest adv = testing::AdvanceRequest(
                o, o.packages(0).package_id(), s, {"JD Logistics", "JD" + o.order_id()});
            ok = ok && Call(stub.get(), &Stub::AdvancePackage, adv, &o).ok();
          }
          if (ok) ++delivered;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(delivered == kCustomers * kOrdersEach);
  CHECK(recorder.applied().empty());

  // Back up, and the first answers get lost on the way: those batches are delivered again.
  recorder.DropAnswers(3);
  recorder.Start();
  // OrderPlaced, ShipmentUpdated (shipped) and OrderDelivered per order.
  const size_t expected = 3 * kCustomers * kOrdersEach;
  REQUIRE(recorder.WaitForApplied(expected, absl::Seconds(120)));
  REQUIRE(w.orders.component().events().dispatcher().WaitCaughtUp(absl::Seconds(60)));
  const auto events = recorder.applied();
  CHECK(events.size() == expected);
  CHECK(recorder.duplicates() > 0);
  std::set<std::string> ids;
  std::map<std::string, std::pair<uint64_t, uint64_t>> last_position;  // per customer
  std::map<std::string, int> placed, delivered_events;
  for (const auto& e : events) {
    CHECK(ids.insert(e.event_id()).second);
    const auto pos = PositionOf(e.event_id());
    auto [it, fresh] = last_position.emplace(e.customer_id(), pos);
    if (!fresh) {
      CHECK(it->second < pos);  // each customer's events arrive in the order they were written
      it->second = pos;
    }
    if (e.has_order_placed()) ++placed[e.order_placed().order_id()];
    if (e.has_order_delivered()) {
      CHECK(placed[e.order_delivered().order_id()] == 1);  // placed arrived first
      ++delivered_events[e.order_delivered().order_id()];
    }
  }
  CHECK(placed.size() == static_cast<size_t>(kCustomers * kOrdersEach));
  CHECK(delivered_events.size() == static_cast<size_t>(kCustomers * kOrdersEach));
}

TEST_CASE(
    "a consumer receives only the events it subscribes to, and is asked again after a failed "
    "delivery",
    "[order_tracking][events]") {
  using E = events::Subscription::EventType;
  testing::EventRecorder recorder;
  recorder.Subscribe({E::kOrderDelivered});
  recorder.Start();
  World w("test=" + recorder.address());
  const std::string customer = w.Customer("subscriber@example.com");
  const v1::Order first = w.Deliver(w.Create(customer, "first"), kStart + absl::Hours(50));
  REQUIRE(recorder.WaitForApplied(1, absl::Seconds(30)));
  REQUIRE(w.orders.component().events().dispatcher().WaitCaughtUp(absl::Seconds(30)));
  auto events = recorder.applied();
  REQUIRE(events.size() == 1);  // the order's OrderPlaced was not sent
  CHECK(events[0].order_delivered().order_id() == first.order_id());
  CHECK(recorder.subscription_asks() == 1);

  // Down: the next delivery fails. It comes back as a build that also wants OrderPlaced; the
  // producer asks again before it delivers.
  recorder.Stop();
  const v1::Order second = w.Deliver(w.Create(customer, "second"), kStart + absl::Hours(51));
  recorder.Subscribe({E::kOrderDelivered, E::kOrderPlaced});
  const v1::Order third = w.Create(customer, "third");
  recorder.Start();
  REQUIRE(testing::WaitUntil(
      [&] {
        for (const auto& e : recorder.applied()) {
          if (e.order_placed().order_id() == third.order_id()) return true;
        }
        return false;
      },
      absl::Seconds(60)));
  REQUIRE(w.orders.component().events().dispatcher().WaitCaughtUp(absl::Seconds(30)));
  CHECK(recorder.subscription_asks() >= 2);
  std::set<std::string> delivered, placed;
  for (const auto& e : recorder.applied()) {
    if (e.has_order_delivered()) delivered.insert(e.order_delivered().order_id());
    if (e.has_order_placed()) placed.insert(e.order_placed().order_id());
  }
  CHECK(delivered == std::set<std::string>{first.order_id(), second.order_id()});
  CHECK(placed.count(first.order_id()) == 0);  // passed before it was subscribed to
}

TEST_CASE(
    "an event the consumer keeps refusing becomes a dead letter, without blocking others, and can "
    "be replayed",
    "[order_tracking][events]") {
  testing::EventRecorder recorder;
  recorder.Start();
  World w("test=" + recorder.address(), /*serve_metrics=*/true);
  const std::string poison = w.Customer("poison@example.com");
  const std::string fine = w.Customer("fine@example.com");
  recorder.RefuseCustomer(poison);
  w.Create(poison, "p1");
  w.Create(fine, "f1");
  REQUIRE(recorder.WaitForApplied(1, absl::Seconds(60)));

  auto admin = v1::EventAdminService::NewStub(w.orders.channel());
  v1::ListDeadLettersRequest list;
  list.set_producer("order-tracking");
  v1::ListDeadLettersResponse letters;
  testing::WaitUntil(
      [&] {
        REQUIRE(
            Call(admin.get(), &v1::EventAdminService::Stub::ListDeadLetters, list, &letters).ok());
        return letters.dead_letters_size() > 0;
      },
      absl::Seconds(60));
  REQUIRE(letters.dead_letters_size() == 1);
  const v1::DeadLetter& d = letters.dead_letters(0);
  CHECK(d.event().customer_id() == poison);
  CHECK(d.destination() == "test");
  CHECK(d.last_error().find("FAILED_PRECONDITION") != std::string::npos);
  CHECK(d.attempts() >= 5);
  CHECK(recorder.applied().size() == 1);  // the other customer's event went through
  CHECK(recorder.applied()[0].customer_id() == fine);

  CHECK(testing::MetricsPage(w.orders.metrics().port())
            .find("crm_event_dead_letters_total{destination=\"test\",shard=\"0\"} 1") !=
        std::string::npos);

  list.set_producer("loyalty");  // this process is order-tracking
  RequireError(Call(admin.get(), &v1::EventAdminService::Stub::ListDeadLetters, list, &letters),
               grpc::StatusCode::INVALID_ARGUMENT, "producer:");

  recorder.AcceptAll();
  v1::ReplayDeadLettersRequest replay;
  replay.set_producer("order-tracking");
  v1::ReplayDeadLettersResponse replayed;
  REQUIRE(
      Call(admin.get(), &v1::EventAdminService::Stub::ReplayDeadLetters, replay, &replayed).ok());
  CHECK(replayed.replayed_count() == 1);
  CHECK(replayed.still_failing_size() == 0);
  CHECK(recorder.applied().size() == 2);
  list.set_producer("order-tracking");
  REQUIRE(Call(admin.get(), &v1::EventAdminService::Stub::ListDeadLetters, list, &letters).ok());
  CHECK(letters.dead_letters_size() == 0);
}

// A shop's recorded order: one line of each (sku, quantity, price in pence) at `placed`.
v1::HistoricalOrder Recorded(const std::string& invoice, absl::Time placed,
                             const std::vector<std::tuple<std::string, int, int64_t>>& lines) {
  v1::HistoricalOrder o;
  o.set_external_order_id(invoice);
  api::SetTimestamp(placed, o.mutable_place_time());
  for (const auto& [sku, quantity, price] : lines) {
    auto* item = o.add_items();
    item->set_sku(sku);
    item->set_quantity(quantity);
    item->mutable_unit_price()->set_amount_minor(price);
    item->mutable_unit_price()->set_currency("GBP");
  }
  return o;
}

v1::HistoricalReturn RecordedReturn(const std::string& credit_note, const std::string& invoice,
                                    absl::Time when, const std::string& sku, int quantity) {
  v1::HistoricalReturn r;
  r.set_external_return_id(credit_note);
  r.set_external_order_id(invoice);
  api::SetTimestamp(when, r.mutable_refund_time());
  auto* line = r.add_lines();
  line->set_sku(sku);
  line->set_quantity(quantity);
  return r;
}

std::string ImportedCustomer(v1::CustomerProfileService::Stub* profiles,
                             const std::string& external_id) {
  v1::ImportCustomerRequest req;
  req.set_external_id(external_id);
  v1::ImportCustomerResponse resp;
  REQUIRE(Call(profiles, &v1::CustomerProfileService::Stub::ImportCustomer, req, &resp).ok());
  return resp.customer().customer_id();
}

TEST_CASE(
    "importing order history: original times, returns by sku, events in the order they happened, "
    "once",
    "[order_tracking][import]") {
  testing::EventRecorder recorder;
  recorder.Start();
  World w("test=" + recorder.address());
  const std::string customer_id = ImportedCustomer(w.profiles.get(), "17850");
  const absl::Time dec1 = absl::FromUnixSeconds(1291192560);  // 2010-12-01 08:36 UTC
  v1::ImportOrdersRequest req;
  req.set_customer_id(customer_id);
  // Out of order on purpose: the service replays them by time.
  *req.add_orders() = Recorded("536373", dec1 + absl::Hours(24 * 7), {{"85123A", 6, 255}});
  *req.add_orders() =
      Recorded("536365", dec1, {{"85123A", 6, 255}, {"71053", 6, 339}, {"BANK CHARGES", 1, 1500}});
  v1::HistoricalOrder cancelled = Recorded("536370", dec1 + absl::Hours(2), {{"22728", 24, 375}});
  cancelled.set_cancelled(true);
  *req.add_orders() = cancelled;
  *req.add_returns() = RecordedReturn("C536379", "536365", dec1 + absl::Hours(24 * 3), "85123A", 4);
  v1::ImportOrdersResponse resp;
  grpc::Status s = Call(w.stub.get(), &Stub::ImportOrders, req, &resp);
  INFO(s.error_message());
  REQUIRE(s.ok());
  CHECK(resp.orders_imported() == 3);
  CHECK(resp.returns_imported() == 1);
  REQUIRE(resp.orders_size() == 3);
  CHECK(resp.orders(0).external_order_id() == "536373");
  const std::string first_order = resp.orders(1).order_id();

  // Events in time order, each dated when it happened.
  REQUIRE(recorder.WaitForApplied(6, absl::Seconds(20)));
  std::vector<std::pair<std::string, int64_t>> seen;
  for (const auto& e : recorder.applied()) {
    const std::string kind = e.has_order_placed()      ? "placed"
                             : e.has_order_delivered() ? "delivered"
                             : e.has_order_refunded()  ? "refunded"
                             : e.has_order_cancelled() ? "cancelled"
                                                       : "other";
    seen.emplace_back(kind, e.occur_time().seconds());
    CHECK(e.customer_id() == customer_id);
    CHECK_FALSE(e.has_shipment_updated());  // imported history notifies nobody
  }
  const int64_t t0 = absl::ToUnixSeconds(dec1);
  CHECK(seen == std::vector<std::pair<std::string, int64_t>>{{"placed", t0},
                                                             {"delivered", t0},
                                                             {"placed", t0 + 7200},
                                                             {"cancelled", t0 + 7200},
                                                             {"refunded", t0 + 3 * 86400},
                                                             {"placed", t0 + 7 * 86400},
                                                             {"delivered", t0 + 7 * 86400}});
  for (const auto& e : recorder.applied()) {
    if (!e.has_order_refunded()) continue;
    CHECK(e.order_refunded().order_id() == first_order);
    CHECK(e.order_refunded().amount().amount_minor() == 4 * 255);
    REQUIRE(e.order_refunded().items_size() == 1);
    CHECK(e.order_refunded().items(0).sku() == "85123A");
  }

  // The orders read as any other: delivered at their own time, newest first, with the shop's
  // numbers.
  v1::ListOrdersRequest list;
  list.set_customer_id(customer_id);
  v1::ListOrdersResponse listed;
  REQUIRE(Call(w.stub.get(), &Stub::ListOrders, list, &listed).ok());
  REQUIRE(listed.orders_size() == 3);
  CHECK(listed.orders(0).external_order_id() == "536373");
  CHECK(listed.orders(1).status() == v1::ORDER_STATUS_CANCELLED);
  CHECK(listed.orders(2).status() == v1::ORDER_STATUS_DELIVERED);
  CHECK(listed.orders(2).total().amount_minor() == 6 * 255 + 6 * 339 + 1500);
  CHECK(listed.orders(2).returned_quantities().at("1") == 4);
  v1::ListReturnsRequest returns;
  returns.set_customer_id(customer_id);
  v1::ListReturnsResponse listed_returns;
  REQUIRE(Call(w.stub.get(), &Stub::ListReturns, returns, &listed_returns).ok());
  REQUIRE(listed_returns.returns_size() == 1);
  CHECK(listed_returns.returns(0).status() == v1::RETURN_STATUS_REFUNDED);
  CHECK(listed_returns.returns(0).external_return_id() == "C536379");

  // The same import again (a re-run or a retry) changes nothing and emits nothing.
  v1::ImportOrdersResponse again;
  REQUIRE(Call(w.stub.get(), &Stub::ImportOrders, req, &again).ok());
  CHECK(again.orders_imported() == 0);
  CHECK(again.orders_already_imported() == 3);
  CHECK(again.returns_already_imported() == 1);
  CHECK(again.orders(1).order_id() == first_order);
  // A later call may return items of an order imported before; more than is left is refused.
  v1::ImportOrdersRequest later;
  later.set_customer_id(customer_id);
  *later.add_returns() =
      RecordedReturn("C536400", "536365", dec1 + absl::Hours(24 * 10), "85123A", 3);
  RequireError(Call(w.stub.get(), &Stub::ImportOrders, later, &again),
               grpc::StatusCode::FAILED_PRECONDITION, "returns[0].lines[0].quantity");
  later.mutable_returns(0)->mutable_lines(0)->set_quantity(2);
  REQUIRE(Call(w.stub.get(), &Stub::ImportOrders, later, &again).ok());
  CHECK(again.returns_imported() == 1);
  REQUIRE(recorder.WaitForApplied(8, absl::Seconds(20)));
  CHECK(recorder.applied().size() == 8);
}

TEST_CASE("bad history imports are refused naming the field, and nothing is written",
          "[order_tracking][import][validation]") {
  World w;
  const std::string customer_id = ImportedCustomer(w.profiles.get(), "12583");
  const absl::Time when = absl::FromUnixSeconds(1291192560);
  struct Bad {
    std::function<void(v1::ImportOrdersRequest&)> mutate;
    grpc::StatusCode code;
    std::string field;
  };
  const auto invalid = grpc::StatusCode::INVALID_ARGUMENT;
  const std::vector<Bad> bad = {
      {[](auto& r) { r.set_customer_id(""); }, invalid, "customer_id"},
      {[](auto& r) { r.set_customer_id("c-nobody"); }, grpc::StatusCode::NOT_FOUND, "customer_id"},
      {[](auto& r) { r.clear_orders(); }, invalid, "orders"},
      {[](auto& r) { r.mutable_orders(0)->set_external_order_id("a b"); }, invalid,
       "orders[0].external_order_id"},
      {[](auto& r) { r.mutable_orders(0)->clear_place_time(); }, invalid, "orders[0].place_time"},
      {[&](auto& r) {
         api::SetTimestamp(w.orders.clock().Now() + absl::Hours(1),
                           r.mutable_orders(0)->mutable_place_time());
       },
       invalid, "orders[0].place_time"},
      {[](auto& r) { r.mutable_orders(0)->clear_items(); }, invalid, "orders[0].items"},
      {[](auto& r) { r.mutable_orders(0)->mutable_items(0)->set_sku(""); }, invalid,
       "orders[0].items[0].sku"},
      {[](auto& r) { r.mutable_orders(0)->mutable_items(0)->set_quantity(0); }, invalid,
       "orders[0].items[0].quantity"},
      {[](auto& r) {
         r.mutable_orders(0)->mutable_items(0)->mutable_unit_price()->set_currency("gbp");
       },
       invalid, "orders[0].items[0].unit_price.currency"},
      {[](auto& r) {
         r.mutable_orders(0)->mutable_items(0)->mutable_unit_price()->set_amount_minor(-1);
       },
       invalid, "orders[0].items[0].unit_price.amount_minor"},
      {[](auto& r) {
         r.mutable_orders(0)->set_payment_method(static_cast<v1::PaymentMethodType>(99));
       },
       invalid, "orders[0].payment_method"},
      {[&](auto& r) {
         api::SetTimestamp(when - absl::Hours(1), r.mutable_orders(0)->mutable_delivered_time());
       },
       invalid, "orders[0].delivered_time"},
      {[](auto& r) { *r.add_orders() = r.orders(0); }, invalid, "orders[1].external_order_id"},
      {[&](auto& r) { *r.add_returns() = RecordedReturn("C1", "536365", when, "85123A", 0); },
       invalid, "returns[0].lines[0].quantity"},
      {[&](auto& r) { *r.add_returns() = RecordedReturn("C1", "536365", when, "", 1); }, invalid,
       "returns[0].lines[0].sku"},
      {[&](auto& r) { *r.add_returns() = RecordedReturn("C1", "999999", when, "85123A", 1); },
       grpc::StatusCode::FAILED_PRECONDITION, "returns[0].external_order_id"},
      {[&](auto& r) { *r.add_returns() = RecordedReturn("C1", "536365", when, "22728", 1); },
       grpc::StatusCode::FAILED_PRECONDITION, "returns[0].lines[0].quantity"},
      {[&](auto& r) {
         *r.add_returns() = RecordedReturn("C1", "536365", when - absl::Hours(1), "85123A", 1);
       },
       grpc::StatusCode::FAILED_PRECONDITION, "returns[0].external_order_id"},
  };
  for (const auto& b : bad) {
    v1::ImportOrdersRequest r;
    r.set_customer_id(customer_id);
    *r.add_orders() = Recorded("536365", when, {{"85123A", 6, 255}});
    b.mutate(r);
    v1::ImportOrdersResponse out;
    INFO(b.field);
    RequireError(Call(w.stub.get(), &Stub::ImportOrders, r, &out), b.code, b.field);
  }
  // Nothing was written: the customer has no orders.
  v1::ListOrdersRequest list;
  list.set_customer_id(customer_id);
  v1::ListOrdersResponse listed;
  REQUIRE(Call(w.stub.get(), &Stub::ListOrders, list, &listed).ok());
  CHECK(listed.orders().empty());
}

}  // namespace
}  // namespace crm::order_tracking
