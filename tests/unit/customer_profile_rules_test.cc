#include "catch2/catch.hpp"
#include "libs/api/validate.h"
#include "libs/behavior/interest.h"
#include "services/customer_profile/contact_policy.h"
#include "services/customer_profile/profile_rules.h"

namespace crm::customer_profile {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1767225600);  // 2026-01-01

TEST_CASE("emails are trimmed and lower-cased", "[customer_profile][email]") {
  CHECK(NormalizeEmail("email", "  Li.Wei+shop@Example.COM ").value() == "li.wei+shop@example.com");
}

TEST_CASE("malformed emails are refused with a reason", "[customer_profile][email]") {
  for (const char* bad : {"", "plain", "a@b", "a@@b.com", "@b.com", "a@.com", "a@b..com",
                          "a b@c.com", ".a@b.com", "a..b@c.com", "a@-b.com", "a@b.com\xff"}) {
    INFO(bad);
    const auto r = NormalizeEmail("email", bad);
    REQUIRE_FALSE(r.ok());
    CHECK(absl::IsInvalidArgument(r.status()));
    CHECK(r.status().message().rfind("email: ", 0) == 0);
  }
  CHECK_FALSE(NormalizeEmail("email", std::string(250, 'a') + "@b.com").ok());
}

TEST_CASE("phones must be E.164", "[customer_profile][phone]") {
  CHECK(ValidatePhone("phone", "").ok());
  CHECK(ValidatePhone("phone", "+8613800138000").ok());
  CHECK_FALSE(ValidatePhone("phone", "13800138000").ok());
  CHECK_FALSE(ValidatePhone("phone", "+0123456789").ok());
  CHECK_FALSE(ValidatePhone("phone", "+86 138 0013").ok());
}

TEST_CASE("birthdays are real past dates", "[customer_profile][birthday]") {
  v1::Date d;
  CHECK(ValidateBirthday("birthday", d, kNow).ok());  // not given
  d.set_year(1990);
  d.set_month(2);
  d.set_day(28);
  CHECK(ValidateBirthday("birthday", d, kNow).ok());
  d.set_day(30);
  CHECK(ValidateBirthday("birthday", d, kNow).message() == "birthday: is not a calendar date");
  d.set_year(2030);
  d.set_day(1);
  CHECK(ValidateBirthday("birthday", d, kNow).message() == "birthday: is in the future");
  d.set_year(1800);
  CHECK_FALSE(ValidateBirthday("birthday", d, kNow).ok());
}

TEST_CASE("card numbers are detected wherever they hide", "[customer_profile][pan]") {
  CHECK(ContainsCardNumber("4111111111111111"));
  CHECK(ContainsCardNumber("4111 1111 1111 1111"));
  CHECK(ContainsCardNumber("tok-4111-1111-1111-1111"));
  CHECK(ContainsCardNumber("6212260200000000006"));  // 19-digit UnionPay test number
  CHECK(ContainsCardNumber(std::string(25, '1')));
  CHECK_FALSE(ContainsCardNumber("4111111111111112"));  // fails Luhn
  CHECK_FALSE(ContainsCardNumber("tok_1N3xYz2eZvKYlo2C"));
  CHECK_FALSE(ContainsCardNumber("4242"));
  CHECK_FALSE(ContainsCardNumber("2026-01-01 12:30"));
}

