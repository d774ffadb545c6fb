// A call's path through the six real processes, followed by its trace_id alone: a client's
// traceparent (or the one the gateway starts when there is none, or a malformed one) is in the
// gateway's access-log line, in the line of the service that handled the call, and in the lines of
// the consumers that applied the events the call wrote (debug logging, which writes a line per call
// answered and per event applied).
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "libs/trace/trace.h"
#include "tests/support/crm_system.h"
#include "tests/support/require_ok.h"
#include "tests/support/shop_calls.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait.h"

namespace crm {
namespace {

using testing::CrmSystem;

// The log lines of `process` written in trace `trace_id`.
std::vector<std::string> LinesOf(const CrmSystem& system, const std::string& process,
                                 const std::string& trace_id) {
  std::vector<std::string> lines;
  const std::string key = absl::StrCat("\"trace_id\":\"", trace_id, "\"");
  for (absl::string_view line : absl::StrSplit(system.Output(process), '\n')) {
    if (absl::StrContains(line, key)) lines.emplace_back(line);
  }
  return lines;
}

// Whether `process` writes, within a generous wait, a line in trace `trace_id` that contains
// every one of `parts`.
bool Logs(const CrmSystem& system, const std::string& process, const std::string& trace_id,
          const std::vector<std::string>& parts) {
  return testing::WaitUntil(
      [&] {
        for (const std::string& line : LinesOf(system, process, trace_id)) {
          bool all = true;
          for (const std::string& part : parts) all = all && absl::StrContains(line, part);
          if (all) return true;
        }
        return false;
      },
      absl::Seconds(20));
}

// A call through the gateway with a bearer token and, unless empty, a traceparent; `*returned` is
// the traceparent the gateway answered with.
template <typename Stub, typename Request, typename Response>
grpc::Status ThroughGateway(
    Stub* stub, grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
    const std::string& token, const std::string& traceparent, const Request& request,
    Response* response, std::string* returned = nullptr) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  ctx.AddMetadata("authorization", "Bearer " + token);
  if (!traceparent.empty()) ctx.AddMetadata(trace::kTraceparent, traceparent);
  const grpc::Status status = (stub->*method)(&ctx, request, response);
  if (returned != nullptr) {
    auto it = ctx.GetServerInitialMetadata().find(trace::kTraceparent);
    if (it != ctx.GetServerInitialMetadata().end())
      returned->assign(it->second.data(), it->second.size());
  }
  return status;
}

std::string TraceIdOf(const std::string& traceparent) {
  const std::optional<trace::TraceContext> c = trace::Parse(traceparent);
  REQUIRE(c.has_value());
  return c->TraceIdHex();
}

TEST_CASE(
    "trace: one trace_id follows a call through the gateway, the service and the consumers "
    "of its events") {
  testing::TempDir dir;
  CrmSystem::Options o;
  o.data_root = dir.path();
  o.access_log = true;
  for (const std::string& name : CrmSystem::Names()) o.extra[name] = {"--log_level=debug"};
  CrmSystem system(o);
  REQUIRE_OK(system.Start());
  auto profiles = v1::CustomerProfileService::NewStub(system.gateway());
  auto orders = v1::OrderTrackingService::NewStub(system.gateway());
  const std::string admin = system.Token("admin", "ops-1");
  const std::string storefront = system.Token("service", "storefront");

  // Registration, in a trace the client started.
  const trace::TraceContext registration = trace::NewTrace();
  v1::RegisterCustomerRequest reg;
  reg.set_request_id("reg-trace");
  reg.set_email("trace.shopper@example.com");
  v1::Customer customer;
  std::string returned;
  REQUIRE(ThroughGateway(profiles.get(), &v1::CustomerProfileService::Stub::RegisterCustomer, admin,
                         trace::Format(registration), reg, &customer, &returned)
              .ok());
  const std::string registered = registration.TraceIdHex();
  CHECK(TraceIdOf(returned) == registered);
  CHECK(Logs(system, "gateway", registered,
             {"\"message\":\"call\"", "/crm.v1.CustomerProfileService/RegisterCustomer"}));
  CHECK(Logs(system, "customer-profile", registered,
             {"\"message\":\"call handled\"", "/crm.v1.CustomerProfileService/RegisterCustomer",
              "\"code\":\"OK\""}));
  // The service's check of its caller logs the admin's call before the handler runs: in the trace.
  CHECK(Logs(system, "customer-profile", registered,
             {"\"message\":\"admin call\"", "/crm.v1.CustomerProfileService/RegisterCustomer"}));

  // An order placed in one trace and delivered in another: each event is applied by its
  // consumers in the trace of the call that wrote it.
  const trace::TraceContext checkout = trace::NewTrace(), delivery = trace::NewTrace();
  v1::AddAddressRequest add;
  add.set_customer_id(customer.customer_id());
  add.set_request_id("address-trace");
  add.mutable_address()->set_recipient_name("Li Na");
  add.mutable_address()->set_city("Hangzhou");
  add.mutable_address()->set_street("1 West Lake Road");
  v1::Address address;
  REQUIRE(ThroughGateway(profiles.get(), &v1::CustomerProfileService::Stub::AddAddress, admin,
                         trace::Format(trace::NewTrace()), add, &address)
              .ok());
  const v1::CreateOrderRequest create = testing::CashOnDeliveryOrderRequest(
      customer.customer_id(), "o-trace", "sku-1", "phones", 100'00, absl::Now(), absl::Hours(48));
  v1::Order order;
  const grpc::Status created =
      ThroughGateway(orders.get(), &v1::OrderTrackingService::Stub::CreateOrder, storefront,
                     trace::Format(checkout), create, &order);
  INFO(created.error_message());
  REQUIRE(created.ok());
  const auto process = testing::AboutOrder<v1::ProcessOrderRequest>(order);
  REQUIRE(ThroughGateway(orders.get(), &v1::OrderTrackingService::Stub::ProcessOrder, storefront,
                         trace::Format(trace::NewTrace()), process, &order)
              .ok());
  for (auto status : testing::kWarehouseToDoor) {
    const v1::AdvancePackageRequest advance = testing::AdvanceRequest(
        order, order.packages(0).package_id(), status, {"sf-express", "SF-TRACE-1"});
    const std::string traceparent =
        trace::Format(status == v1::PACKAGE_STATUS_DELIVERED ? delivery : trace::NewTrace());
    REQUIRE(ThroughGateway(orders.get(), &v1::OrderTrackingService::Stub::AdvancePackage,
                           storefront, traceparent, advance, &order)
                .ok());
  }
  const std::string placed = checkout.TraceIdHex(), delivered = delivery.TraceIdHex();
  CHECK(Logs(system, "gateway", placed, {"/crm.v1.OrderTrackingService/CreateOrder"}));
  CHECK(Logs(system, "order-tracking", placed,
             {"\"message\":\"call handled\"", "/crm.v1.OrderTrackingService/CreateOrder"}));
  // OrderPlaced: customer-profile's insights take it.
  CHECK(Logs(system, "customer-profile", placed,
             {"\"message\":\"event applied\"", "\"type\":\"order_placed\""}));
  // OrderDelivered: loyalty, recommendation, complaint-ticket and customer-profile take it.
  CHECK(Logs(system, "order-tracking", delivered, {"/crm.v1.OrderTrackingService/AdvancePackage"}));
  for (const char* consumer :
       {"loyalty", "recommendation", "complaint-ticket", "customer-profile"}) {
    INFO(consumer);
    CHECK(Logs(system, consumer, delivered,
               {"\"message\":\"event applied\"", "\"type\":\"order_delivered\"",
                "\"result\":\"applied\""}));
  }
  // A trace's lines name only that trace: no other process wrote the registration's trace.
  for (const char* other : {"order-tracking", "loyalty", "recommendation", "complaint-ticket"}) {
    INFO(other);
    CHECK(LinesOf(system, other, registered).empty());
  }

  // Without a traceparent the gateway starts a trace, returns it, and the service logs it; a
  // malformed one is no error, and gets a trace of its own too.
  for (const std::string& sent :
       {std::string(), std::string("00-") + registered + "-0000000000000000-01",
        std::string("not-a-traceparent")}) {
    INFO("traceparent \"" << sent << "\"");
    v1::GetCustomerRequest get;
    get.set_customer_id(customer.customer_id());
    v1::Customer read;
    std::string answered;
    REQUIRE(ThroughGateway(profiles.get(), &v1::CustomerProfileService::Stub::GetCustomer, admin,
                           sent, get, &read, &answered)
                .ok());
    const std::string started_by_gateway = TraceIdOf(answered);
    CHECK(started_by_gateway != registered);
    CHECK(Logs(system, "gateway", started_by_gateway,
               {"\"message\":\"call\"", "/crm.v1.CustomerProfileService/GetCustomer"}));
    CHECK(Logs(system, "customer-profile", started_by_gateway,
               {"\"message\":\"call handled\"", "/crm.v1.CustomerProfileService/GetCustomer"}));
  }
}

}  // namespace
}  // namespace crm
