// crm.v1.CustomerProfileService end to end: a real server on a free loopback port, a real RocksDB
// in a temp dir, calls through the generated gRPC stub.
#include <functional>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "catch2/catch.hpp"
#include "crm/v1/admin.grpc.pb.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "google/protobuf/text_format.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "libs/api/validate.h"
#include "services/customer_profile/customer_profile_component.h"
#include "tests/support/grpc_probe.h"
#include "tests/support/http.h"
#include "tests/support/metrics_page.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"

namespace crm::customer_profile {
namespace {

using Harness = testing::ServiceHarness<CustomerProfileComponent>;
using Stub = v1::CustomerProfileService::Stub;

Harness::Options ProfileOptions(bool serve_metrics = false) {
  Harness::Options o;
  o.serve_metrics = serve_metrics;
  return o;
}

struct Client {
  explicit Client(Harness& h)
      : harness(h), stub(v1::CustomerProfileService::NewStub(h.channel())) {}
  void Reconnect() { stub = v1::CustomerProfileService::NewStub(harness.channel()); }

  template <typename Req, typename Resp>
  grpc::Status Call(grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                    const Req& req, Resp* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return (stub.get()->*method)(&ctx, req, resp);
  }

  v1::Customer Register(const std::string& email, const std::string& request_id = "") {
    v1::RegisterCustomerRequest req;
    req.set_request_id(request_id.empty() ? "reg-" + email : request_id);
    req.set_email(email);
    v1::Customer c;
    const grpc::Status s = Call(&Stub::RegisterCustomer, req, &c);
    INFO(s.error_message());
    REQUIRE(s.ok());
    return c;
  }

  v1::Customer Get(const std::string& id, grpc::Status* status = nullptr) {
    v1::GetCustomerRequest req;
    req.set_customer_id(id);
    v1::Customer c;
    grpc::Status s = Call(&Stub::GetCustomer, req, &c);
    if (status != nullptr)
      *status = s;
    else
      REQUIRE(s.ok());
    return c;
  }