TEST_CASE("payment methods hold a token and the last four digits, never a card number",
          "[customer_profile][pan]") {
  v1::PaymentMethod m;
  m.set_type(v1::PAYMENT_METHOD_TYPE_CARD);
  m.set_token("tok_visa_abc");
  m.set_last4("4242");
  CHECK(ValidatePaymentMethod("payment_method", m).ok());
  m.set_token("4111111111111111");
  const absl::Status pan = ValidatePaymentMethod("payment_method", m);
  CHECK(absl::IsInvalidArgument(pan));
  CHECK(pan.message().rfind("payment_method.token: looks like a card number", 0) == 0);
  m.set_token("tok");
  m.set_last4("424");
  CHECK(ValidatePaymentMethod("payment_method", m).message().rfind("payment_method.last4", 0) == 0);
  m.set_last4("4242");
  m.set_token("");
  CHECK(ValidatePaymentMethod("payment_method", m).message().rfind("payment_method.token", 0) == 0);
  v1::PaymentMethod cod;
  cod.set_type(v1::PAYMENT_METHOD_TYPE_CASH_ON_DELIVERY);
  CHECK(ValidatePaymentMethod("payment_method", cod).ok());
  cod.set_type(v1::PAYMENT_METHOD_TYPE_UNSPECIFIED);
  CHECK_FALSE(ValidatePaymentMethod("payment_method", cod).ok());
}

v1::Address MakeAddress(const std::string& id) {
  v1::Address a;
  a.set_address_id(id);
  a.set_recipient_name("王芳");
  a.set_city("北京");
  a.set_street("朝阳区建国路88号");
  return a;
}

TEST_CASE("the first address becomes the default, and removing the default promotes the oldest",
          "[customer_profile][address]") {
  v1::Customer c;
  REQUIRE(AddAddress(c, MakeAddress("a1"), false).ok());
  CHECK(c.default_address_id() == "a1");
  REQUIRE(AddAddress(c, MakeAddress("a2"), false).ok());
  REQUIRE(AddAddress(c, MakeAddress("a3"), true).ok());
  CHECK(c.default_address_id() == "a3");
  REQUIRE(RemoveAddress(c, "a3").ok());
  CHECK(c.default_address_id() == "a1");
  CHECK(absl::IsNotFound(RemoveAddress(c, "nope")));
  CHECK(absl::IsNotFound(SetDefaultAddress(c, "nope")));
}

TEST_CASE("address count is capped", "[customer_profile][address]") {
  v1::Customer c;
  for (int i = 0; i < kMaxAddresses; ++i)
    REQUIRE(AddAddress(c, MakeAddress("a" + std::to_string(i)), false).ok());
  CHECK(absl::IsFailedPrecondition(AddAddress(c, MakeAddress("x"), false)));
}

TEST_CASE("an address update replaces only the named fields and keeps it valid",
          "[customer_profile][address]") {
  v1::Customer c;
  REQUIRE(AddAddress(c, MakeAddress("a1"), false).ok());
  v1::Address update;
  update.set_address_id("a1");
  update.set_city("上海");
  update.set_street("");
  google::protobuf::RepeatedPtrField<std::string> paths;
  paths.Add("city");
  auto r = UpdateAddress(c, update, paths);
  REQUIRE(r.ok());
  CHECK(r->city() == "上海");
  CHECK(r->street() == "朝阳区建国路88号");
  paths.Add("street");
  CHECK(UpdateAddress(c, update, paths).status().message() == "address.street: must not be empty");
}

TEST_CASE("repeating a consent change keeps its original time", "[customer_profile][consent]") {
  v1::Customer c;
  auto first = SetConsent(c, v1::CHANNEL_EMAIL, true, "checkout", kNow);
  auto again = SetConsent(c, v1::CHANNEL_EMAIL, true, "settings", kNow + absl::Hours(1));
  CHECK(again.update_time().seconds() == first.update_time().seconds());
  auto withdrawn =
      SetConsent(c, v1::CHANNEL_EMAIL, false, "unsubscribe-link", kNow + absl::Hours(2));
  CHECK_FALSE(withdrawn.granted());
  CHECK(withdrawn.update_time().seconds() == absl::ToUnixSeconds(kNow + absl::Hours(2)));
  CHECK(c.marketing_consents_size() == 1);
}

