// How a producer's dispatcher treats a consumer that is down, given what it subscribes to: events
// it does not want are passed over (cursor moves, nothing is tried, nothing fails), and what it
// wants is counted in the backlog gauges while it is away. Real order-tracking and customer-profile
// over RocksDB; the consumer is a recorder with a subscription.
#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "libs/api/validate.h"
#include "services/order_tracking/order_tracking_component.h"
#include "tests/support/event_recorder.h"
#include "tests/support/metric_value.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"
#include "tests/support/shop_calls.h"
#include "tests/support/test_time.h"
#include "tests/support/wait.h"
#include "tests/support/with_customer_profile.h"

namespace crm::order_tracking {
namespace {

using OrderHarness = testing::ServiceHarness<OrderTrackingComponent>;
using E = events::Subscription::EventType;

constexpr absl::Time kStart = testing::kHarnessStart;

// customer-profile and order-tracking, whose events go to `recorder` (started, so its port is
// known).
struct OrdersToRecorder : testing::WithCustomerProfile {
  explicit OrdersToRecorder(const testing::EventRecorder& recorder)
      : orders(CallingProfile(OrderOptions(recorder))) {
    orders.clock().Set(kStart);
  }
  static OrderHarness::Options OrderOptions(const testing::EventRecorder& recorder) {
    OrderHarness::Options o;
    o.event_sinks = "test=" + recorder.address();
    return o;
  }

  OrderHarness orders;
  std::unique_ptr<v1::OrderTrackingService::Stub> stub =
      v1::OrderTrackingService::NewStub(orders.channel());
};

TEST_CASE(
    "a consumer that is down is not tried for events it does not want, and what it wants is "
    "counted in the backlog while it is away",
    "[order_tracking][events]") {
  testing::EventRecorder recorder;
  recorder.Subscribe({E::kOrderDelivered});
  recorder.Start();
  OrdersToRecorder w(recorder);
  auto& orders = w.orders;
  const std::string customer = w.Customer("away@example.com");
  testing::AddAddress(w.profiles.get(), customer, "addr", "陈静", "杭州", "文一西路969号");
  const v1::Order first = testing::PlaceCashOnDeliveryOrder(
      w.stub.get(), customer, "sku-1", "phones", 10000, kStart + absl::Hours(48), absl::Hours(4));
  testing::ShipAndDeliver(w.stub.get(), first, "SF Express", "SF1");
  REQUIRE(recorder.WaitForApplied(1, absl::Seconds(30)));  // the consumer told what it wants
  auto& registry = orders.metrics().registry();
  const std::map<std::string, std::string> lane = {{"destination", "test"}, {"shard", "0"}};
  const double errors_before = testing::MetricValue(registry, "crm_event_deliveries_total",
                                                    {{"destination", "test"}, {"result", "error"}});

  // Away: orders placed (OrderPlaced, not wanted) are passed over without trying it.
  recorder.Stop();
  const v1::Order placed = testing::CallOk(
      w.stub.get(), &v1::OrderTrackingService::Stub::CreateOrder,
      testing::CashOnDeliveryOrderRequest(customer, "second", "sku-2", "phones", 20000,
                                          kStart + absl::Hours(48), absl::Hours(4)));
  REQUIRE(orders.component().events().dispatcher().WaitCaughtUp(absl::Seconds(30)));
  CHECK(testing::MetricValue(registry, "crm_event_deliveries_total",
                             {{"destination", "test"}, {"result", "error"}}) == errors_before);

  // What it wants waits for it, and the backlog says so.
  testing::ShipAndDeliver(w.stub.get(), placed, "SF Express", "SF2");
  REQUIRE(testing::WaitUntil(
      [&] { return testing::MetricValue(registry, "crm_outbox_backlog_events", lane) == 1; },
      absl::Seconds(30)));
  recorder.Start();
  REQUIRE(recorder.WaitForApplied(2, absl::Seconds(60)));
  for (const auto& e : recorder.applied()) CHECK(e.has_order_delivered());
}

// Sum and count of every series of a histogram in the test's process.
std::pair<double, uint64_t> HistogramTotals(prometheus::Registry& registry,
                                            const std::string& name) {
  std::pair<double, uint64_t> totals{0, 0};
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      totals.first += m.histogram.sample_sum;
      totals.second += m.histogram.sample_count;
    }
  }
  return totals;
}

TEST_CASE(
    "the delivery lag counts from the commit, not from the event's business time (an imported "
    "order from 2010 is not sixteen years late)",
    "[order_tracking][events]") {
  testing::EventRecorder recorder;
  recorder.Start();
  OrdersToRecorder w(recorder);
  v1::ImportCustomerRequest imported;
  imported.set_external_id("17850");
  const v1::ImportCustomerResponse customer = testing::CallOk(
      w.profiles.get(), &v1::CustomerProfileService::Stub::ImportCustomer, imported);
  v1::ImportOrdersRequest history;
  history.set_customer_id(customer.customer().customer_id());
  v1::HistoricalOrder* order = history.add_orders();
  order->set_external_order_id("536365");
  api::SetTimestamp(absl::FromUnixSeconds(1291192560), order->mutable_place_time());  // 2010-12-01
  v1::OrderItem* item = order->add_items();
  item->set_sku("85123A");
  item->set_quantity(6);
  item->mutable_unit_price()->set_amount_minor(255);
  item->mutable_unit_price()->set_currency("GBP");
  testing::CallOk(w.stub.get(), &v1::OrderTrackingService::Stub::ImportOrders, history);
  REQUIRE(recorder.WaitForApplied(2, absl::Seconds(30)));  // placed and delivered, dated 2010
  for (const auto& e : recorder.applied()) CHECK(e.occur_time().seconds() == 1291192560);
  auto& registry = w.orders.metrics().registry();
  REQUIRE(testing::WaitUntil(
      [&] { return HistogramTotals(registry, "crm_event_end_to_end_lag_seconds").second >= 2; },
      absl::Seconds(30)));
  const auto [lag_sum, delivered] = HistogramTotals(registry, "crm_event_end_to_end_lag_seconds");
  CHECK(delivered == 2);
  CHECK(lag_sum < 60);  // from the events' own time it would be 16 years
}

}  // namespace
}  // namespace crm::order_tracking
