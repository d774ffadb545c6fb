// Structured errors (AIP-193): what rpc::ToGrpc puts in every error's grpc-status-details-bin, and
// what a gRPC C++ client decodes from real services answering directly: ErrorInfo with a stable
// reason, BadRequest naming the field, PreconditionFailure for a state that forbids the change;
// the message is the service's own, byte for byte.
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "google/rpc/error_details.pb.h"
#include "libs/base/error_reason.h"
#include "libs/rpc/status.h"
#include "services/customer_profile/customer_profile_component.h"
#include "services/gateway/web_protocol.h"
#include "services/loyalty/loyalty_component.h"
#include "services/order_tracking/order_tracking_component.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"
#include "tests/support/shop_calls.h"

namespace crm {
namespace {

using google::rpc::BadRequest;
using google::rpc::ErrorInfo;
using google::rpc::PreconditionFailure;
using google::rpc::RetryInfo;
using rpc::FindDetail;

google::rpc::Status ModelOf(const grpc::Status& status) {
  google::rpc::Status model;
  REQUIRE(model.ParseFromString(status.error_details()));
  return model;
}

// `s` carries an ErrorInfo with `reason`, in the API's domain, naming `field`.
void CheckErrorInfo(const grpc::Status& s, const std::string& reason, const std::string& field) {
  const auto info = FindDetail<ErrorInfo>(s);
  REQUIRE(info.has_value());
  CHECK(info->reason() == reason);
  CHECK(info->domain() == "crm.v1");
  CHECK(info->metadata().at("field") == field);
}

TEST_CASE("error details: INVALID_ARGUMENT names its field in ErrorInfo and BadRequest") {
  const std::string message = "email: must contain exactly one '@' (got \"李娜\")";
  const grpc::Status s = rpc::ToGrpc(absl::InvalidArgumentError(message));
  CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(s.error_message() == message);
  const google::rpc::Status model = ModelOf(s);
  CHECK(model.code() == 3);
  CHECK(model.message() == message);  // clients that read the details see the same words
  REQUIRE(model.details_size() == 2);
  CHECK(model.details(0).type_url() == "type.googleapis.com/google.rpc.ErrorInfo");
  CHECK(model.details(1).type_url() == "type.googleapis.com/google.rpc.BadRequest");
  CheckErrorInfo(s, "INVALID_ARGUMENT", "email");
  const auto bad = FindDetail<BadRequest>(s);
  REQUIRE(bad.has_value());
  REQUIRE(bad->field_violations_size() == 1);
  CHECK(bad->field_violations(0).field() == "email");
  CHECK(bad->field_violations(0).description() == "must contain exactly one '@' (got \"李娜\")");
}

TEST_CASE("error details: the field is what the message names first, where the code means one") {
  CHECK(rpc::FieldOf("items[0].item_id: the order has no item \"9\"") == "items[0].item_id");
  // Not fields: headers, file paths, the request or body as a whole, the storage engine.
  CHECK(rpc::FieldOf("x-request-id: must be 1-128 characters") == "");
  CHECK(rpc::FieldOf("/etc/crm/rules.textproto: line 3") == "");
  CHECK(rpc::FieldOf("request: does not parse as crm.v1.GetCustomerRequest") == "");
  CHECK(rpc::FieldOf("body: not valid JSON") == "");
  CHECK(rpc::FieldOf("rocksdb: Invalid argument") == "");
  CHECK(rpc::FieldOf("Email: capitalised") == "");
  CHECK(rpc::FieldOf("items[x].sku: bad index") == "");
  CHECK(rpc::FieldOf("items[12].sku: too long") == "items[12].sku");
  CHECK(rpc::FieldOf("rate limit of 1 requests/s for role customer exceeded") == "");
  CHECK(rpc::FieldOf("no such method: the path names no crm.v1 method") == "");
  CHECK(rpc::FieldOf("/crm.v1.X/Y is a server stream: use gRPC") == "");
  CHECK(rpc::FieldOf(": nothing before") == "");
  CHECK(rpc::FieldOf("email:no space") == "");
  // An INVALID_ARGUMENT without a field has ErrorInfo only; UNAVAILABLE names a service, not a
  // field.
  CHECK(ModelOf(rpc::ToGrpc(absl::InvalidArgumentError("no field here"))).details_size() == 1);
  const auto info =
      FindDetail<ErrorInfo>(rpc::ToGrpc(absl::UnavailableError("loyalty: connection refused")));
  REQUIRE(info.has_value());
  CHECK(info->reason() == "UNAVAILABLE");
  CHECK(info->metadata().empty());
  // OK carries nothing.
  CHECK(rpc::ToGrpc(absl::OkStatus()).error_details().empty());
}

TEST_CASE("error details: a reason, a precondition and a retry delay survive the round trip") {
  const absl::Status closed =
      WithReason(absl::FailedPreconditionError("items[0].item_id: the return window ended"),
                 kReasonReturnWindowClosed);
  const grpc::Status s = rpc::ToGrpc(closed);
  CHECK(FindDetail<ErrorInfo>(s)->reason() == "RETURN_WINDOW_CLOSED");
  const auto failure = FindDetail<PreconditionFailure>(s);
  REQUIRE(failure.has_value());
  REQUIRE(failure->violations_size() == 1);
  CHECK(failure->violations(0).type() == "RETURN_WINDOW_CLOSED");
  CHECK(failure->violations(0).subject() == "items[0].item_id");
  CHECK(failure->violations(0).description() == "the return window ended");
  CHECK_FALSE(FindDetail<BadRequest>(s).has_value());
  // A caller of the service acts on the reason, as it would inside the service.
  const absl::Status back = rpc::FromGrpc(s);
  CHECK(back == closed);
  CHECK(HasReason(back, kReasonReturnWindowClosed));

  const absl::Status limited = rpc::WithRetryDelay(
      WithReason(absl::ResourceExhaustedError("rate limit exceeded"), kReasonRateLimited),
      absl::Milliseconds(1250));
  const grpc::Status r = rpc::ToGrpc(limited);
  const auto retry = FindDetail<RetryInfo>(r);
  REQUIRE(retry.has_value());
  CHECK(retry->retry_delay().seconds() == 1);
  CHECK(retry->retry_delay().nanos() == 250000000);
  CHECK(rpc::RetryDelayOf(rpc::FromGrpc(r)) == absl::Milliseconds(1250));
  CHECK(HasReason(rpc::FromGrpc(r), kReasonRateLimited));
  // A storage engine's verdict stays in its process: another would take it for its own.
  const grpc::Status engine =
      rpc::ToGrpc(WithReason(absl::AbortedError("store: busy"), kReasonStorageEngine));
  CHECK(FindDetail<ErrorInfo>(engine)->reason() == "ABORTED");
  CHECK_FALSE(HasReason(rpc::FromGrpc(engine), kReasonStorageEngine));
  // Details from another domain keep their reason to themselves.
  google::rpc::Status foreign = ModelOf(rpc::ToGrpc(closed));
  ErrorInfo other;
  other.set_reason("SOMETHING_ELSE");
  other.set_domain("example.com");
  foreign.mutable_details(0)->PackFrom(other);
  const grpc::Status from_elsewhere(grpc::StatusCode::FAILED_PRECONDITION, "x: y",
                                    foreign.SerializeAsString());
  CHECK_FALSE(HasReason(rpc::FromGrpc(from_elsewhere), "SOMETHING_ELSE"));
}

TEST_CASE("error details: as Connect's JSON error and gRPC-Web's trailers write them") {
  const grpc::Status s = rpc::ToGrpc(absl::InvalidArgumentError("email: is required"));
  const google::rpc::Status model = ModelOf(s);
  std::vector<gateway::ErrorDetail> details;
  for (const auto& any : model.details()) details.push_back({"google.rpc.X", any.value(), ""});
  details[1].debug_json = R"({"fieldViolations":[]})";
  const std::string json = gateway::ConnectErrorJson(3, s.error_message(), details);
  // Values are standard base64 without padding; "debug" is there only when given.
  const std::string first = gateway::EncodeBinaryHeader(model.details(0).value());
  const std::string second = gateway::EncodeBinaryHeader(model.details(1).value());
  CHECK(first.find('=') == std::string::npos);
  CHECK(json == absl::StrCat(R"({"code":"invalid_argument","message":"email: is required",)",
                             R"("details":[{"type":"google.rpc.X","value":")", first, R"("},)",
                             R"({"type":"google.rpc.X","value":")", second,
                             R"(","debug":{"fieldViolations":[]}}]})"));
  CHECK(gateway::ConnectEndStreamJson(3, "x", details) ==
        absl::StrCat(R"({"error":)", gateway::ConnectErrorJson(3, "x", details), "}"));
  CHECK(gateway::GrpcWebTrailers(3, "email: is required", s.error_details()) ==
        absl::StrCat("grpc-status: 3\r\ngrpc-message: email: is required\r\n",
                     "grpc-status-details-bin: ", gateway::EncodeBinaryHeader(s.error_details()),
                     "\r\n"));
  // Binary headers decode padded or not, and refuse what is not base64.
  for (const std::string& bytes : {std::string("a"), std::string("ab"), std::string("abc")}) {
    CHECK(gateway::DecodeBinaryHeader(gateway::EncodeBinaryHeader(bytes)) == bytes);
    CHECK(gateway::DecodeBinaryHeader(absl::Base64Escape(bytes)) == bytes);
  }
  CHECK_FALSE(gateway::DecodeBinaryHeader("not base64!").has_value());
}