  Harness& harness;
  std::unique_ptr<Stub> stub;
};

// Asserts the call failed with `code` and a message that starts with the field name.
using testing::RequireError;

// A message written in protobuf text format (the test fails if it does not parse).
template <typename Message>
Message FromText(const std::string& text) {
  Message m;
  INFO(text);
  REQUIRE(google::protobuf::TextFormat::ParseFromString(text, &m));
  return m;
}

v1::Address HomeAddress() {
  v1::Address a;
  a.set_recipient_name("李娜");
  a.set_phone("+8613800138000");
  a.set_country_code("CN");
  a.set_province("广东");
  a.set_city("深圳");
  a.set_district("南山区");
  a.set_street("科技园路1号");
  a.set_postal_code("518057");
  a.set_label("home");
  return a;
}

v1::BehaviorEvent Click(const std::string& category) {
  v1::BehaviorEvent e;
  e.set_type(v1::BEHAVIOR_EVENT_TYPE_CATEGORY_CLICK);
  e.set_category(category);
  return e;
}

TEST_CASE("register with an email only, then read it back", "[customer_profile]") {
  Harness h(ProfileOptions());
  Client client(h);
  v1::RegisterCustomerRequest req;
  req.set_request_id("r1");
  req.set_email("  Zhang.Wei@Example.com ");
  req.set_name("张伟");
  req.set_phone("+8613912345678");
  req.mutable_birthday()->set_year(1988);
  req.mutable_birthday()->set_month(8);
  req.mutable_birthday()->set_day(8);
  v1::Customer created;
  REQUIRE(client.Call(&Stub::RegisterCustomer, req, &created).ok());
  CHECK(created.email() == "zhang.wei@example.com");
  CHECK_FALSE(created.customer_id().empty());
  CHECK(created.has_create_time());

  const v1::Customer got = client.Get(created.customer_id());
  CHECK(got.name() == "张伟");
  CHECK(got.birthday().day() == 8);

  v1::GetCustomerByEmailRequest by_email;
  by_email.set_email("ZHANG.WEI@example.com");
  v1::Customer found;
  REQUIRE(client.Call(&Stub::GetCustomerByEmail, by_email, &found).ok());
  CHECK(found.customer_id() == created.customer_id());
}

TEST_CASE(
    "a retried registration returns the same customer, another request for the email is refused",
    "[customer_profile][idempotency]") {
  Harness h(ProfileOptions());
  Client client(h);
  const v1::Customer first = client.Register("a@example.com", "same-id");
  const v1::Customer retry = client.Register("a@example.com", "same-id");
  CHECK(retry.customer_id() == first.customer_id());

  v1::RegisterCustomerRequest other;
  other.set_request_id("different");
  other.set_email("A@EXAMPLE.COM");
  v1::Customer c;
  RequireError(client.Call(&Stub::RegisterCustomer, other, &c), grpc::StatusCode::ALREADY_EXISTS,
               "email:");
}

TEST_CASE("concurrent registrations of one email create exactly one customer",
          "[customer_profile][idempotency]") {
  Harness h(ProfileOptions());
  Client client(h);
  std::atomic<int> created{0}, refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto stub = v1::CustomerProfileService::NewStub(h.channel());
      grpc::ClientContext ctx;
      v1::RegisterCustomerRequest req;
      req.set_request_id("race-" + std::to_string(i));
      req.set_email("race@example.com");
      v1::Customer c;
      const grpc::Status s = stub->RegisterCustomer(&ctx, req, &c);
      if (s.ok())
        ++created;
      else if (s.error_code() == grpc::StatusCode::ALREADY_EXISTS)
        ++refused;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(created == 1);
  CHECK(refused == 7);
}

TEST_CASE("registration input is validated field by field and nothing is written",
          "[customer_profile][validation]") {
  Harness h(ProfileOptions());
  Client client(h);
  auto reg = [&](v1::RegisterCustomerRequest req) {
    v1::Customer c;
    return client.Call(&Stub::RegisterCustomer, req, &c);
  };
  v1::RegisterCustomerRequest base;
  base.set_request_id("r");
  base.set_email("ok@example.com");

  auto missing_email = base;
  missing_email.clear_email();
  RequireError(reg(missing_email), grpc::StatusCode::INVALID_ARGUMENT, "email:");
  auto bad_email = base;
  bad_email.set_email("not-an-email");
  RequireError(reg(bad_email), grpc::StatusCode::INVALID_ARGUMENT, "email:");
  auto no_request_id = base;
  no_request_id.clear_request_id();
  RequireError(reg(no_request_id), grpc::StatusCode::INVALID_ARGUMENT, "request_id:");
  auto bad_phone = base;
  bad_phone.set_phone("12345");
  RequireError(reg(bad_phone), grpc::StatusCode::INVALID_ARGUMENT, "phone:");
  auto bad_birthday = base;
  bad_birthday.mutable_birthday()->set_year(2001);
  bad_birthday.mutable_birthday()->set_month(2);
  bad_birthday.mutable_birthday()->set_day(29);
  RequireError(reg(bad_birthday), grpc::StatusCode::INVALID_ARGUMENT, "birthday:");
  auto long_name = base;
  long_name.set_name(std::string(101, 'x'));
  RequireError(reg(long_name), grpc::StatusCode::INVALID_ARGUMENT, "name:");
  auto control = base;
  control.set_name(std::string("a\x01", 2));
  RequireError(reg(control), grpc::StatusCode::INVALID_ARGUMENT, "name:");

  // None of the refused calls left anything behind: the email is still free.
  const v1::Customer c = client.Register("ok@example.com");
  CHECK(c.email() == "ok@example.com");
}

TEST_CASE("invalid UTF-8 in a text field is refused naming the field",
          "[customer_profile][validation]") {
  Harness h(ProfileOptions());
  Client client(h);
  const v1::Customer c = client.Register("utf8@example.com");
  // Sent as raw bytes, as a client with a bug would: protobuf refuses to parse invalid UTF-8 in a
  // proto3 string, and the server turns that into INVALID_ARGUMENT naming the field.
  v1::UpdateCustomerRequest req;
  req.set_customer_id(c.customer_id());
  req.mutable_update_mask()->add_paths("name");
  req.mutable_customer()->set_name("placeholder");
  std::string bytes = req.SerializeAsString();
  const size_t at = bytes.find("placeholder");
  REQUIRE(at != std::string::npos);
  bytes[at] = '\xC3';
  bytes[at + 1] = '\x28';
  grpc::GenericStub generic(h.channel());
  grpc::ClientContext ctx;
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1), response;
  grpc::Status status;
  absl::Notification done;
  generic.UnaryCall(&ctx, "/crm.v1.CustomerProfileService/UpdateCustomer", grpc::StubOptions(),
                    &request, &response, [&](grpc::Status s) {
                      status = s;
                      done.Notify();
                    });
  done.WaitForNotification();
  RequireError(status, grpc::StatusCode::INVALID_ARGUMENT, "customer.name:");
  CHECK(client.Get(c.customer_id()).name().empty());
}

TEST_CASE("unknown customers answer NOT_FOUND", "[customer_profile]") {
  Harness h(ProfileOptions());
  Client client(h);
  grpc::Status s;
  client.Get("c-nobody", &s);
  RequireError(s, grpc::StatusCode::NOT_FOUND, "customer_id:");
  client.Get("", &s);
  RequireError(s, grpc::StatusCode::INVALID_ARGUMENT, "customer_id:");
  v1::AddAddressRequest add;
  add.set_customer_id("c-nobody");
  add.set_request_id("r");
  *add.mutable_address() = HomeAddress();
  v1::Address a;
  RequireError(client.Call(&Stub::AddAddress, add, &a), grpc::StatusCode::NOT_FOUND,
               "customer_id:");
}

TEST_CASE(
    "every call that names a customer refuses a missing id and answers NOT_FOUND for an unknown "
    "one",
    "[customer_profile][validation]") {
  Harness h(ProfileOptions());
  Client client(h);
  // One well-formed request per method; only customer_id varies.
  auto check = [&]<typename Req, typename Resp>(
                   grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*), Req r) {
    INFO(Req::descriptor()->name());
    Resp out;
    r.set_customer_id("");
    RequireError(client.Call(method, r, &out), grpc::StatusCode::INVALID_ARGUMENT, "customer_id:");
    r.set_customer_id("c-unknown");
    RequireError(client.Call(method, r, &out), grpc::StatusCode::NOT_FOUND, "customer_id:");
  };
  check(&Stub::GetCustomer, v1::GetCustomerRequest());
  check(&Stub::UpdateCustomer,
        FromText<v1::UpdateCustomerRequest>(R"(update_mask { paths: "name" })"));
  v1::AddAddressRequest add = FromText<v1::AddAddressRequest>(R"(request_id: "x")");
  *add.mutable_address() = HomeAddress();
  check(&Stub::AddAddress, add);
  check(&Stub::UpdateAddress,
        FromText<v1::UpdateAddressRequest>(
            R"(address { address_id: "a1" } update_mask { paths: "label" })"));
  check(&Stub::RemoveAddress, FromText<v1::RemoveAddressRequest>(R"(address_id: "a1")"));
  check(&Stub::SetDefaultAddress, FromText<v1::SetDefaultAddressRequest>(R"(address_id: "a1")"));
  check(&Stub::AddPaymentMethod,
        FromText<v1::AddPaymentMethodRequest>(
            R"(request_id: "x" payment_method { type: PAYMENT_METHOD_TYPE_ACCOUNT_BALANCE })"));
  check(&Stub::RemovePaymentMethod,
        FromText<v1::RemovePaymentMethodRequest>(R"(payment_method_id: "pm1")"));
  check(&Stub::SetDefaultPaymentMethod,
        FromText<v1::SetDefaultPaymentMethodRequest>(R"(payment_method_id: "pm1")"));
  check(&Stub::UpdatePreferences,
        FromText<v1::UpdatePreferencesRequest>(R"(update_mask { paths: "language" })"));
  check(&Stub::SetMarketingConsent,
        FromText<v1::SetMarketingConsentRequest>(R"(channel: CHANNEL_SMS)"));
  check(&Stub::GetContactPermission,
        FromText<v1::GetContactPermissionRequest>(R"(channel: CHANNEL_SMS)"));
  check(&Stub::RequestContact, FromText<v1::RequestContactRequest>(
                                   R"(request_id: "x" channel: CHANNEL_SMS purpose: "test")"));
  v1::RecordBehaviorEventsRequest record =
      FromText<v1::RecordBehaviorEventsRequest>(R"(request_id: "x")");
  *record.add_events() = Click("c");
  check(&Stub::RecordBehaviorEvents, record);
  check(&Stub::ListBehaviorEvents, v1::ListBehaviorEventsRequest());
  check(&Stub::GetCategoryAffinity, v1::GetCategoryAffinityRequest());
  check(&Stub::ExportCustomerData, v1::ExportCustomerDataRequest());
  check(&Stub::EraseCustomer, FromText<v1::EraseCustomerRequest>(R"(request_id: "x")"));
}

