// GetPurchaseSummary, which reads the customer's purchase totals kept with every order and return
// change, against the summary's definition computed here from every order and return the API
// lists, after each kind of change; and the totals counted once from the orders themselves after
// an upgrade (a store whose totals are missing).
#include <algorithm>

#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "libs/api/validate.h"
#include "services/order_tracking/order_tracking_component.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"
#include "tests/support/shop_calls.h"
#include "tests/support/test_time.h"
#include "tests/support/with_customer_profile.h"

namespace crm::order_tracking {
namespace {

using OrderHarness = testing::ServiceHarness<OrderTrackingComponent>;
using Stub = v1::OrderTrackingService::Stub;
using testing::Call;

constexpr absl::Time kStart = testing::kHarnessStart;

// The summary as the API defines it: every order and return of the customer, newest order first.
v1::PurchaseSummary Expected(const std::string& customer_id, std::vector<v1::Order> orders,
                             const std::vector<v1::Return>& returns, int open_limit) {
  v1::PurchaseSummary out;
  out.set_customer_id(customer_id);
  std::sort(orders.begin(), orders.end(), [](const v1::Order& a, const v1::Order& b) {
    return api::FromTimestamp(a.create_time()) > api::FromTimestamp(b.create_time());
  });
  int64_t spend = 0, refunded = 0;
  std::string currency;
  for (const v1::Order& o : orders) {
    if (o.status() == v1::ORDER_STATUS_CANCELLED) {
      out.set_cancelled_orders(out.cancelled_orders() + 1);
      continue;
    }
    out.set_orders(out.orders() + 1);
    spend += o.total().amount_minor();
    if (currency.empty()) currency = o.total().currency();
    if (out.last_order_id().empty()) {
      out.set_last_order_id(o.order_id());
      *out.mutable_last_order_time() = o.create_time();
    }
    if (o.status() == v1::ORDER_STATUS_DELIVERED) {
      out.set_delivered_orders(out.delivered_orders() + 1);
    } else if (o.status() != v1::ORDER_STATUS_RETURNED_TO_SENDER) {
      out.set_open_deliveries(out.open_deliveries() + 1);
      if (out.open_orders_size() < open_limit) *out.add_open_orders() = o;
    }
  }
  for (const v1::Return& r : returns) {
    if (r.status() == v1::RETURN_STATUS_REFUNDED) refunded += r.refund_amount().amount_minor();
  }
  out.mutable_spend()->set_amount_minor(spend - refunded);
  out.mutable_spend()->set_currency(currency);
  out.mutable_refunded()->set_amount_minor(refunded);
  out.mutable_refunded()->set_currency(currency);
  return out;
}

// order-tracking calling customer-profile, and one customer with an address.
struct World : testing::WithCustomerProfile {
  World() {
    Connect();
    testing::AddAddress(profiles.get(), customer_id, "addr", "陈静", "杭州", "文一西路969号");
  }
  void Connect() { stub = v1::OrderTrackingService::NewStub(orders.channel()); }

  // An order placed an hour after the previous one (distinct times, so "newest" is one order).
  v1::Order Place(const std::string& request_id, int64_t price_minor) {
    placed_at += absl::Hours(1);
    orders.clock().Set(placed_at);
    v1::CreateOrderRequest create = testing::CashOnDeliveryOrderRequest(
        customer_id, request_id, "sku-" + request_id, "phones", price_minor,
        placed_at + absl::Hours(48), absl::Hours(4));
    v1::Order order;
    REQUIRE(Call(stub.get(), &Stub::CreateOrder, create, &order).ok());
    return order;
  }
  void Cancel(const v1::Order& o) {
    v1::CancelOrderRequest cancel;
    cancel.set_customer_id(customer_id);
    cancel.set_order_id(o.order_id());
    cancel.set_reason("changed my mind");
    v1::Order out;
    REQUIRE(Call(stub.get(), &Stub::CancelOrder, cancel, &out).ok());
  }
  // Returns the order's one item and refunds it.
  void ReturnAndRefund(const v1::Order& o) {
    const v1::RequestReturnRequest req =
        testing::OneItemReturnRequest(customer_id, o.order_id(), "ret-" + o.order_id(),
                                      o.items(0).item_id(), "too small", v1::FAULT_CUSTOMER);
    v1::Return ret;
    REQUIRE(Call(stub.get(), &Stub::RequestReturn, req, &ret).ok());
    v1::AdvanceReturnRequest adv;
    adv.set_customer_id(customer_id);
    adv.set_return_id(ret.return_id());
    adv.set_status(v1::RETURN_STATUS_PICKUP_SCHEDULED);
    api::SetTimestamp(placed_at + absl::Hours(24 * 4), adv.mutable_pickup_start_time());
    api::SetTimestamp(placed_at + absl::Hours(24 * 4 + 3), adv.mutable_pickup_end_time());
    REQUIRE(Call(stub.get(), &Stub::AdvanceReturn, adv, &ret).ok());
    for (auto status : {v1::RETURN_STATUS_RECEIVED, v1::RETURN_STATUS_REFUNDED}) {
      adv.set_status(status);
      REQUIRE(Call(stub.get(), &Stub::AdvanceReturn, adv, &ret).ok());
    }
  }

