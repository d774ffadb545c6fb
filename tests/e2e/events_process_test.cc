// The outbox across a crash of the real order-tracking binary: events written but not yet delivered
// when the process is SIGKILLed are delivered after it restarts, each exactly once in effect.
#include <set>

#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "libs/api/validate.h"
#include "tests/e2e/start_process.h"
#include "tests/support/caller.h"
#include "tests/support/event_recorder.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace crm {
namespace {

using testing::Process;

using testing::StartServing;

std::shared_ptr<grpc::Channel> ChannelTo(const Process& p) {
  return testing::ChannelAs("127.0.0.1:" + std::to_string(p.port()), testing::InternalCaller());
}

TEST_CASE("SIGKILL between write and dispatch loses no event", "[e2e][events]") {
  testing::TempDir dir;
  testing::EventRecorder recorder;
  recorder.Start();
  recorder.Stop();  // the consumer is down while orders are placed

  auto profile = StartServing("services/customer_profile/customer-profile",
                              {"--data_dir=" + dir.Sub("profile")});
  const std::vector<std::string> order_args = {
      "--data_dir=" + dir.Sub("orders"),
      "--customer_profile_address=127.0.0.1:" + std::to_string(profile->port()),
      "--event_sinks=test=" + recorder.address(), "--event_max_backoff_ms=300"};
  auto orders = StartServing("services/order_tracking/order-tracking", order_args);

  auto profiles = v1::CustomerProfileService::NewStub(ChannelTo(*profile));
  grpc::ClientContext rctx;
  v1::RegisterCustomerRequest reg;
  reg.set_request_id("r");
  reg.set_email("crash@example.com");
  v1::Customer customer;
  REQUIRE(profiles->RegisterCustomer(&rctx, reg, &customer).ok());
  grpc::ClientContext actx;
  v1::AddAddressRequest add;
  add.set_customer_id(customer.customer_id());
  add.set_request_id("a");
  add.mutable_address()->set_recipient_name("赵磊");
  add.mutable_address()->set_city("成都");
  add.mutable_address()->set_street("天府大道1号");
  v1::Address address;
  REQUIRE(profiles->AddAddress(&actx, add, &address).ok());

  auto stub = v1::OrderTrackingService::NewStub(ChannelTo(*orders));
  std::set<std::string> order_ids;
  for (int i = 0; i < 50; ++i) {
    v1::CreateOrderRequest req;
    req.set_customer_id(customer.customer_id());
    req.set_request_id("o" + std::to_string(i));
    auto* item = req.add_items();
    item->set_sku("sku-tea");
    item->set_category("grocery");
    item->set_quantity(1);
    item->mutable_unit_price()->set_amount_minor(5800);
    item->mutable_unit_price()->set_currency("CNY");
    req.set_payment_method(v1::PAYMENT_METHOD_TYPE_ACCOUNT_BALANCE);
    api::SetTimestamp(absl::Now() + absl::Hours(24),
                      req.mutable_delivery_window()->mutable_start_time());
    api::SetTimestamp(absl::Now() + absl::Hours(26),
                      req.mutable_delivery_window()->mutable_end_time());
    grpc::ClientContext ctx;
    v1::Order o;
    REQUIRE(stub->CreateOrder(&ctx, req, &o).ok());
    order_ids.insert(o.order_id());
  }
  orders->Kill();  // no chance to deliver or to shut down cleanly
  CHECK(recorder.applied().empty());

  orders = StartServing("services/order_tracking/order-tracking", order_args);
  recorder.Start();
  REQUIRE(recorder.WaitForApplied(50, absl::Seconds(60)));
  std::set<std::string> received;
  for (const auto& e : recorder.applied()) {
    REQUIRE(e.has_order_placed());
    CHECK(received.insert(e.order_placed().order_id()).second);
  }
  CHECK(received == order_ids);
  CHECK(orders->Stop() == 0);
  CHECK(profile->Stop() == 0);
}

}  // namespace
}  // namespace crm