TEST_CASE("update changes only the masked fields and refuses other paths",
          "[customer_profile][update]") {
  Harness h(ProfileOptions());
  Client client(h);
  const v1::Customer c = client.Register("u@example.com");
  v1::UpdateCustomerRequest req;
  req.set_customer_id(c.customer_id());
  req.mutable_customer()->set_name("Wang Fang");
  req.mutable_customer()->set_phone("+8613700000000");
  req.mutable_update_mask()->add_paths("name");
  v1::Customer updated;
  REQUIRE(client.Call(&Stub::UpdateCustomer, req, &updated).ok());
  CHECK(updated.name() == "Wang Fang");
  CHECK(updated.phone().empty());
  CHECK(client.Get(c.customer_id()).name() == "Wang Fang");

  req.mutable_update_mask()->add_paths("email");
  RequireError(client.Call(&Stub::UpdateCustomer, req, &updated),
               grpc::StatusCode::INVALID_ARGUMENT, "update_mask:");
  req.clear_update_mask();
  RequireError(client.Call(&Stub::UpdateCustomer, req, &updated),
               grpc::StatusCode::INVALID_ARGUMENT, "update_mask:");
  req.mutable_update_mask()->add_paths("phone");
  req.mutable_customer()->set_phone("555");
  RequireError(client.Call(&Stub::UpdateCustomer, req, &updated),
               grpc::StatusCode::INVALID_ARGUMENT, "customer.phone:");
  CHECK(client.Get(c.customer_id()).phone().empty());
}

TEST_CASE("addresses: add, update, set default, remove", "[customer_profile][address]") {
  Harness h(ProfileOptions());
  Client client(h);
  const v1::Customer c = client.Register("addr@example.com");
  v1::AddAddressRequest add;
  add.set_customer_id(c.customer_id());
  add.set_request_id("add-1");
  *add.mutable_address() = HomeAddress();
  v1::Address home;
  REQUIRE(client.Call(&Stub::AddAddress, add, &home).ok());
  CHECK_FALSE(home.address_id().empty());
  v1::Address retry;
  REQUIRE(client.Call(&Stub::AddAddress, add, &retry).ok());
  CHECK(retry.address_id() == home.address_id());

  add.set_request_id("add-2");
  add.mutable_address()->set_label("office");
  v1::Address office;
  REQUIRE(client.Call(&Stub::AddAddress, add, &office).ok());
  v1::Customer now = client.Get(c.customer_id());
  CHECK(now.addresses_size() == 2);
  CHECK(now.default_address_id() == home.address_id());

  v1::SetDefaultAddressRequest set_default;
  set_default.set_customer_id(c.customer_id());
  set_default.set_address_id(office.address_id());
  REQUIRE(client.Call(&Stub::SetDefaultAddress, set_default, &now).ok());
  CHECK(now.default_address_id() == office.address_id());

  v1::UpdateAddressRequest update;
  update.set_customer_id(c.customer_id());
  update.mutable_address()->set_address_id(home.address_id());
  update.mutable_address()->set_street("深南大道100号");
  update.mutable_update_mask()->add_paths("street");
  v1::Address updated;
  REQUIRE(client.Call(&Stub::UpdateAddress, update, &updated).ok());
  CHECK(updated.street() == "深南大道100号");
  CHECK(updated.city() == "深圳");

  v1::RemoveAddressRequest remove;
  remove.set_customer_id(c.customer_id());
  remove.set_address_id(office.address_id());
  google::protobuf::Empty empty;
  REQUIRE(client.Call(&Stub::RemoveAddress, remove, &empty).ok());
  now = client.Get(c.customer_id());
  CHECK(now.addresses_size() == 1);
  CHECK(now.default_address_id() == home.address_id());
  RequireError(client.Call(&Stub::RemoveAddress, remove, &empty), grpc::StatusCode::NOT_FOUND,
               "address_id:");

  add.set_request_id("add-bad");
  add.mutable_address()->clear_city();
  RequireError(client.Call(&Stub::AddAddress, add, &home), grpc::StatusCode::INVALID_ARGUMENT,
               "address.city:");
  CHECK(client.Get(c.customer_id()).addresses_size() == 1);
}

