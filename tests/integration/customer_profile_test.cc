// crm.v1.CustomerProfileService end to end: a real server on a free loopback port, a real RocksDB
// in a temp dir, calls through the generated gRPC stub.
#include <functional>
#include <map>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "crm/v1/admin.grpc.pb.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "google/protobuf/text_format.h"
#include "grpcpp/client_context.h"
#include "libs/api/validate.h"
#include "services/customer_profile/customer_profile_component.h"
#include "tests/support/concurrent_calls.h"
#include "tests/support/grpc_probe.h"
#include "tests/support/http.h"
#include "tests/support/metrics_page.h"
#include "tests/support/outbox_events.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"
#include "tests/support/shop_calls.h"

namespace crm::customer_profile {
namespace {

using Harness = testing::ServiceHarness<CustomerProfileComponent>;
using Stub = v1::CustomerProfileService::Stub;
using testing::ForCustomer;

Harness::Options ProfileOptions(bool serve_metrics = false) {
  Harness::Options o;
  o.serve_metrics = serve_metrics;
  return o;
}

v1::RegisterCustomerRequest RegisterRequest(const std::string& email,
                                            const std::string& request_id) {
  v1::RegisterCustomerRequest req;
  req.set_request_id(request_id);
  req.set_email(email);
  return req;
}

struct Client {
  explicit Client(Harness& h)
      : harness(h), stub(v1::CustomerProfileService::NewStub(h.channel())) {}
  void Reconnect() { stub = v1::CustomerProfileService::NewStub(harness.channel()); }

  // The answer to a call that must succeed.
  template <typename Req, typename Resp>
  Resp Ok(grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
          const std::type_identity_t<Req>& req) {
    return testing::CallOk(stub.get(), method, req);
  }
  // How a call ended, for calls that are meant to be refused.
  template <typename Req, typename Resp>
  grpc::Status StatusOf(grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                        const std::type_identity_t<Req>& req) {
    return testing::StatusOf(stub.get(), method, req);
  }

  v1::Customer Register(const std::string& email, const std::string& request_id = "") {
    return Ok(&Stub::RegisterCustomer,
              RegisterRequest(email, request_id.empty() ? "reg-" + email : request_id));
  }

  v1::Customer Get(const std::string& id) {
    return Ok(&Stub::GetCustomer, ForCustomer<v1::GetCustomerRequest>(id));
  }
  grpc::Status GetStatus(const std::string& id) {
    return StatusOf(&Stub::GetCustomer, ForCustomer<v1::GetCustomerRequest>(id));
  }

  v1::Customer FindByEmail(const std::string& email) {
    v1::GetCustomerByEmailRequest req;
    req.set_email(email);
    return Ok(&Stub::GetCustomerByEmail, req);
  }

