// How a producer's dispatcher treats a consumer that is down, given what it subscribes to: events
// it does not want are passed over (cursor moves, nothing is tried, nothing fails), and what it
// wants is counted in the backlog gauges while it is away. Real order-tracking and customer-profile
// over RocksDB; the consumer is a recorder with a subscription.
#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "libs/api/validate.h"
#include "services/customer_profile/customer_profile_component.h"
#include "services/order_tracking/order_tracking_component.h"
#include "tests/support/event_recorder.h"
#include "tests/support/metric_value.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"
#include "tests/support/shop_calls.h"
#include "tests/support/wait.h"

namespace crm::order_tracking {
namespace {

using ProfileHarness = testing::ServiceHarness<customer_profile::CustomerProfileComponent>;
using OrderHarness = testing::ServiceHarness<OrderTrackingComponent>;
using E = events::Subscription::EventType;

const absl::Time kStart = absl::FromUnixSeconds(1767225600);  // the harness clock

TEST_CASE(
    "a consumer that is down is not tried for events it does not want, and what it wants is "
    "counted in the backlog while it is away",
    "[order_tracking][events]") {
  testing::EventRecorder recorder;
  recorder.Subscribe({E::kOrderDelivered});
  recorder.Start();
  ProfileHarness profile{ProfileHarness::Options()};
  OrderHarness::Options o;
  o.backends = {{"customer-profile", "127.0.0.1:" + std::to_string(profile.port())}};
  o.event_sinks = "test=" + recorder.address();
  OrderHarness orders(o);
  auto profiles = v1::CustomerProfileService::NewStub(profile.channel());
  auto stub = v1::OrderTrackingService::NewStub(orders.channel());
  const std::string customer = testing::RegisterCustomer(profiles.get(), "away@example.com");
  testing::AddAddress(profiles.get(), customer, "addr", "陈静", "杭州", "文一西路969号");
  orders.clock().Set(kStart);
  const v1::Order first = testing::PlaceCashOnDeliveryOrder(
      stub.get(), customer, "sku-1", "phones", 10000, kStart + absl::Hours(48), absl::Hours(4));
  testing::ShipAndDeliver(stub.get(), first, "SF Express", "SF1");
  REQUIRE(recorder.WaitForApplied(1, absl::Seconds(30)));  // the consumer told what it wants
  auto& registry = orders.metrics().registry();
  const std::map<std::string, std::string> lane = {{"destination", "test"}, {"shard", "0"}};
  const double errors_before = testing::MetricValue(registry, "crm_event_deliveries_total",
                                                    {{"destination", "test"}, {"result", "error"}});

  // Away: orders placed (OrderPlaced, not wanted) are passed over without trying it.
  recorder.Stop();
  v1::CreateOrderRequest second = testing::CashOnDeliveryOrderRequest(
      customer, "second", "sku-2", "phones", 20000, kStart + absl::Hours(48), absl::Hours(4));
  v1::Order placed;
  REQUIRE(testing::Call(stub.get(), &v1::OrderTrackingService::Stub::CreateOrder, second, &placed)
              .ok());
  REQUIRE(orders.component().events().dispatcher().WaitCaughtUp(absl::Seconds(30)));
  CHECK(testing::MetricValue(registry, "crm_event_deliveries_total",
                             {{"destination", "test"}, {"result", "error"}}) == errors_before);

  // What it wants waits for it, and the backlog says so.
  testing::ShipAndDeliver(stub.get(), placed, "SF Express", "SF2");
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
  ProfileHarness profile{ProfileHarness::Options()};
  OrderHarness::Options o;
  o.backends = {{"customer-profile", "127.0.0.1:" + std::to_string(profile.port())}};
  o.event_sinks = "test=" + recorder.address();
  OrderHarness orders(o);
  orders.clock().Set(kStart);
  auto profiles = v1::CustomerProfileService::NewStub(profile.channel());
  auto stub = v1::OrderTrackingService::NewStub(orders.channel());
  v1::ImportCustomerRequest imported;
  imported.set_external_id("17850");
  v1::ImportCustomerResponse customer;
  REQUIRE(testing::Call(profiles.get(), &v1::CustomerProfileService::Stub::ImportCustomer, imported,
                        &customer)
              .ok());
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
  v1::ImportOrdersResponse done;
  grpc::Status s =
      testing::Call(stub.get(), &v1::OrderTrackingService::Stub::ImportOrders, history, &done);
  INFO(s.error_message());
  REQUIRE(s.ok());
  REQUIRE(recorder.WaitForApplied(2, absl::Seconds(30)));  // placed and delivered, dated 2010
  for (const auto& e : recorder.applied()) CHECK(e.occur_time().seconds() == 1291192560);
  auto& registry = orders.metrics().registry();
  REQUIRE(testing::WaitUntil(
      [&] { return HistogramTotals(registry, "crm_event_end_to_end_lag_seconds").second >= 2; },
      absl::Seconds(30)));
  const auto [lag_sum, delivered] = HistogramTotals(registry, "crm_event_end_to_end_lag_seconds");
  CHECK(delivered == 2);
  CHECK(lag_sum < 60);  // from the events' own time it would be 16 years
}

}  // namespace
}  // namespace crm::order_tracking