TEST_CASE("payment preferences keep a token and hint, a card number is refused",
          "[customer_profile][payment]") {
  Harness h(ProfileOptions());
  Client client(h);
  const v1::Customer c = client.Register("pay@example.com");
  v1::AddPaymentMethodRequest add;
  add.set_customer_id(c.customer_id());
  add.set_request_id("pm-1");
  add.mutable_payment_method()->set_type(v1::PAYMENT_METHOD_TYPE_CARD);
  add.mutable_payment_method()->set_token("tok_unionpay_8f2c");
  add.mutable_payment_method()->set_last4("0004");
  add.mutable_payment_method()->set_brand("UnionPay");
  v1::PaymentMethod card;
  REQUIRE(client.Call(&Stub::AddPaymentMethod, add, &card).ok());

  add.set_request_id("pm-2");
  add.mutable_payment_method()->set_token("6212 2602 0000 0000 006");
  v1::PaymentMethod refused;
  RequireError(client.Call(&Stub::AddPaymentMethod, add, &refused),
               grpc::StatusCode::INVALID_ARGUMENT, "payment_method.token:");

  add.set_request_id("pm-3");
  add.clear_payment_method();
  add.mutable_payment_method()->set_type(v1::PAYMENT_METHOD_TYPE_CASH_ON_DELIVERY);
  v1::PaymentMethod cod;
  REQUIRE(client.Call(&Stub::AddPaymentMethod, add, &cod).ok());

  v1::Customer now = client.Get(c.customer_id());
  CHECK(now.payment_methods_size() == 2);
  CHECK(now.default_payment_method_id() == card.payment_method_id());
  for (const auto& m : now.payment_methods()) CHECK(m.token().find("6212") == std::string::npos);

  v1::SetDefaultPaymentMethodRequest set_default;
  set_default.set_customer_id(c.customer_id());
  set_default.set_payment_method_id(cod.payment_method_id());
  REQUIRE(client.Call(&Stub::SetDefaultPaymentMethod, set_default, &now).ok());
  CHECK(now.default_payment_method_id() == cod.payment_method_id());

  v1::RemovePaymentMethodRequest remove;
  remove.set_customer_id(c.customer_id());
  remove.set_payment_method_id(cod.payment_method_id());
  google::protobuf::Empty empty;
  REQUIRE(client.Call(&Stub::RemovePaymentMethod, remove, &empty).ok());
  now = client.Get(c.customer_id());
  CHECK(now.payment_methods_size() == 1);
  CHECK(now.default_payment_method_id() == card.payment_method_id());
}

TEST_CASE("preferences update by mask", "[customer_profile][preferences]") {
  Harness h(ProfileOptions());
  Client client(h);
  const v1::Customer c = client.Register("pref@example.com");
  v1::UpdatePreferencesRequest req;
  req.set_customer_id(c.customer_id());
  req.mutable_preferences()->mutable_preferred_delivery_window()->set_start_minute(18 * 60);
  req.mutable_preferences()->mutable_preferred_delivery_window()->set_end_minute(21 * 60);
  req.mutable_preferences()->set_language("zh-CN");
  (*req.mutable_preferences()->mutable_settings())["invoice_title"] = "深圳某某科技有限公司";
  req.mutable_update_mask()->add_paths("preferred_delivery_window");
  req.mutable_update_mask()->add_paths("language");
  req.mutable_update_mask()->add_paths("settings");
  v1::Preferences p;
  REQUIRE(client.Call(&Stub::UpdatePreferences, req, &p).ok());
  CHECK(p.language() == "zh-CN");
  CHECK(client.Get(c.customer_id()).preferences().settings().at("invoice_title") ==
        "深圳某某科技有限公司");

  req.mutable_preferences()->mutable_preferred_delivery_window()->set_end_minute(60);
  RequireError(client.Call(&Stub::UpdatePreferences, req, &p), grpc::StatusCode::INVALID_ARGUMENT,
               "preferences.preferred_delivery_window:");
  CHECK(client.Get(c.customer_id()).preferences().preferred_delivery_window().end_minute() ==
        21 * 60);
}

TEST_CASE("marketing consent and the contact cap are enforced for senders",
          "[customer_profile][consent]") {
  Harness h(ProfileOptions());
  Client client(h);
  const v1::Customer c = client.Register("mkt@example.com");
  v1::RequestContactRequest ask;
  ask.set_customer_id(c.customer_id());
  ask.set_channel(v1::CHANNEL_EMAIL);
  ask.set_purpose("recommendation-email");
  ask.set_request_id("send-0");
  v1::ContactDecision d;
  REQUIRE(client.Call(&Stub::RequestContact, ask, &d).ok());
  CHECK(d.reason() == v1::ContactDecision::REASON_NO_CONSENT);

  v1::SetMarketingConsentRequest consent;
  consent.set_customer_id(c.customer_id());
  consent.set_channel(v1::CHANNEL_EMAIL);
  consent.set_granted(true);
  consent.set_source("settings");
  v1::MarketingConsent mc;
  REQUIRE(client.Call(&Stub::SetMarketingConsent, consent, &mc).ok());
  CHECK(mc.granted());

  for (int i = 1; i <= 3; ++i) {
    ask.set_request_id("send-" + std::to_string(i));
    REQUIRE(client.Call(&Stub::RequestContact, ask, &d).ok());
    CHECK(d.allowed());
    CHECK(d.contacts_in_period() == i);
    h.clock().Advance(absl::Hours(1));
  }
  // A retry of an allowed request is the same answer, not a fourth contact.
  ask.set_request_id("send-3");
  REQUIRE(client.Call(&Stub::RequestContact, ask, &d).ok());
  CHECK(d.allowed());
  ask.set_request_id("send-4");
  REQUIRE(client.Call(&Stub::RequestContact, ask, &d).ok());
  CHECK(d.reason() == v1::ContactDecision::REASON_FREQUENCY_CAP);
  CHECK(d.has_next_allowed_time());

  v1::GetContactPermissionRequest peek;
  peek.set_customer_id(c.customer_id());
  peek.set_channel(v1::CHANNEL_EMAIL);
  REQUIRE(client.Call(&Stub::GetContactPermission, peek, &d).ok());
  CHECK_FALSE(d.allowed());
  h.clock().Advance(absl::Hours(24 * 7));
  REQUIRE(client.Call(&Stub::GetContactPermission, peek, &d).ok());
  CHECK(d.allowed());

  peek.set_channel(v1::CHANNEL_UNSPECIFIED);
  RequireError(client.Call(&Stub::GetContactPermission, peek, &d),
               grpc::StatusCode::INVALID_ARGUMENT, "channel:");
}