  Harness& harness;
  std::unique_ptr<Stub> stub;
};

// One service on a fresh store and a client of it: where most tests start.
struct ProfileTest {
  Harness h{ProfileOptions()};
  Client client{h};
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
  return FromText<v1::Address>(R"pb(
    recipient_name: "李娜"
    phone: "+8613800138000"
    country_code: "CN"
    province: "广东"
    city: "深圳"
    district: "南山区"
    street: "科技园路1号"
    postal_code: "518057"
    label: "home"
  )pb");
}

// A request adding the home address for `customer_id`.
v1::AddAddressRequest AddHomeRequest(const std::string& customer_id,
                                     const std::string& request_id) {
  auto add = ForCustomer<v1::AddAddressRequest>(customer_id);
  add.set_request_id(request_id);
  *add.mutable_address() = HomeAddress();
  return add;
}

v1::BehaviorEvent Click(const std::string& category) {
  v1::BehaviorEvent e;
  e.set_type(v1::BEHAVIOR_EVENT_TYPE_CATEGORY_CLICK);
  e.set_category(category);
  return e;
}

// A request recording one click on `category` for `customer_id`.
v1::RecordBehaviorEventsRequest ClickRequest(const std::string& customer_id,
                                             const std::string& request_id,
                                             const std::string& category) {
  auto req = ForCustomer<v1::RecordBehaviorEventsRequest>(customer_id);
  req.set_request_id(request_id);
  *req.add_events() = Click(category);
  return req;
}

TEST_CASE_METHOD(ProfileTest, "register with an email only, then read it back",
                 "[customer_profile]") {
  const v1::Customer created =
      client.Ok(&Stub::RegisterCustomer, FromText<v1::RegisterCustomerRequest>(R"pb(
        request_id: "r1"
        email: "  Zhang.Wei@Example.com "
        name: "张伟"
        phone: "+8613912345678"
        birthday { year: 1988 month: 8 day: 8 }
      )pb"));
  CHECK(created.email() == "zhang.wei@example.com");
  CHECK_FALSE(created.customer_id().empty());
  CHECK(created.has_create_time());

  const v1::Customer got = client.Get(created.customer_id());
  CHECK(got.name() == "张伟");
  CHECK(got.birthday().day() == 8);

  CHECK(client.FindByEmail("ZHANG.WEI@example.com").customer_id() == created.customer_id());
}

TEST_CASE_METHOD(
    ProfileTest,
    "a retried registration returns the same customer, another request for the email is refused",
    "[customer_profile][idempotency]") {
  const v1::Customer first = client.Register("a@example.com", "same-id");
  const v1::Customer retry = client.Register("a@example.com", "same-id");
  CHECK(retry.customer_id() == first.customer_id());

  RequireError(
      client.StatusOf(&Stub::RegisterCustomer, RegisterRequest("A@EXAMPLE.COM", "different")),
      grpc::StatusCode::ALREADY_EXISTS, "email:");
}

TEST_CASE_METHOD(ProfileTest, "concurrent registrations of one email create exactly one customer",
                 "[customer_profile][idempotency]") {
  auto outcomes = testing::CallsAtOnce(8, [&](int i) {
    auto stub = v1::CustomerProfileService::NewStub(h.channel());
    grpc::ClientContext ctx;
    v1::Customer c;
    return stub->RegisterCustomer(
        &ctx, RegisterRequest("race@example.com", "race-" + std::to_string(i)), &c);
  });
  CHECK(outcomes[grpc::StatusCode::OK] == 1);
  CHECK(outcomes[grpc::StatusCode::ALREADY_EXISTS] == 7);
}

TEST_CASE_METHOD(ProfileTest,
                 "registration input is validated field by field and nothing is written",
                 "[customer_profile][validation]") {
  // Each request differs from a valid one in one field, named by the refusal.
  const std::vector<std::pair<std::string, std::string>> refused = {
      {R"(request_id: "r")", "email:"},
      {R"(request_id: "r" email: "not-an-email")", "email:"},
      {R"(email: "ok@example.com")", "request_id:"},
      {R"(request_id: "r" email: "ok@example.com" phone: "12345")", "phone:"},
      {R"(request_id: "r" email: "ok@example.com" birthday { year: 2001 month: 2 day: 29 })",
       "birthday:"},
      {absl::StrCat(R"(request_id: "r" email: "ok@example.com" name: ")", std::string(101, 'x'),
                    "\""),
       "name:"},
      {R"(request_id: "r" email: "ok@example.com" name: "a\001")", "name:"},
  };
  for (const auto& [request, field] : refused) {
    RequireError(
        client.StatusOf(&Stub::RegisterCustomer, FromText<v1::RegisterCustomerRequest>(request)),
        grpc::StatusCode::INVALID_ARGUMENT, field);
  }

  // None of the refused calls left anything behind: the email is still free.
  const v1::Customer c = client.Register("ok@example.com");
  CHECK(c.email() == "ok@example.com");
}

TEST_CASE_METHOD(ProfileTest, "invalid UTF-8 in a text field is refused naming the field",
                 "[customer_profile][validation]") {
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
  RequireError(
      testing::RawUnaryCall(h.channel(), "/crm.v1.CustomerProfileService/UpdateCustomer", bytes)
          .status,
      grpc::StatusCode::INVALID_ARGUMENT, "customer.name:");
  CHECK(client.Get(c.customer_id()).name().empty());
}

TEST_CASE_METHOD(ProfileTest, "unknown customers answer NOT_FOUND", "[customer_profile]") {
  RequireError(client.GetStatus("c-nobody"), grpc::StatusCode::NOT_FOUND, "customer_id:");
  RequireError(client.GetStatus(""), grpc::StatusCode::INVALID_ARGUMENT, "customer_id:");
  RequireError(client.StatusOf(&Stub::AddAddress, AddHomeRequest("c-nobody", "r")),
               grpc::StatusCode::NOT_FOUND, "customer_id:");
}

TEST_CASE_METHOD(
    ProfileTest,
    "every call that names a customer refuses a missing id and answers NOT_FOUND for an unknown "
    "one",
    "[customer_profile][validation]") {
  // One well-formed request per method; only customer_id varies.
  auto check = [&]<typename Req, typename Resp>(
                   grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*), Req r) {
    INFO(Req::descriptor()->name());
    r.set_customer_id("");
    RequireError(client.StatusOf(method, r), grpc::StatusCode::INVALID_ARGUMENT, "customer_id:");
    r.set_customer_id("c-unknown");
    RequireError(client.StatusOf(method, r), grpc::StatusCode::NOT_FOUND, "customer_id:");
  };
  check(&Stub::GetCustomer, v1::GetCustomerRequest());
  check(&Stub::UpdateCustomer,
        FromText<v1::UpdateCustomerRequest>(R"(update_mask { paths: "name" })"));
  check(&Stub::AddAddress, AddHomeRequest("", "x"));
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
  check(&Stub::RecordBehaviorEvents, ClickRequest("", "x", "c"));
  check(&Stub::ListBehaviorEvents, v1::ListBehaviorEventsRequest());
  check(&Stub::GetCategoryAffinity, v1::GetCategoryAffinityRequest());
  check(&Stub::ExportCustomerData, v1::ExportCustomerDataRequest());
  check(&Stub::EraseCustomer, FromText<v1::EraseCustomerRequest>(R"(request_id: "x")"));
}

TEST_CASE_METHOD(ProfileTest, "update changes only the masked fields and refuses other paths",
                 "[customer_profile][update]") {
  const v1::Customer c = client.Register("u@example.com");
  auto req = ForCustomer<v1::UpdateCustomerRequest>(c.customer_id());
  req.mutable_customer()->set_name("Wang Fang");
  req.mutable_customer()->set_phone("+8613700000000");
  req.mutable_update_mask()->add_paths("name");
  const v1::Customer updated = client.Ok(&Stub::UpdateCustomer, req);
  CHECK(updated.name() == "Wang Fang");
  CHECK(updated.phone().empty());
  CHECK(client.Get(c.customer_id()).name() == "Wang Fang");

  req.mutable_update_mask()->add_paths("email");
  RequireError(client.StatusOf(&Stub::UpdateCustomer, req), grpc::StatusCode::INVALID_ARGUMENT,
               "update_mask:");
  req.clear_update_mask();
  RequireError(client.StatusOf(&Stub::UpdateCustomer, req), grpc::StatusCode::INVALID_ARGUMENT,
               "update_mask:");
  req.mutable_update_mask()->add_paths("phone");
  req.mutable_customer()->set_phone("555");
  RequireError(client.StatusOf(&Stub::UpdateCustomer, req), grpc::StatusCode::INVALID_ARGUMENT,
               "customer.phone:");
  CHECK(client.Get(c.customer_id()).phone().empty());
}

TEST_CASE_METHOD(ProfileTest, "addresses: add, update, set default, remove",
                 "[customer_profile][address]") {
  const v1::Customer c = client.Register("addr@example.com");
  v1::AddAddressRequest add = AddHomeRequest(c.customer_id(), "add-1");
  const v1::Address home = client.Ok(&Stub::AddAddress, add);
  CHECK_FALSE(home.address_id().empty());
  CHECK(client.Ok(&Stub::AddAddress, add).address_id() == home.address_id());  // a retry

  add.set_request_id("add-2");
  add.mutable_address()->set_label("office");
  const v1::Address office = client.Ok(&Stub::AddAddress, add);
  v1::Customer now = client.Get(c.customer_id());
  CHECK(now.addresses_size() == 2);
  CHECK(now.default_address_id() == home.address_id());

  auto set_default = ForCustomer<v1::SetDefaultAddressRequest>(c.customer_id());
  set_default.set_address_id(office.address_id());
  CHECK(client.Ok(&Stub::SetDefaultAddress, set_default).default_address_id() ==
        office.address_id());

  auto update = ForCustomer<v1::UpdateAddressRequest>(c.customer_id());
  update.mutable_address()->set_address_id(home.address_id());
  update.mutable_address()->set_street("深南大道100号");
  update.mutable_update_mask()->add_paths("street");
  const v1::Address updated = client.Ok(&Stub::UpdateAddress, update);
  CHECK(updated.street() == "深南大道100号");
  CHECK(updated.city() == "深圳");

  // Removing the default address makes the one left the default; a second removal finds nothing.
  auto remove_office = [&] {
    auto remove = ForCustomer<v1::RemoveAddressRequest>(c.customer_id());
    remove.set_address_id(office.address_id());
    return client.StatusOf(&Stub::RemoveAddress, remove);
  };
  REQUIRE(remove_office().ok());
  now = client.Get(c.customer_id());
  CHECK(now.addresses_size() == 1);
  CHECK(now.default_address_id() == home.address_id());
  RequireError(remove_office(), grpc::StatusCode::NOT_FOUND, "address_id:");

  add.set_request_id("add-bad");
  add.mutable_address()->clear_city();
  RequireError(client.StatusOf(&Stub::AddAddress, add), grpc::StatusCode::INVALID_ARGUMENT,
               "address.city:");
  CHECK(client.Get(c.customer_id()).addresses_size() == 1);
}

TEST_CASE_METHOD(ProfileTest, "payment preferences keep a token and hint, a card number is refused",
                 "[customer_profile][payment]") {
  const v1::Customer c = client.Register("pay@example.com");
  auto add = ForCustomer<v1::AddPaymentMethodRequest>(c.customer_id());
  add.set_request_id("pm-1");
  add.mutable_payment_method()->set_type(v1::PAYMENT_METHOD_TYPE_CARD);
  add.mutable_payment_method()->set_token("tok_unionpay_8f2c");
  add.mutable_payment_method()->set_last4("0004");
  add.mutable_payment_method()->set_brand("UnionPay");
  const v1::PaymentMethod card = client.Ok(&Stub::AddPaymentMethod, add);

  add.set_request_id("pm-2");
  add.mutable_payment_method()->set_token("6212 2602 0000 0000 006");
  RequireError(client.StatusOf(&Stub::AddPaymentMethod, add), grpc::StatusCode::INVALID_ARGUMENT,
               "payment_method.token:");

  add.set_request_id("pm-3");
  add.clear_payment_method();
  add.mutable_payment_method()->set_type(v1::PAYMENT_METHOD_TYPE_CASH_ON_DELIVERY);
  const v1::PaymentMethod cod = client.Ok(&Stub::AddPaymentMethod, add);

  v1::Customer now = client.Get(c.customer_id());
  CHECK(now.payment_methods_size() == 2);
  CHECK(now.default_payment_method_id() == card.payment_method_id());
  for (const auto& m : now.payment_methods()) CHECK(m.token().find("6212") == std::string::npos);

  auto set_default = ForCustomer<v1::SetDefaultPaymentMethodRequest>(c.customer_id());
  set_default.set_payment_method_id(cod.payment_method_id());
  CHECK(client.Ok(&Stub::SetDefaultPaymentMethod, set_default).default_payment_method_id() ==
        cod.payment_method_id());

  auto remove = ForCustomer<v1::RemovePaymentMethodRequest>(c.customer_id());
  remove.set_payment_method_id(cod.payment_method_id());
  client.Ok(&Stub::RemovePaymentMethod, remove);
  now = client.Get(c.customer_id());
  CHECK(now.payment_methods_size() == 1);
  CHECK(now.default_payment_method_id() == card.payment_method_id());
}

TEST_CASE_METHOD(ProfileTest, "preferences update by mask", "[customer_profile][preferences]") {
  const v1::Customer c = client.Register("pref@example.com");
  auto req = ForCustomer<v1::UpdatePreferencesRequest>(c.customer_id());
  req.mutable_preferences()->mutable_preferred_delivery_window()->set_start_minute(18 * 60);
  req.mutable_preferences()->mutable_preferred_delivery_window()->set_end_minute(21 * 60);
  req.mutable_preferences()->set_language("zh-CN");
  (*req.mutable_preferences()->mutable_settings())["invoice_title"] = "深圳某某科技有限公司";
  req.mutable_update_mask()->add_paths("preferred_delivery_window");
  req.mutable_update_mask()->add_paths("language");
  req.mutable_update_mask()->add_paths("settings");
  CHECK(client.Ok(&Stub::UpdatePreferences, req).language() == "zh-CN");
  CHECK(client.Get(c.customer_id()).preferences().settings().at("invoice_title") ==
        "深圳某某科技有限公司");

  req.mutable_preferences()->mutable_preferred_delivery_window()->set_end_minute(60);
  RequireError(client.StatusOf(&Stub::UpdatePreferences, req), grpc::StatusCode::INVALID_ARGUMENT,
               "preferences.preferred_delivery_window:");
  CHECK(client.Get(c.customer_id()).preferences().preferred_delivery_window().end_minute() ==
        21 * 60);
}

TEST_CASE_METHOD(ProfileTest, "marketing consent and the contact cap are enforced for senders",
                 "[customer_profile][consent]") {
  const v1::Customer c = client.Register("mkt@example.com");
  auto ask = ForCustomer<v1::RequestContactRequest>(c.customer_id());
  ask.set_channel(v1::CHANNEL_EMAIL);
  ask.set_purpose("recommendation-email");
  auto contact = [&](const std::string& request_id) {
    ask.set_request_id(request_id);
    return client.Ok(&Stub::RequestContact, ask);
  };
  CHECK(contact("send-0").reason() == v1::ContactDecision::REASON_NO_CONSENT);

  auto consent = ForCustomer<v1::SetMarketingConsentRequest>(c.customer_id());
  consent.set_channel(v1::CHANNEL_EMAIL);
  consent.set_granted(true);
  consent.set_source("settings");
  CHECK(client.Ok(&Stub::SetMarketingConsent, consent).granted());

  for (int i = 1; i <= 3; ++i) {
    const v1::ContactDecision d = contact("send-" + std::to_string(i));
    CHECK(d.allowed());
    CHECK(d.contacts_in_period() == i);
    h.clock().Advance(absl::Hours(1));
  }
  // A retry of an allowed request is the same answer, not a fourth contact.
  CHECK(contact("send-3").allowed());
  const v1::ContactDecision capped = contact("send-4");
  CHECK(capped.reason() == v1::ContactDecision::REASON_FREQUENCY_CAP);
  CHECK(capped.has_next_allowed_time());

  auto peek = ForCustomer<v1::GetContactPermissionRequest>(c.customer_id());
  peek.set_channel(v1::CHANNEL_EMAIL);
  CHECK_FALSE(client.Ok(&Stub::GetContactPermission, peek).allowed());
  h.clock().Advance(absl::Hours(24 * 7));
  CHECK(client.Ok(&Stub::GetContactPermission, peek).allowed());

  peek.set_channel(v1::CHANNEL_UNSPECIFIED);
  RequireError(client.StatusOf(&Stub::GetContactPermission, peek),
               grpc::StatusCode::INVALID_ARGUMENT, "channel:");
}

TEST_CASE_METHOD(ProfileTest, "behaviour events build category affinity and list newest first",
                 "[customer_profile][behavior]") {
  const v1::Customer c = client.Register("browse@example.com");
  v1::RecordBehaviorEventsRequest req = ClickRequest(c.customer_id(), "batch-1", "phones");
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
  CHECK(client.Ok(&Stub::RecordBehaviorEvents, req).recorded_count() == 4);
  // A retried batch is not counted twice.
  client.Ok(&Stub::RecordBehaviorEvents, req);

  const auto aff = ForCustomer<v1::GetCategoryAffinityRequest>(c.customer_id());
  v1::GetCategoryAffinityResponse affinity = client.Ok(&Stub::GetCategoryAffinity, aff);
  REQUIRE(affinity.affinities_size() == 2);
  CHECK(affinity.affinities(0).category() == "phones");
  CHECK(affinity.affinities(0).clicks() == 1);
  CHECK(affinity.affinities(0).views() == 1);
  CHECK(affinity.affinities(0).engagement() == v1::ENGAGEMENT_LOOKED_CLOSELY);
  CHECK(affinity.affinities(1).engagement() == v1::ENGAGEMENT_FLIPPED_THROUGH);
  const double score_now = affinity.affinities(0).score();
  h.clock().Advance(absl::Hours(24 * 14));
  affinity = client.Ok(&Stub::GetCategoryAffinity, aff);
  CHECK(affinity.affinities(0).score() == Approx(score_now / 2));

  // Two more events later; the list is newest first and pages.
  client.Ok(&Stub::RecordBehaviorEvents, ClickRequest(c.customer_id(), "batch-2", "toys"));
  auto list = ForCustomer<v1::ListBehaviorEventsRequest>(c.customer_id());
  list.set_page_size(3);
  v1::ListBehaviorEventsResponse page = client.Ok(&Stub::ListBehaviorEvents, list);
  REQUIRE(page.events_size() == 3);
  CHECK(page.events(0).category() == "toys");
  REQUIRE_FALSE(page.next_page_token().empty());
  list.set_page_token(page.next_page_token());
  page = client.Ok(&Stub::ListBehaviorEvents, list);
  CHECK(page.events_size() == 2);
  CHECK(page.next_page_token().empty());
}

TEST_CASE_METHOD(ProfileTest,
                 "behaviour batches are validated whole: one bad event rejects the batch",
                 "[customer_profile][behavior]") {
  const v1::Customer c = client.Register("bad-batch@example.com");
  auto req = ForCustomer<v1::RecordBehaviorEventsRequest>(c.customer_id());
  req.set_request_id("b");
  auto refused = [&](const std::string& field) {
    RequireError(client.StatusOf(&Stub::RecordBehaviorEvents, req),
                 grpc::StatusCode::INVALID_ARGUMENT, field);
  };
  refused("events:");
  for (int i = 0; i < kMaxBehaviorEventsPerCall + 1; ++i) *req.add_events() = Click("c");
  refused("events:");
  req.clear_events();
  *req.add_events() = Click("ok");
  *req.add_events() = Click("");
  refused("events[1].category:");
  req.mutable_events(1)->set_category("ok");
  req.mutable_events(1)->set_type(v1::BEHAVIOR_EVENT_TYPE_ITEM_VIEW);
  refused("events[1].sku:");
  req.mutable_events(1)->set_sku("s");
  api::SetTimestamp(h.clock().Now() + absl::Hours(1), req.mutable_events(1)->mutable_occur_time());
  refused("events[1].occur_time:");

  auto list = ForCustomer<v1::ListBehaviorEventsRequest>(c.customer_id());
  CHECK(client.Ok(&Stub::ListBehaviorEvents, list).events_size() == 0);
  list.set_page_token("garbage");
  RequireError(client.StatusOf(&Stub::ListBehaviorEvents, list), grpc::StatusCode::INVALID_ARGUMENT,
               "page_token:");
}

TEST_CASE_METHOD(ProfileTest, "list customers by email prefix, paged", "[customer_profile][list]") {
  for (const char* e : {"amy@shop.cn", "bob@shop.cn", "ann@shop.cn", "carl@shop.cn", "al@shop.cn"})
    client.Register(e);
  v1::ListCustomersRequest req;
  req.set_email_prefix("A");
  req.set_page_size(2);
  v1::ListCustomersResponse resp = client.Ok(&Stub::ListCustomers, req);
  REQUIRE(resp.customers_size() == 2);
  CHECK(resp.customers(0).email() == "al@shop.cn");
  CHECK(resp.customers(1).email() == "amy@shop.cn");
  req.set_page_token(resp.next_page_token());
  resp = client.Ok(&Stub::ListCustomers, req);
  REQUIRE(resp.customers_size() == 1);
  CHECK(resp.customers(0).email() == "ann@shop.cn");
  CHECK(resp.next_page_token().empty());
  req.set_page_size(5000);
  RequireError(client.StatusOf(&Stub::ListCustomers, req), grpc::StatusCode::INVALID_ARGUMENT,
               "page_size:");
}

TEST_CASE_METHOD(ProfileTest,
                 "export returns everything held, erase removes it and records an event for the "
                 "others",
                 "[customer_profile][privacy]") {
  const v1::Customer c = client.Register("forget.me@example.com");
  client.Ok(&Stub::AddAddress, AddHomeRequest(c.customer_id(), "a"));
  client.Ok(&Stub::RecordBehaviorEvents, ClickRequest(c.customer_id(), "b", "shoes"));

  const auto exp = ForCustomer<v1::ExportCustomerDataRequest>(c.customer_id());
  const v1::CustomerDataExport data = client.Ok(&Stub::ExportCustomerData, exp);
  CHECK(data.customer().email() == "forget.me@example.com");
  CHECK(data.customer().addresses_size() == 1);
  CHECK(data.behavior_events_size() == 1);
  CHECK(data.category_affinities_size() == 1);

  auto erase = ForCustomer<v1::EraseCustomerRequest>(c.customer_id());
  erase.set_request_id("erase-1");
  erase.set_reason("customer request by email 2026-01-01");
  client.Ok(&Stub::EraseCustomer, erase);
  client.Ok(&Stub::EraseCustomer, erase);  // retry: same answer

  CHECK(client.GetStatus(c.customer_id()).error_code() == grpc::StatusCode::NOT_FOUND);
  RequireError(client.StatusOf(&Stub::ExportCustomerData, exp), grpc::StatusCode::NOT_FOUND,
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
  const std::vector<v1::Event> events = testing::OutboxEvents(store);
  REQUIRE(events.size() == 1);
  CHECK(events[0].customer_id() == c.customer_id());
  CHECK(events[0].has_customer_erased());

  // The email is free to register again, as a new customer.
  const v1::Customer again = client.Register("forget.me@example.com", "new-registration");
  CHECK(again.customer_id() != c.customer_id());
}

TEST_CASE_METHOD(ProfileTest, "everything written survives a restart of the service",
                 "[customer_profile][restart]") {
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i)
    ids.push_back(client.Register("user" + std::to_string(i) + "@example.com").customer_id());
  const v1::AddAddressRequest add = AddHomeRequest(ids[0], "a");
  const v1::Address a = client.Ok(&Stub::AddAddress, add);

  h.Restart();
  client.Reconnect();
  for (int i = 0; i < 50; ++i)
    CHECK(client.Get(ids[i]).email() == "user" + std::to_string(i) + "@example.com");
  CHECK(client.Get(ids[0]).addresses(0).street() == "科技园路1号");
  // The idempotency record survived too: a retry after restart creates nothing new.
  CHECK(client.Ok(&Stub::AddAddress, add).address_id() == a.address_id());
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
  client.GetStatus("c-missing");

  auto page = testing::HttpGet(h.metrics().port(), "/metrics");
  REQUIRE(page.ok());
  REQUIRE(page->status == 200);
  const std::string& body = page->body;
  testing::CheckPageShows(
      body, {"grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"GetCustomer\","
             "grpc_service=\"crm.v1.CustomerProfileService\",grpc_type=\"unary\"} 1",
             "grpc_code=\"NOT_FOUND\",grpc_method=\"GetCustomer\"",
             "grpc_server_handling_seconds_bucket", "crm_customers_registered_total 1",
             "crm_rocksdb_estimated_keys{column_family=\"customers\"}"});
  testing::CheckPromtoolAccepts(body);
}

v1::ImportCustomerRequest ImportRequest(const std::string& external_id,
                                        const std::string& email = "") {
  v1::ImportCustomerRequest req;
  req.set_external_id(external_id);
  req.set_email(email);
  return req;
}

TEST_CASE_METHOD(
    ProfileTest,
    "importing a shop's customers: by external id, once, linked to a registered email, found again",
    "[customer_profile][import]") {
  v1::ImportCustomerRequest req = ImportRequest("17850");
  req.set_name("Shop customer 17850");
  api::SetTimestamp(absl::FromUnixSeconds(1291161600), req.mutable_create_time());  // 2010-12-01
  const v1::ImportCustomerResponse first = client.Ok(&Stub::ImportCustomer, req);
  CHECK(first.created());
  CHECK(first.customer().external_id() == "17850");
  CHECK(first.customer().email().empty());
  CHECK(first.customer().create_time().seconds() == 1291161600);

  // A re-run of the import (or a retry) answers the same customer and creates nothing.
  const v1::ImportCustomerResponse again = client.Ok(&Stub::ImportCustomer, req);
  CHECK_FALSE(again.created());
  CHECK(again.customer().customer_id() == first.customer().customer_id());
  CHECK(client.Get(first.customer().customer_id()).external_id() == "17850");

  // An email registered before is linked, not duplicated; a second external id for it is refused.
  const v1::Customer registered = client.Register("wang.fang@example.com");
  v1::ImportCustomerRequest with_email = ImportRequest("13047", " Wang.Fang@Example.com");
  const v1::ImportCustomerResponse linked = client.Ok(&Stub::ImportCustomer, with_email);
  CHECK_FALSE(linked.created());
  CHECK(linked.customer().customer_id() == registered.customer_id());
  CHECK(linked.customer().external_id() == "13047");
  with_email.set_external_id("99999");
  RequireError(client.StatusOf(&Stub::ImportCustomer, with_email), grpc::StatusCode::ALREADY_EXISTS,
               "email");

  // A new email imports a new customer that registration then finds taken.
  const v1::ImportCustomerResponse made =
      client.Ok(&Stub::ImportCustomer, ImportRequest("12583", "li.na@example.com"));
  CHECK(made.created());
  RequireError(
      client.StatusOf(&Stub::RegisterCustomer, RegisterRequest("li.na@example.com", "reg-li.na")),
      grpc::StatusCode::ALREADY_EXISTS, "email");
  CHECK(client.FindByEmail("li.na@example.com").customer_id() == made.customer().customer_id());

  // Look-up by external id: those known, ids not known are absent.
  v1::LookupCustomersRequest lookup;
  for (const char* id : {"17850", "13047", "12583", "00000"}) lookup.add_external_ids(id);
  const v1::LookupCustomersResponse refs = client.Ok(&Stub::LookupCustomers, lookup);
  std::map<std::string, std::string> by_external;
  for (const auto& r : refs.customers()) by_external[r.external_id()] = r.customer_id();
  CHECK(by_external ==
        std::map<std::string, std::string>{{"17850", first.customer().customer_id()},
                                           {"13047", registered.customer_id()},
                                           {"12583", made.customer().customer_id()}});

  // Erasure removes the external id with everything else.
  auto erase = ForCustomer<v1::EraseCustomerRequest>(first.customer().customer_id());
  erase.set_request_id("erase-17850");
  client.Ok(&Stub::EraseCustomer, erase);
  lookup.clear_external_ids();
  lookup.add_external_ids("17850");
  CHECK(client.Ok(&Stub::LookupCustomers, lookup).customers().empty());
  // ... and a later run of the same import does not bring the customer back.
  const v1::ImportCustomerResponse after_erasure = client.Ok(&Stub::ImportCustomer, req);
  CHECK(after_erasure.erased());
  CHECK_FALSE(after_erasure.created());
  CHECK(after_erasure.customer().customer_id().empty());
  CHECK(client.Ok(&Stub::LookupCustomers, lookup).customers().empty());
}

TEST_CASE_METHOD(ProfileTest,
                 "bad imports and look-ups are refused naming the field, and nothing is written",
                 "[customer_profile][import][validation]") {
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
    v1::ImportCustomerRequest r = ImportRequest("ok-1");
    b.mutate(r);
    INFO(b.field);
    RequireError(client.StatusOf(&Stub::ImportCustomer, r), grpc::StatusCode::INVALID_ARGUMENT,
                 b.field);
  }
  v1::LookupCustomersRequest lookup;
  auto refused = [&](const std::string& field) {
    RequireError(client.StatusOf(&Stub::LookupCustomers, lookup),
                 grpc::StatusCode::INVALID_ARGUMENT, field);
  };
  refused("external_ids");
  for (int i = 0; i <= kMaxExternalIdsPerLookup; ++i) lookup.add_external_ids(std::to_string(i));
  refused("external_ids");
  lookup.clear_external_ids();
  lookup.add_external_ids("ok-1");
  lookup.add_external_ids("bad id");
  refused("external_ids[1]");
  lookup.clear_external_ids();
  lookup.add_external_ids("ok-1");
  CHECK(client.Ok(&Stub::LookupCustomers, lookup).customers().empty());
}

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

