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
#include "tests/support/shop_calls.h"
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
  const std::string customer_id = testing::RegisterCustomer(profiles.get(), "crash@example.com");
  testing::AddAddress(profiles.get(), customer_id, "a", "赵磊", "成都", "天府大道1号");

  auto stub = v1::OrderTrackingService::NewStub(ChannelTo(*orders));
  std::set<std::string> order_ids;
  for (int i = 0; i < 50; ++i) {
    v1::CreateOrderRequest req;
    req.set_customer_id(customer_id);
    req.set_request_id("o" + std::to_string(i));
    testing::AddLine(req, "sku-tea", "grocery", 1, 5800);
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