TEST_CASE("behaviour events build category affinity and list newest first",
          "[customer_profile][behavior]") {
  Harness h(ProfileOptions());
  Client client(h);
  const v1::Customer c = client.Register("browse@example.com");
  v1::RecordBehaviorEventsRequest req;
  req.set_customer_id(c.customer_id());
  req.set_request_id("batch-1");
  *req.add_events() = Click("phones");
  auto* view = req.add_events();
  view->set_type(v1::BEHAVIOR_EVENT_TYPE_ITEM_VIEW);
  view->set_category("phones");
  view->set_sku("sku-iphone");
  view->set_dwell_seconds(90);
  auto* skim = req.add_events();
  skim->set_type(v1::BEHAVIOR_EVENT_TYPE_ITEM_VIEW);
  skim->set_category("books");
  skim->set_sku("sku-novel");
  skim->set_dwell_seconds(2);
  auto* search = req.add_events();
  search->set_type(v1::BEHAVIOR_EVENT_TYPE_SEARCH);
  search->set_query("蓝牙耳机");
  v1::RecordBehaviorEventsResponse resp;
  REQUIRE(client.Call(&Stub::RecordBehaviorEvents, req, &resp).ok());
  CHECK(resp.recorded_count() == 4);
  // A retried batch is not counted twice.
  REQUIRE(client.Call(&Stub::RecordBehaviorEvents, req, &resp).ok());

  v1::GetCategoryAffinityRequest aff;
  aff.set_customer_id(c.customer_id());
  v1::GetCategoryAffinityResponse affinity;
  REQUIRE(client.Call(&Stub::GetCategoryAffinity, aff, &affinity).ok());
  REQUIRE(affinity.affinities_size() == 2);
  CHECK(affinity.affinities(0).category() == "phones");
  CHECK(affinity.affinities(0).clicks() == 1);
  CHECK(affinity.affinities(0).views() == 1);
  CHECK(affinity.affinities(0).engagement() == v1::ENGAGEMENT_LOOKED_CLOSELY);
  CHECK(affinity.affinities(1).engagement() == v1::ENGAGEMENT_FLIPPED_THROUGH);
  const double score_now = affinity.affinities(0).score();
  h.clock().Advance(absl::Hours(24 * 14));
  REQUIRE(client.Call(&Stub::GetCategoryAffinity, aff, &affinity).ok());
  CHECK(affinity.affinities(0).score() == Approx(score_now / 2));

  // Two more events later; the list is newest first and pages.
  v1::RecordBehaviorEventsRequest later;
  later.set_customer_id(c.customer_id());
  later.set_request_id("batch-2");
  *later.add_events() = Click("toys");
  REQUIRE(client.Call(&Stub::RecordBehaviorEvents, later, &resp).ok());
  v1::ListBehaviorEventsRequest list;
  list.set_customer_id(c.customer_id());
  list.set_page_size(3);
  v1::ListBehaviorEventsResponse page;
  REQUIRE(client.Call(&Stub::ListBehaviorEvents, list, &page).ok());
  REQUIRE(page.events_size() == 3);
  CHECK(page.events(0).category() == "toys");
  REQUIRE_FALSE(page.next_page_token().empty());
  list.set_page_token(page.next_page_token());
  REQUIRE(client.Call(&Stub::ListBehaviorEvents, list, &page).ok());
  CHECK(page.events_size() == 2);
  CHECK(page.next_page_token().empty());
}

TEST_CASE("behaviour batches are validated whole: one bad event rejects the batch",
          "[customer_profile][behavior]") {
  Harness h(ProfileOptions());
  Client client(h);
  const v1::Customer c = client.Register("bad-batch@example.com");
  v1::RecordBehaviorEventsRequest req;
  req.set_customer_id(c.customer_id());
  req.set_request_id("b");
  v1::RecordBehaviorEventsResponse resp;
  RequireError(client.Call(&Stub::RecordBehaviorEvents, req, &resp),
               grpc::StatusCode::INVALID_ARGUMENT, "events:");
  for (int i = 0; i < kMaxBehaviorEventsPerCall + 1; ++i) *req.add_events() = Click("c");
  RequireError(client.Call(&Stub::RecordBehaviorEvents, req, &resp),
               grpc::StatusCode::INVALID_ARGUMENT, "events:");
  req.clear_events();
  *req.add_events() = Click("ok");
  *req.add_events() = Click("");
  RequireError(client.Call(&Stub::RecordBehaviorEvents, req, &resp),
               grpc::StatusCode::INVALID_ARGUMENT, "events[1].category:");
  req.mutable_events(1)->set_category("ok");
  req.mutable_events(1)->set_type(v1::BEHAVIOR_EVENT_TYPE_ITEM_VIEW);
  RequireError(client.Call(&Stub::RecordBehaviorEvents, req, &resp),
               grpc::StatusCode::INVALID_ARGUMENT, "events[1].sku:");
  req.mutable_events(1)->set_sku("s");
  api::SetTimestamp(h.clock().Now() + absl::Hours(1), req.mutable_events(1)->mutable_occur_time());
  RequireError(client.Call(&Stub::RecordBehaviorEvents, req, &resp),
               grpc::StatusCode::INVALID_ARGUMENT, "events[1].occur_time:");

  v1::ListBehaviorEventsRequest list;
  list.set_customer_id(c.customer_id());
  v1::ListBehaviorEventsResponse page;
  REQUIRE(client.Call(&Stub::ListBehaviorEvents, list, &page).ok());
  CHECK(page.events_size() == 0);
  list.set_page_token("garbage");
  RequireError(client.Call(&Stub::ListBehaviorEvents, list, &page),
               grpc::StatusCode::INVALID_ARGUMENT, "page_token:");
}