TEST_CASE("contact needs consent and respects the frequency cap", "[customer_profile][contact]") {
  v1::Customer c;
  CHECK(DecideContact(c, v1::CHANNEL_EMAIL, {}, kNow).reason() ==
        v1::ContactDecision::REASON_NO_CONSENT);
  SetConsent(c, v1::CHANNEL_EMAIL, true, "", kNow);
  CHECK(DecideContact(c, v1::CHANNEL_EMAIL, {}, kNow).allowed());
  CHECK_FALSE(DecideContact(c, v1::CHANNEL_SMS, {}, kNow).allowed());
  const std::vector<absl::Time> three = {kNow - absl::Hours(24 * 6), kNow - absl::Hours(2),
                                         kNow - absl::Hours(1)};
  auto capped = DecideContact(c, v1::CHANNEL_EMAIL, three, kNow);
  CHECK(capped.reason() == v1::ContactDecision::REASON_FREQUENCY_CAP);
  CHECK(capped.contacts_in_period() == 3);
  // The oldest of the three leaves the 7-day window one day from now.
  CHECK(api::FromTimestamp(capped.next_allowed_time()) == kNow + absl::Hours(24));
  const std::vector<absl::Time> old = {kNow - absl::Hours(24 * 8), kNow - absl::Hours(24 * 9),
                                       kNow - absl::Hours(1)};
  CHECK(DecideContact(c, v1::CHANNEL_EMAIL, old, kNow).allowed());
  c.mutable_preferences()->mutable_contact_cap()->set_max_contacts(1);
  c.mutable_preferences()->mutable_contact_cap()->set_period_days(30);
  CHECK_FALSE(DecideContact(c, v1::CHANNEL_EMAIL, old, kNow).allowed());
}

v1::BehaviorEvent View(int dwell) {
  v1::BehaviorEvent e;
  e.set_type(v1::BEHAVIOR_EVENT_TYPE_ITEM_VIEW);
  e.set_category("phones");
  e.set_sku("p1");
  e.set_dwell_seconds(dwell);
  return e;
}

double Weight(const v1::BehaviorEvent& e) {
  return behavior::InterestWeight(behavior::ActionOf(e.type()), e.dwell_seconds());
}
void Accumulate(v1::CategoryAffinity& a, const v1::BehaviorEvent& e, absl::Time t) {
  behavior::Accumulate(a, behavior::ActionOf(e.type()), e.dwell_seconds(), t);
}
using behavior::AffinityAsOf;
constexpr absl::Duration kAffinityHalfLife = behavior::kInterestHalfLife;

TEST_CASE("a long look weighs more than flipping past", "[customer_profile][affinity]") {
  CHECK(Weight(View(2)) < Weight(View(10)));
  CHECK(Weight(View(10)) < Weight(View(60)));
  CHECK(Weight(View(100000)) == Approx(5.0));
  CHECK(behavior::ActionOf("item_view") == behavior::Action::kItemView);
}

TEST_CASE("affinity halves every half-life and classifies engagement",
          "[customer_profile][affinity]") {
  v1::CategoryAffinity a;
  Accumulate(a, View(60), kNow);
  Accumulate(a, View(60), kNow);
  const double fresh = AffinityAsOf(a, kNow).score();
  CHECK(AffinityAsOf(a, kNow + kAffinityHalfLife).score() == Approx(fresh / 2));
  CHECK(AffinityAsOf(a, kNow).engagement() == v1::ENGAGEMENT_LOOKED_CLOSELY);
  v1::CategoryAffinity skim;
  for (int i = 0; i < 5; ++i) Accumulate(skim, View(2), kNow);
  CHECK(AffinityAsOf(skim, kNow).engagement() == v1::ENGAGEMENT_FLIPPED_THROUGH);
}

TEST_CASE("events arriving out of order give the same score as in order",
          "[customer_profile][affinity]") {
  v1::CategoryAffinity in_order, out_of_order;
  Accumulate(in_order, View(10), kNow);
  Accumulate(in_order, View(60), kNow + absl::Hours(48));
  Accumulate(out_of_order, View(60), kNow + absl::Hours(48));
  Accumulate(out_of_order, View(10), kNow);
  const absl::Time later = kNow + absl::Hours(100);
  CHECK(AffinityAsOf(in_order, later).score() == Approx(AffinityAsOf(out_of_order, later).score()));
}

}  // namespace
}  // namespace crm::customer_profile