  // GetPurchaseSummary equals the definition over everything the API lists, at two open limits.
  void RequireSummaryAsDefined() {
    std::vector<v1::Order> all;
    v1::ListOrdersRequest list;
    list.set_customer_id(customer_id);
    list.set_page_size(2);
    do {
      v1::ListOrdersResponse page;
      REQUIRE(Call(stub.get(), &Stub::ListOrders, list, &page).ok());
      all.insert(all.end(), page.orders().begin(), page.orders().end());
      list.set_page_token(page.next_page_token());
    } while (!list.page_token().empty());
    v1::ListReturnsRequest returns_req;
    returns_req.set_customer_id(customer_id);
    v1::ListReturnsResponse returns;
    REQUIRE(Call(stub.get(), &Stub::ListReturns, returns_req, &returns).ok());
    const std::vector<v1::Return> refunds(returns.returns().begin(), returns.returns().end());
    for (int limit : {0, 1}) {
      v1::GetPurchaseSummaryRequest req;
      req.set_customer_id(customer_id);
      req.set_open_order_limit(limit);
      v1::PurchaseSummary got;
      REQUIRE(Call(stub.get(), &Stub::GetPurchaseSummary, req, &got).ok());
      const v1::PurchaseSummary want = Expected(customer_id, all, refunds, limit == 0 ? 10 : limit);
      INFO("got:  " << got.ShortDebugString());
      INFO("want: " << want.ShortDebugString());
      CHECK(got.SerializeAsString() == want.SerializeAsString());
    }
  }

  OrderHarness orders{CallingProfile(OrderHarness::Options())};
  std::unique_ptr<Stub> stub;
  std::string customer_id = Customer("totals@example.com");
  absl::Time placed_at = kStart;
};

TEST_CASE(
    "the purchase summary kept with each change equals its definition over every order and "
    "return, and is counted again from the orders after an upgrade",
    "[order_tracking][summary]") {
  World w;
  w.RequireSummaryAsDefined();  // no orders yet

  const v1::Order delivered = w.Place("delivered", 129900);
  testing::ShipAndDeliver(w.stub.get(), delivered, "SF Express", "SF100");
  w.RequireSummaryAsDefined();
  w.ReturnAndRefund(delivered);
  w.RequireSummaryAsDefined();

  w.Cancel(w.Place("cancelled", 5000));
  const v1::Order open_older = w.Place("open-older", 7000);
  const v1::Order open_newer = w.Place("open-newer", 8000);
  w.RequireSummaryAsDefined();
  v1::ProcessOrderRequest process;
  process.set_customer_id(w.customer_id);
  process.set_order_id(open_older.order_id());
  v1::Order processed;
  REQUIRE(Call(w.stub.get(), &Stub::ProcessOrder, process, &processed).ok());
  w.RequireSummaryAsDefined();

  // The newest order cancelled: the last order is the one before it again.
  const v1::Order newest = w.Place("newest", 9000);
  w.RequireSummaryAsDefined();
  w.Cancel(newest);
  w.RequireSummaryAsDefined();
  w.Cancel(open_newer);
  w.RequireSummaryAsDefined();

  // An upgrade from a build without purchase totals: the rows are missing; the next start counts
  // them from the orders and returns before it serves.
  store::Store& store = w.orders.store();
  auto* totals = store.cf("purchase_totals");
  rocksdb::WriteBatch forget;
  REQUIRE(store
              .Scan(totals, "", "",
                    [&](absl::string_view key, absl::string_view) {
                      forget.Delete(totals, rocksdb::Slice(key.data(), key.size()));
                      return true;
                    })
              .ok());
  REQUIRE(forget.Count() == 2);  // the customer's row and the "counted" mark
  REQUIRE(store.Write(&forget, store::Durability::kSynced).ok());
  w.orders.Restart();
  w.Connect();
  w.RequireSummaryAsDefined();
}

}  // namespace
}  // namespace crm::order_tracking