TEST_CASE("list customers by email prefix, paged", "[customer_profile][list]") {
  Harness h(ProfileOptions());
  Client client(h);
  for (const char* e : {"amy@shop.cn", "bob@shop.cn", "ann@shop.cn", "carl@shop.cn", "al@shop.cn"})
    client.Register(e);
  v1::ListCustomersRequest req;
  req.set_email_prefix("A");
  req.set_page_size(2);
  v1::ListCustomersResponse resp;
  REQUIRE(client.Call(&Stub::ListCustomers, req, &resp).ok());
  REQUIRE(resp.customers_size() == 2);
  CHECK(resp.customers(0).email() == "al@shop.cn");
  CHECK(resp.customers(1).email() == "amy@shop.cn");
  req.set_page_token(resp.next_page_token());
  REQUIRE(client.Call(&Stub::ListCustomers, req, &resp).ok());
  REQUIRE(resp.customers_size() == 1);
  CHECK(resp.customers(0).email() == "ann@shop.cn");
  CHECK(resp.next_page_token().empty());
  req.set_page_size(5000);
  RequireError(client.Call(&Stub::ListCustomers, req, &resp), grpc::StatusCode::INVALID_ARGUMENT,
               "page_size:");
}

TEST_CASE("export returns everything held, erase removes it and records an event for the others",
          "[customer_profile][privacy]") {
  Harness h(ProfileOptions());
  Client client(h);
  const v1::Customer c = client.Register("forget.me@example.com");
  v1::AddAddressRequest add;
  add.set_customer_id(c.customer_id());
  add.set_request_id("a");
  *add.mutable_address() = HomeAddress();
  v1::Address a;
  REQUIRE(client.Call(&Stub::AddAddress, add, &a).ok());
  v1::RecordBehaviorEventsRequest rec;
  rec.set_customer_id(c.customer_id());
  rec.set_request_id("b");
  *rec.add_events() = Click("shoes");
  v1::RecordBehaviorEventsResponse rr;
  REQUIRE(client.Call(&Stub::RecordBehaviorEvents, rec, &rr).ok());

  v1::ExportCustomerDataRequest exp;
  exp.set_customer_id(c.customer_id());
  v1::CustomerDataExport data;
  REQUIRE(client.Call(&Stub::ExportCustomerData, exp, &data).ok());
  CHECK(data.customer().email() == "forget.me@example.com");
  CHECK(data.customer().addresses_size() == 1);
  CHECK(data.behavior_events_size() == 1);
  CHECK(data.category_affinities_size() == 1);

  v1::EraseCustomerRequest erase;
  erase.set_customer_id(c.customer_id());
  erase.set_request_id("erase-1");
  erase.set_reason("customer request by email 2026-01-01");
  v1::EraseCustomerResponse erased;
  REQUIRE(client.Call(&Stub::EraseCustomer, erase, &erased).ok());
  REQUIRE(client.Call(&Stub::EraseCustomer, erase, &erased).ok());  // retry: same answer

  grpc::Status s;
  client.Get(c.customer_id(), &s);
  CHECK(s.error_code() == grpc::StatusCode::NOT_FOUND);
  RequireError(client.Call(&Stub::ExportCustomerData, exp, &data), grpc::StatusCode::NOT_FOUND,
               "customer_id:");

  // Nothing of the customer is left in any of the service's column families but the tombstone and
  // the event.
  auto& store = h.store();
  for (const char* cf : {"customers", "emails", "behavior", "affinity", "contacts", "requests"}) {
    int rows_with_pii = 0;
    REQUIRE(store
                .Scan(store.cf(cf), "", "",
                      [&](absl::string_view k, absl::string_view v) {
                        const bool mentions = k.find("forget.me") != absl::string_view::npos ||
                                              v.find("forget.me") != absl::string_view::npos ||
                                              v.find("shoes") != absl::string_view::npos ||
                                              v.find("李娜") != absl::string_view::npos;
                        rows_with_pii += mentions;
                        return true;
                      })
                .ok());
    INFO(cf);
    CHECK(rows_with_pii == 0);
  }
  std::vector<v1::Event> events;
  REQUIRE(store
              .Scan(store.cf("outbox"), "", "",
                    [&](absl::string_view, absl::string_view v) {
                      v1::Event e;
                      REQUIRE(e.ParseFromArray(v.data(), static_cast<int>(v.size())));
                      events.push_back(e);
                      return true;
                    })
              .ok());
  REQUIRE(events.size() == 1);
  CHECK(events[0].customer_id() == c.customer_id());
  CHECK(events[0].has_customer_erased());

  // The email is free to register again, as a new customer.
  const v1::Customer again = client.Register("forget.me@example.com", "new-registration");
  CHECK(again.customer_id() != c.customer_id());
}

TEST_CASE("everything written survives a restart of the service", "[customer_profile][restart]") {
  Harness h(ProfileOptions());
  Client client(h);
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i)
    ids.push_back(client.Register("user" + std::to_string(i) + "@example.com").customer_id());
  v1::AddAddressRequest add;
  add.set_customer_id(ids[0]);
  add.set_request_id("a");
  *add.mutable_address() = HomeAddress();
  v1::Address a;
  REQUIRE(client.Call(&Stub::AddAddress, add, &a).ok());

  h.Restart();
  client.Reconnect();
  for (int i = 0; i < 50; ++i)
    CHECK(client.Get(ids[i]).email() == "user" + std::to_string(i) + "@example.com");
  CHECK(client.Get(ids[0]).addresses(0).street() == "科技园路1号");
  // The idempotency record survived too: a retry after restart creates nothing new.
  v1::Address again;
  REQUIRE(client.Call(&Stub::AddAddress, add, &again).ok());
  CHECK(again.address_id() == a.address_id());
  CHECK(client.Get(ids[0]).addresses_size() == 1);
}