using ProfileHarness = testing::ServiceHarness<customer_profile::CustomerProfileComponent>;
using OrderHarness = testing::ServiceHarness<order_tracking::OrderTrackingComponent>;
using LoyaltyHarness = testing::ServiceHarness<loyalty::LoyaltyComponent>;

TEST_CASE("error details: a data service's errors carry them in grpc-status-details-bin") {
  ProfileHarness profile(ProfileHarness::Options{});
  auto profiles = v1::CustomerProfileService::NewStub(profile.channel());
  v1::RegisterCustomerRequest reg;
  reg.set_request_id("reg-bad");
  reg.set_email("not-an-email");
  v1::Customer customer;
  const grpc::Status bad = testing::Call(
      profiles.get(), &v1::CustomerProfileService::Stub::RegisterCustomer, reg, &customer);
  testing::RequireError(bad, grpc::StatusCode::INVALID_ARGUMENT, "email: ");
  CHECK(ModelOf(bad).message() == bad.error_message());
  CHECK(FindDetail<ErrorInfo>(bad)->reason() == "INVALID_ARGUMENT");
  const auto violations = FindDetail<BadRequest>(bad);
  REQUIRE(violations.has_value());
  CHECK(violations->field_violations(0).field() == "email");
  CHECK(absl::StrCat("email: ", violations->field_violations(0).description()) ==
        bad.error_message());

  // order-tracking refuses a return after the item's window (the window depends on the membership
  // loyalty keeps): the reason it attached inside the service reaches the client, as
  // ErrorInfo.reason and as the precondition's type.
  LoyaltyHarness::Options lo;
  lo.backends = {{"customer-profile", testing::LoopbackAddress(profile.port())}};
  LoyaltyHarness loyalty_service(lo);
  OrderHarness::Options oo;
  oo.backends = {{"customer-profile", testing::LoopbackAddress(profile.port())},
                 {"loyalty", testing::LoopbackAddress(loyalty_service.port())}};
  OrderHarness orders(oo);
  auto order_stub = v1::OrderTrackingService::NewStub(orders.channel());
  const std::string customer_id = testing::RegisterCustomer(profiles.get(), "wei@example.com");
  testing::AddAddress(profiles.get(), customer_id, "addr-1", "Wei", "Chengdu", "Tianfu Ave 1");
  const absl::Time now = orders.clock().Now();
  const v1::Order placed =
      testing::PlaceCashOnDeliveryOrder(order_stub.get(), customer_id, "sku-kettle", "home", 19900,
                                        now + absl::Hours(24), absl::Hours(4));
  const v1::Order delivered =
      testing::ShipAndDeliver(order_stub.get(), placed, "SF Express", "SF100200300");
  orders.clock().Advance(absl::Hours(24) * 400);
  const v1::RequestReturnRequest ret =
      testing::OneItemReturnRequest(customer_id, delivered.order_id(), "ret-1",
                                    delivered.items(0).item_id(), "too small", v1::FAULT_CUSTOMER);
  v1::Return refused_return;
  const grpc::Status late = testing::Call(
      order_stub.get(), &v1::OrderTrackingService::Stub::RequestReturn, ret, &refused_return);
  testing::RequireError(late, grpc::StatusCode::FAILED_PRECONDITION, "items[0].item_id: ");
  CheckErrorInfo(late, "RETURN_WINDOW_CLOSED", "items[0].item_id");
  const auto failure = FindDetail<PreconditionFailure>(late);
  REQUIRE(failure.has_value());
  CHECK(failure->violations(0).type() == "RETURN_WINDOW_CLOSED");
  CHECK(failure->violations(0).subject() == "items[0].item_id");
  CHECK(absl::StrCat("items[0].item_id: ", failure->violations(0).description()) ==
        late.error_message());
}

}  // namespace
TEST_CASE(
    "error details: a long message keeps its details within the trailer budget, code and "
    "message intact") {
  const std::string message = "email: " + std::string(2000, 'x');
  const grpc::Status s = rpc::ToGrpc(absl::InvalidArgumentError(message));
  CHECK(s.error_message() == message);
  // The message once in grpc-message, the details base64: within 6 KiB, ErrorInfo still there.
  CHECK(message.size() + (s.error_details().size() + 2) / 3 * 4 <= 6 * 1024);
  const auto info = FindDetail<ErrorInfo>(s);
  REQUIRE(info.has_value());
  CHECK(info->metadata().at("field") == "email");
  // The message twice more (the descriptions) would not fit: they are left out.
  const auto bad = FindDetail<BadRequest>(s);
  REQUIRE(bad.has_value());
  CHECK(bad->field_violations(0).description().empty());
  // Far too long for any details: code and message alone.
  const grpc::Status huge = rpc::ToGrpc(absl::InvalidArgumentError(std::string(7000, 'y')));
  CHECK(huge.error_details().empty());
  CHECK(huge.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace crm