TEST_CASE_METHOD(
    ProfileTest,
    "backup: a checkpoint through StoreAdminService restores to exactly the store it copied") {
  using AdminStub = v1::StoreAdminService::Stub;
  auto admin = v1::StoreAdminService::NewStub(h.channel());
  const v1::Customer before = client.Register("before@example.com");

  v1::CreateCheckpointRequest cp;
  cp.set_service("customer-profile");
  cp.set_name("nightly-1");
  const v1::CreateCheckpointResponse made =
      testing::CallOk(admin.get(), &AdminStub::CreateCheckpoint, cp);
  REQUIRE(made.checkpoints_size() == 1);
  const std::string path = made.checkpoints(0).path();
  const auto at_backup = DumpStore(h.store());
  // The same name again is the same checkpoint (a retry), not a second one.
  CHECK(testing::CallOk(admin.get(), &AdminStub::CreateCheckpoint, cp).checkpoints(0).path() ==
        path);

  const v1::Customer after = client.Register("after@example.com");
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
  client.Reconnect();
  CHECK(client.GetStatus(before.customer_id()).ok());
  CHECK(client.GetStatus(after.customer_id()).error_code() == grpc::StatusCode::NOT_FOUND);

  // Bad input is refused, naming the field.
  admin = v1::StoreAdminService::NewStub(h.channel());
  v1::CreateCheckpointResponse refused;
  cp.set_name("../escape");
  RequireError(testing::Call(admin.get(), &AdminStub::CreateCheckpoint, cp, &refused),
               grpc::StatusCode::INVALID_ARGUMENT, "name");
  cp.set_name("ok");
  cp.set_service("loyalty");
  RequireError(testing::Call(admin.get(), &AdminStub::CreateCheckpoint, cp, &refused),
               grpc::StatusCode::INVALID_ARGUMENT, "service");
}

}  // namespace
}  // namespace crm::customer_profile