TEST_CASE("health is SERVING, reflection lists the service, /metrics passes promtool",
          "[customer_profile][ops]") {
  Harness h(ProfileOptions(/*serve_metrics=*/true));
  Client client(h);
  CHECK(testing::HealthCheck(h.channel(), "").value() == testing::kServing);
  CHECK(testing::HealthCheck(h.channel(), "crm.v1.CustomerProfileService").value() ==
        testing::kServing);
  const auto services = testing::ReflectionServices(h.channel());
  REQUIRE(services.ok());
  CHECK(std::find(services->begin(), services->end(), "crm.v1.CustomerProfileService") !=
        services->end());
  CHECK(std::find(services->begin(), services->end(), "grpc.health.v1.Health") != services->end());

  const v1::Customer c = client.Register("metrics@example.com");
  client.Get(c.customer_id());
  grpc::Status s;
  client.Get("c-missing", &s);

  auto page = testing::HttpGet(h.metrics().port(), "/metrics");
  REQUIRE(page.ok());
  REQUIRE(page->status == 200);
  const std::string& body = page->body;
  CHECK(body.find("grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"GetCustomer\","
                  "grpc_service=\"crm.v1.CustomerProfileService\",grpc_type=\"unary\"} 1") !=
        std::string::npos);
  CHECK(body.find("grpc_code=\"NOT_FOUND\",grpc_method=\"GetCustomer\"") != std::string::npos);
  CHECK(body.find("grpc_server_handling_seconds_bucket") != std::string::npos);
  CHECK(body.find("crm_customers_registered_total 1") != std::string::npos);
  CHECK(body.find("crm_rocksdb_estimated_keys{column_family=\"customers\"}") != std::string::npos);
  testing::CheckPromtoolAccepts(body);
}

TEST_CASE(
    "importing a shop's customers: by external id, once, linked to a registered email, found again",
    "[customer_profile][import]") {
  Harness h(ProfileOptions());
  Client client(h);
  v1::ImportCustomerRequest req;
  req.set_external_id("17850");
  req.set_name("Shop customer 17850");
  api::SetTimestamp(absl::FromUnixSeconds(1291161600), req.mutable_create_time());  // 2010-12-01
  v1::ImportCustomerResponse first;
  REQUIRE(client.Call(&Stub::ImportCustomer, req, &first).ok());
  CHECK(first.created());
  CHECK(first.customer().external_id() == "17850");
  CHECK(first.customer().email().empty());
  CHECK(first.customer().create_time().seconds() == 1291161600);

  // A re-run of the import (or a retry) answers the same customer and creates nothing.
  v1::ImportCustomerResponse again;
  REQUIRE(client.Call(&Stub::ImportCustomer, req, &again).ok());
  CHECK_FALSE(again.created());
  CHECK(again.customer().customer_id() == first.customer().customer_id());
  CHECK(client.Get(first.customer().customer_id()).external_id() == "17850");

  // An email registered before is linked, not duplicated; a second external id for it is refused.
  const v1::Customer registered = client.Register("wang.fang@example.com");
  v1::ImportCustomerRequest with_email;
  with_email.set_external_id("13047");
  with_email.set_email(" Wang.Fang@Example.com");
  v1::ImportCustomerResponse linked;
  REQUIRE(client.Call(&Stub::ImportCustomer, with_email, &linked).ok());
  CHECK_FALSE(linked.created());
  CHECK(linked.customer().customer_id() == registered.customer_id());
  CHECK(linked.customer().external_id() == "13047");
  with_email.set_external_id("99999");
  v1::ImportCustomerResponse refused;
  RequireError(client.Call(&Stub::ImportCustomer, with_email, &refused),
               grpc::StatusCode::ALREADY_EXISTS, "email");

  // A new email imports a new customer that registration then finds taken.
  v1::ImportCustomerRequest fresh;
  fresh.set_external_id("12583");
  fresh.set_email("li.na@example.com");
  v1::ImportCustomerResponse made;
  REQUIRE(client.Call(&Stub::ImportCustomer, fresh, &made).ok());
  CHECK(made.created());
  v1::RegisterCustomerRequest reg;
  reg.set_request_id("reg-li.na");
  reg.set_email("li.na@example.com");
  v1::Customer dup;
  RequireError(client.Call(&Stub::RegisterCustomer, reg, &dup), grpc::StatusCode::ALREADY_EXISTS,
               "email");
  v1::GetCustomerByEmailRequest by_email;
  by_email.set_email("li.na@example.com");
  v1::Customer found;
  REQUIRE(client.Call(&Stub::GetCustomerByEmail, by_email, &found).ok());
  CHECK(found.customer_id() == made.customer().customer_id());

  // Look-up by external id: those known, ids not known are absent.
  v1::LookupCustomersRequest lookup;
  for (const char* id : {"17850", "13047", "12583", "00000"}) lookup.add_external_ids(id);
  v1::LookupCustomersResponse refs;
  REQUIRE(client.Call(&Stub::LookupCustomers, lookup, &refs).ok());
  std::map<std::string, std::string> by_external;
  for (const auto& r : refs.customers()) by_external[r.external_id()] = r.customer_id();
  CHECK(by_external ==
        std::map<std::string, std::string>{{"17850", first.customer().customer_id()},
                                           {"13047", registered.customer_id()},
                                           {"12583", made.customer().customer_id()}});

  // Erasure removes the external id with everything else.
  v1::EraseCustomerRequest erase;
  erase.set_customer_id(first.customer().customer_id());
  erase.set_request_id("erase-17850");
  v1::EraseCustomerResponse erased;
  REQUIRE(client.Call(&Stub::EraseCustomer, erase, &erased).ok());
  lookup.clear_external_ids();
  lookup.add_external_ids("17850");
  refs.Clear();
  REQUIRE(client.Call(&Stub::LookupCustomers, lookup, &refs).ok());
  CHECK(refs.customers().empty());
  // ... and a later run of the same import does not bring the customer back.
  v1::ImportCustomerResponse after_erasure;
  REQUIRE(client.Call(&Stub::ImportCustomer, req, &after_erasure).ok());
  CHECK(after_erasure.erased());
  CHECK_FALSE(after_erasure.created());
  CHECK(after_erasure.customer().customer_id().empty());
  refs.Clear();
  REQUIRE(client.Call(&Stub::LookupCustomers, lookup, &refs).ok());
  CHECK(refs.customers().empty());
}

TEST_CASE("bad imports and look-ups are refused naming the field, and nothing is written",
          "[customer_profile][import][validation]") {
  Harness h(ProfileOptions());
  Client client(h);
  struct Bad {
    std::function<void(v1::ImportCustomerRequest&)> mutate;
    std::string field;
  };
  const std::vector<Bad> bad = {
      {[](auto& r) { r.set_external_id(""); }, "external_id"},
      {[](auto& r) { r.set_external_id("has space"); }, "external_id"},
      {[](auto& r) { r.set_external_id(std::string(129, '1')); }, "external_id"},
      {[](auto& r) { r.set_email("not-an-email"); }, "email"},
      {[](auto& r) { r.set_phone("12345"); }, "phone"},
      {[](auto& r) { r.set_name(std::string("a\x01b")); }, "name"},
      {[&](auto& r) {
         api::SetTimestamp(h.clock().Now() + absl::Hours(24), r.mutable_create_time());
       },
       "create_time"},
  };
  for (const auto& b : bad) {
    v1::ImportCustomerRequest r;
    r.set_external_id("ok-1");
    b.mutate(r);
    v1::ImportCustomerResponse out;
    INFO(b.field);
    RequireError(client.Call(&Stub::ImportCustomer, r, &out), grpc::StatusCode::INVALID_ARGUMENT,
                 b.field);
  }
  v1::LookupCustomersRequest lookup;
  v1::LookupCustomersResponse refs;
  RequireError(client.Call(&Stub::LookupCustomers, lookup, &refs),
               grpc::StatusCode::INVALID_ARGUMENT, "external_ids");
  for (int i = 0; i <= kMaxExternalIdsPerLookup; ++i) lookup.add_external_ids(std::to_string(i));
  RequireError(client.Call(&Stub::LookupCustomers, lookup, &refs),
               grpc::StatusCode::INVALID_ARGUMENT, "external_ids");
  lookup.clear_external_ids();
  lookup.add_external_ids("ok-1");
  lookup.add_external_ids("bad id");
  RequireError(client.Call(&Stub::LookupCustomers, lookup, &refs),
               grpc::StatusCode::INVALID_ARGUMENT, "external_ids[1]");
  lookup.clear_external_ids();
  lookup.add_external_ids("ok-1");
  REQUIRE(client.Call(&Stub::LookupCustomers, lookup, &refs).ok());
  CHECK(refs.customers().empty());
}

}  // namespace
}  // namespace crm::customer_profile

namespace crm {
namespace {

// Every key and value of every column family, for comparing a store with its backup.
std::map<std::string, std::string> DumpStore(store::Store& s) {
  std::map<std::string, std::string> all;
  for (const std::string& name : s.column_family_names()) {
    REQUIRE(s.Scan(s.cf(name), "", "", [&](absl::string_view k, absl::string_view v) {
               all[absl::StrCat(name, "/", k)] = std::string(v);
               return true;
             }).ok());
  }
  return all;
}

TEST_CASE(
    "backup: a checkpoint through StoreAdminService restores to exactly the store it copied") {
  using Harness = testing::ServiceHarness<customer_profile::CustomerProfileComponent>;
  Harness::Options o;
  Harness h(o);
  auto profiles = v1::CustomerProfileService::NewStub(h.channel());
  auto admin = v1::StoreAdminService::NewStub(h.channel());
  auto reg = [&](const std::string& email) {
    v1::RegisterCustomerRequest r;
    r.set_email(email);
    r.set_request_id("r-" + email);
    v1::Customer c;
    REQUIRE(
        testing::Call(profiles.get(), &v1::CustomerProfileService::Stub::RegisterCustomer, r, &c)
            .ok());
    return c;
  };
  const v1::Customer before = reg("before@example.com");

  v1::CreateCheckpointRequest cp;
  cp.set_service("customer-profile");
  cp.set_name("nightly-1");
  v1::CreateCheckpointResponse made;
  REQUIRE(
      testing::Call(admin.get(), &v1::StoreAdminService::Stub::CreateCheckpoint, cp, &made).ok());
  REQUIRE(made.checkpoints_size() == 1);
  const std::string path = made.checkpoints(0).path();
  const auto at_backup = DumpStore(h.store());
  // The same name again is the same checkpoint (a retry), not a second one.
  v1::CreateCheckpointResponse again;
  REQUIRE(
      testing::Call(admin.get(), &v1::StoreAdminService::Stub::CreateCheckpoint, cp, &again).ok());
  CHECK(again.checkpoints(0).path() == path);

  const v1::Customer after = reg("after@example.com");
  CHECK(DumpStore(h.store()) != at_backup);

  h.RestoreFrom(path);
  auto restored = DumpStore(h.store());
  // Every start bumps the outbox epoch (so event ids are never reused, not even after a restore);
  // the rest must be exactly what was backed up.
  CHECK(restored["outbox_meta/epoch"] != at_backup.at("outbox_meta/epoch"));
  restored.erase("outbox_meta/epoch");
  auto expected = at_backup;
  expected.erase("outbox_meta/epoch");
  CHECK(restored == expected);
  profiles = v1::CustomerProfileService::NewStub(h.channel());
  v1::GetCustomerRequest get;
  v1::Customer got;
  get.set_customer_id(before.customer_id());
  CHECK(testing::Call(profiles.get(), &v1::CustomerProfileService::Stub::GetCustomer, get, &got)
            .ok());
  get.set_customer_id(after.customer_id());
  CHECK(testing::Call(profiles.get(), &v1::CustomerProfileService::Stub::GetCustomer, get, &got)
            .error_code() == grpc::StatusCode::NOT_FOUND);

  // Bad input is refused, naming the field.
  admin = v1::StoreAdminService::NewStub(h.channel());
  cp.set_name("../escape");
  testing::RequireError(
      testing::Call(admin.get(), &v1::StoreAdminService::Stub::CreateCheckpoint, cp, &made),
      grpc::StatusCode::INVALID_ARGUMENT, "name");
  cp.set_name("ok");
  cp.set_service("loyalty");
  testing::RequireError(
      testing::Call(admin.get(), &v1::StoreAdminService::Stub::CreateCheckpoint, cp, &made),
      grpc::StatusCode::INVALID_ARGUMENT, "service");
}

}  // namespace
}  // namespace crm
