// crm.v1.LoyaltyService end to end: the real loyalty service (with customer-profile, and
// order-tracking where trades and real order events are needed) on loopback ports over real
// RocksDB.
#include <fstream>
#include <random>

#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/loyalty.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "libs/api/validate.h"
#include "services/customer_profile/customer_profile_component.h"
#include "services/loyalty/loyalty_component.h"
#include "services/loyalty/loyalty_rules.h"
#include "services/order_tracking/order_tracking_component.h"
#include "tests/support/concurrent_calls.h"
#include "tests/support/forced_conflict.h"
#include "tests/support/metric_value.h"
#include "tests/support/metrics_page.h"
#include "tests/support/process.h"
#include "tests/support/require_ok.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"
#include "tests/support/shop_calls.h"
#include "tests/support/test_time.h"
#include "tests/support/wait.h"
#include "tests/support/with_customer_profile.h"

namespace crm::loyalty {
namespace {

using LoyaltyHarness = testing::ServiceHarness<LoyaltyComponent>;
using OrderHarness = testing::ServiceHarness<order_tracking::OrderTrackingComponent>;
using Stub = v1::LoyaltyService::Stub;

using testing::Call;
using testing::CallOk;
using testing::RequireError;
using testing::StatusOf;

// loyalty, calling customer-profile.
struct World : testing::WithCustomerProfile {
  explicit World(bool serve_metrics = false)
      : loyalty(CallingProfile(LoyaltyOptions(serve_metrics))) {}
  static LoyaltyHarness::Options LoyaltyOptions(bool serve_metrics) {
    LoyaltyHarness::Options o;
    o.serve_metrics = serve_metrics;
    return o;
  }

  // Delivers events to loyalty's EventSink as a producer would.
  void Deliver(const std::vector<v1::Event>& events) { testing::DeliverEvents(sink.get(), events); }

  v1::Event Delivered(const std::string& cid, const std::string& order_id,
                      std::vector<std::tuple<std::string, std::string, int, int64_t>> items,
                      absl::Time when) {
    v1::Event e = testing::EventFrom("order-tracking", ++seq, cid, when);
    auto* d = e.mutable_order_delivered();
    d->set_order_id(order_id);
    int64_t total = 0;
    for (const auto& [item_id, category, qty, unit] : items) {
      auto* i = d->add_items();
      i->set_item_id(item_id);
      i->set_sku("sku-" + item_id);
      i->set_category(category);
      i->set_quantity(qty);
      i->mutable_unit_price()->set_amount_minor(unit);
      i->mutable_unit_price()->set_currency("CNY");
      total += unit * qty;
    }
    d->mutable_items_amount()->set_amount_minor(total);
    d->mutable_items_amount()->set_currency("CNY");
    return e;
  }

  v1::Event Refunded(const std::string& cid, const std::string& order_id,
                     const std::string& return_id, std::vector<std::pair<std::string, int>> items,
                     absl::Time when) {
    v1::Event e = testing::EventFrom("order-tracking", ++seq, cid, when);
    auto* r = e.mutable_order_refunded();
    r->set_order_id(order_id);
    r->set_return_id(return_id);
    for (const auto& [item_id, qty] : items) {
      auto* i = r->add_items();
      i->set_item_id(item_id);
      i->set_quantity(qty);
    }
    return e;
  }

  v1::Membership Membership(const std::string& cid) {
    return CallOk(stub.get(), &Stub::GetMembership,
                  testing::ForCustomer<v1::GetMembershipRequest>(cid));
  }

  std::vector<v1::LedgerEntry> Ledger(const std::string& cid, int64_t* balance = nullptr) {
    std::vector<v1::LedgerEntry> all;
    auto req = testing::ForCustomer<v1::ListPointsHistoryRequest>(cid);
    req.set_page_size(1000);
    for (;;) {
      const v1::ListPointsHistoryResponse resp = CallOk(stub.get(), &Stub::ListPointsHistory, req);
      all.insert(all.end(), resp.entries().begin(), resp.entries().end());
      if (balance != nullptr) *balance = resp.balance();
      if (resp.next_page_token().empty()) break;
      req.set_page_token(resp.next_page_token());
    }
    return all;
  }

  LoyaltyHarness loyalty;
  std::unique_ptr<Stub> stub = v1::LoyaltyService::NewStub(loyalty.channel());
  std::unique_ptr<v1::EventSink::Stub> sink = v1::EventSink::NewStub(loyalty.channel());
  int seq = 0;
};

v1::GrantPointsRequest GrantRequest(const std::string& cid, int64_t points,
                                    const std::string& source_id, v1::PointsSource source) {
  v1::GrantPointsRequest grant;
  grant.set_customer_id(cid);
  grant.set_points(points);
  grant.set_source_id(source_id);
  grant.set_source(source);
  return grant;
}

constexpr absl::Time kT0 = testing::kHarnessStart;

TEST_CASE(
    "a new customer is a registered member, an unknown one is NOT_FOUND, the rules are published",
    "[loyalty]") {
  World w;
  const v1::Membership m = w.Membership(w.Customer("new@example.com"));
  CHECK(m.tier() == v1::TIER_REGISTERED);
  CHECK(m.growth_value() == 0);
  CHECK(m.next_tier() == v1::TIER_BRONZE);
  CHECK(m.credit().level_name() == "no level yet");
  RequireError(StatusOf(w.stub.get(), &Stub::GetMembership,
                        testing::ForCustomer<v1::GetMembershipRequest>("c-nobody")),
               grpc::StatusCode::NOT_FOUND, "customer_id:");
  const v1::LoyaltyRules rules = CallOk(w.stub.get(), &Stub::GetRules, v1::GetRulesRequest());
  CHECK(rules.tiers_size() == 5);
  CHECK(rules.tiers(4).name() == "Diamond");
  RequireError(StatusOf(w.stub.get(), &Stub::ReloadRules, v1::ReloadRulesRequest()),
               grpc::StatusCode::FAILED_PRECONDITION, "no --rules_file");
}

TEST_CASE(
    "a delivered order earns growth and points, explained entry by entry, its refund takes exactly "
    "that back",
    "[loyalty]") {
  World w;
  const std::string cid = w.Customer("earn@example.com");
  w.loyalty.clock().Set(kT0 + absl::Hours(24 * 10));
  const auto delivered = w.Delivered(
      cid, "o1", {{"1", "phones", 1, 399900}, {"2", "cables", 3, 2900}}, kT0 + absl::Hours(24 * 9));
  w.Deliver({delivered});
  w.Deliver({delivered});  // redelivered: changes nothing
  v1::Membership m = w.Membership(cid);
  CHECK(m.growth_value() == 3999 + 87);
  CHECK(m.tier() == v1::TIER_SILVER);
  CHECK(m.points_balance() == 3999 + 87);

  const v1::MembershipExplanation explanation =
      CallOk(w.stub.get(), &Stub::ExplainMembership,
             testing::ForCustomer<v1::ExplainMembershipRequest>(cid));
  REQUIRE(explanation.growth_entries_size() == 1);
  int64_t sum = 0;
  for (const auto& g : explanation.growth_entries()) sum += g.growth();
  CHECK(sum == explanation.membership().growth_value());
  CHECK(explanation.growth_entries(0).rule().find(
            "phones: 1.00 growth per unit x 3999.00 = 3999") != std::string::npos);
  CHECK(explanation.next_tier() == v1::TIER_GOLD);
  CHECK(explanation.growth_needed() == 10000 - 4086);
  CHECK(explanation.downgrade_tier() == v1::TIER_REGISTERED);  // when that order leaves the window
  REQUIRE(explanation.tier_history_size() >= 1);
  CHECK(explanation.tier_history(explanation.tier_history_size() - 1).to_tier() == v1::TIER_SILVER);

  // Return of one of three cables, then of the phone: growth and points go back exactly.
  w.Deliver({w.Refunded(cid, "o1", "r1", {{"2", 1}}, kT0 + absl::Hours(24 * 12))});
  m = w.Membership(cid);
  CHECK(m.growth_value() == 3999 + 58);
  w.Deliver({w.Refunded(cid, "o1", "r2", {{"1", 1}, {"2", 2}}, kT0 + absl::Hours(24 * 13))});
  m = w.Membership(cid);
  CHECK(m.growth_value() == 0);
  CHECK(m.points_balance() == 0);
  CHECK(m.tier() == v1::TIER_REGISTERED);
  int64_t balance = -1, ledger_sum = 0;
  for (const auto& e : w.Ledger(cid, &balance)) ledger_sum += e.points();
  CHECK(ledger_sum == balance);
}

TEST_CASE("reviews earn review points and growth once, referrals once per referred customer",
          "[loyalty]") {
  World w;
  const std::string cid = w.Customer("review@example.com");
  const std::string friend_id = w.Customer("friend@example.com");
  v1::Event review;
  review.set_event_id("order-tracking/0/1.99");
  review.set_customer_id(cid);
  api::SetTimestamp(kT0, review.mutable_occur_time());
  review.mutable_review_submitted()->set_review_id("rv1");
  review.mutable_review_submitted()->set_rating(5);
  w.Deliver({review});
  review.set_event_id("order-tracking/0/1.100");  // a different event about the same review
  w.Deliver({review});
  v1::Membership m = w.Membership(cid);
  CHECK(m.points_balance() == 50);
  CHECK(m.growth_value() == 20);
  auto ref = testing::ForCustomer<v1::RecordReferralRequest>(cid);
  ref.set_referred_customer_id(friend_id);
  CallOk(w.stub.get(), &Stub::RecordReferral, ref);
  m = CallOk(w.stub.get(), &Stub::RecordReferral, ref);  // a retry counts once
  CHECK(m.points_balance() == 250);
  CHECK(m.growth_value() == 120);
  ref.set_referred_customer_id(cid);
  RequireError(StatusOf(w.stub.get(), &Stub::RecordReferral, ref),
               grpc::StatusCode::INVALID_ARGUMENT, "referred_customer_id:");
  ref.set_referred_customer_id("c-ghost");
  RequireError(StatusOf(w.stub.get(), &Stub::RecordReferral, ref), grpc::StatusCode::NOT_FOUND,
               "referred_customer_id:");
}

TEST_CASE("points: grant once per source, redeem only what is there, retry-safe",
          "[loyalty][points]") {
  World w;
  const std::string cid = w.Customer("points@example.com");
  v1::GrantPointsRequest grant =
      GrantRequest(cid, 300, "ticket:t1:compensation", v1::POINTS_SOURCE_COMPENSATION);
  const v1::LedgerEntry first = CallOk(w.stub.get(), &Stub::GrantPoints, grant);
  CHECK(CallOk(w.stub.get(), &Stub::GrantPoints, grant).entry_id() == first.entry_id());
  auto refused_grant = [&](grpc::StatusCode code, const std::string& field) {
    RequireError(StatusOf(w.stub.get(), &Stub::GrantPoints, grant), code, field);
  };
  grant.set_points(500);
  refused_grant(grpc::StatusCode::INVALID_ARGUMENT, "source_id:");
  grant.set_points(0);
  refused_grant(grpc::StatusCode::INVALID_ARGUMENT, "points:");
  grant.set_points(10);
  grant.set_source(v1::POINTS_SOURCE_PURCHASE);
  refused_grant(grpc::StatusCode::INVALID_ARGUMENT, "source:");
  grant.set_customer_id("c-nobody");
  grant.set_source(v1::POINTS_SOURCE_PROMOTION);
  refused_grant(grpc::StatusCode::NOT_FOUND, "customer_id:");

  auto redeem = testing::ForCustomer<v1::RedeemPointsRequest>(cid);
  redeem.set_request_id("buy-1");
  redeem.set_points(301);
  RequireError(StatusOf(w.stub.get(), &Stub::RedeemPoints, redeem),
               grpc::StatusCode::FAILED_PRECONDITION, "points:");
  CHECK(w.Membership(cid).points_balance() == 300);
  redeem.set_points(-5);
  RequireError(StatusOf(w.stub.get(), &Stub::RedeemPoints, redeem),
               grpc::StatusCode::INVALID_ARGUMENT, "points:");
  redeem.set_points(120);
  const v1::LedgerEntry spent = CallOk(w.stub.get(), &Stub::RedeemPoints, redeem);
  CHECK(CallOk(w.stub.get(), &Stub::RedeemPoints, redeem).entry_id() == spent.entry_id());
  CHECK(w.Membership(cid).points_balance() == 180);
}

TEST_CASE("parallel redemptions against one balance never overspend",
          "[loyalty][points][concurrency]") {
  World w;
  const std::string cid = w.Customer("race@example.com");
  CallOk(w.stub.get(), &Stub::GrantPoints,
         GrantRequest(cid, 1000, "promo:1", v1::POINTS_SOURCE_PROMOTION));
  auto outcomes = testing::CallsAtOnce(40, [&](int i) {
    auto stub = v1::LoyaltyService::NewStub(w.loyalty.channel());
    auto r = testing::ForCustomer<v1::RedeemPointsRequest>(cid);
    r.set_request_id("r-" + std::to_string(i));
    r.set_points(100);
    return StatusOf(stub.get(), &Stub::RedeemPoints, r);
  });
  CHECK(outcomes[grpc::StatusCode::OK] == 10);
  CHECK(outcomes[grpc::StatusCode::FAILED_PRECONDITION] == 30);
  int64_t balance = -1, sum = 0;
  for (const auto& entry : w.Ledger(cid, &balance)) sum += entry.points();
  CHECK(balance == 0);
  CHECK(sum == 0);
}

TEST_CASE("points expire at the end of the following year, once, however often the sweep runs",
          "[loyalty][expiry]") {
  World w(/*serve_metrics=*/true);
  const std::string cid = w.Customer("expiry@example.com");
  w.Deliver({w.Delivered(cid, "o1", {{"1", "books", 1, 10000}},
                         kT0)});  // earned 2026-01-01 08:00 Beijing
  CHECK(w.Membership(cid).points_balance() == 100);
  auto expired_by_sweep = [&] {
    return CallOk(w.stub.get(), &Stub::RunMaintenance, v1::RunMaintenanceRequest())
        .points_expired();
  };
  w.loyalty.clock().Set(
      absl::FromCivil(absl::CivilSecond(2027, 12, 31, 15, 59, 0), absl::UTCTimeZone()));
  CHECK(expired_by_sweep() == 0);  // one minute before midnight in Beijing
  w.loyalty.clock().Advance(absl::Minutes(2));
  CHECK(expired_by_sweep() == 100);
  CHECK(expired_by_sweep() == 0);
  CHECK(w.Membership(cid).points_balance() == 0);
  const std::string page = testing::MetricsPage(w.loyalty.metrics().port());
  testing::CheckPageShows(
      page, {"crm_points_expired_total 100", "crm_points_issued_total{source=\"purchase\"} 100"});
  testing::CheckPromtoolAccepts(page);
}

TEST_CASE("tiers move down when growth leaves the 12-month window, with the reason recorded",
          "[loyalty][tiers]") {
  World w;
  const std::string cid = w.Customer("window@example.com");
  w.Deliver({w.Delivered(cid, "o1", {{"1", "phones", 1, 250000}}, kT0)});
  CHECK(w.Membership(cid).tier() == v1::TIER_SILVER);
  auto tier_changes_by_sweep = [&] {
    return CallOk(w.stub.get(), &Stub::RunMaintenance, v1::RunMaintenanceRequest()).tier_changes();
  };
  w.loyalty.clock().Set(kT0 + absl::Hours(24 * 366));
  CHECK(tier_changes_by_sweep() == 1);
  CHECK(tier_changes_by_sweep() == 0);
  const v1::MembershipExplanation e =
      CallOk(w.stub.get(), &Stub::ExplainMembership,
             testing::ForCustomer<v1::ExplainMembershipRequest>(cid));
  CHECK(e.membership().tier() == v1::TIER_REGISTERED);
  CHECK(e.growth_entries_size() == 0);
  const auto& last = e.tier_history(e.tier_history_size() - 1);
  CHECK(last.from_tier() == v1::TIER_SILVER);
  CHECK(last.reason().find("below Silver (2000)") != std::string::npos);
}

TEST_CASE("enterprise accounts get the enterprise terms, coupons are issued once per source",
          "[loyalty]") {
  World w;
  const std::string cid = w.Customer("corp@example.com");
  auto ent = testing::ForCustomer<v1::SetEnterpriseAccountRequest>(cid);
  ent.set_enterprise(true);
  ent.set_company_name("深圳某某科技有限公司");
  ent.set_named_agent_id("agent-7");
  const v1::Membership m = CallOk(w.stub.get(), &Stub::SetEnterpriseAccount, ent);
  CHECK(m.enterprise());
  CHECK(m.enterprise_terms().response_minutes() == 30);
  CHECK(m.named_agent_id() == "agent-7");
  ent.clear_named_agent_id();
  RequireError(StatusOf(w.stub.get(), &Stub::SetEnterpriseAccount, ent),
               grpc::StatusCode::INVALID_ARGUMENT, "named_agent_id:");

  auto coupon = testing::ForCustomer<v1::IssueCouponRequest>(cid);
  coupon.set_source_id("ticket:t9:coupon");
  coupon.mutable_value()->set_amount_minor(2000);
  coupon.mutable_value()->set_currency("CNY");
  const v1::Coupon issued = CallOk(w.stub.get(), &Stub::IssueCoupon, coupon);
  CHECK(CallOk(w.stub.get(), &Stub::IssueCoupon, coupon).coupon_id() == issued.coupon_id());
  CHECK(CallOk(w.stub.get(), &Stub::ListCoupons, testing::ForCustomer<v1::ListCouponsRequest>(cid))
            .coupons_size() == 1);
  coupon.mutable_value()->set_amount_minor(0);
  RequireError(StatusOf(w.stub.get(), &Stub::IssueCoupon, coupon),
               grpc::StatusCode::INVALID_ARGUMENT, "value.amount_minor:");
}

TEST_CASE("an erased customer's ledger is anonymised and the membership is gone",
          "[loyalty][privacy]") {
  World w;
  const std::string cid = w.Customer("gone@example.com");
  w.Deliver({w.Delivered(cid, "o1", {{"1", "books", 1, 10000}}, kT0)});
  v1::Event erased;
  erased.set_event_id("customer-profile/0/1.5");
  erased.set_customer_id(cid);
  api::SetTimestamp(kT0, erased.mutable_occur_time());
  erased.mutable_customer_erased();
  w.Deliver({erased});
  RequireError(StatusOf(w.stub.get(), &Stub::GetMembership,
                        testing::ForCustomer<v1::GetMembershipRequest>(cid)),
               grpc::StatusCode::NOT_FOUND, "customer_id:");
  w.Deliver(
      {w.Delivered(cid, "o2", {{"1", "books", 1, 10000}}, kT0)});  // late events change nothing
}

// Property: a random history of deliveries, refunds, reviews, redemptions and redelivered events
// keeps the books exact.
TEST_CASE("a random history keeps balance = ledger sum >= 0 and refunded orders net zero",
          "[loyalty][property]") {
  World w;
  const std::string cid = w.Customer("property@example.com");
  std::mt19937 rng(20261123);
  std::vector<v1::Event> sent;
  struct OrderInfo {
    std::vector<std::pair<std::string, int>> items;
    bool refunded = false;
  };
  std::map<std::string, OrderInfo> orders;
  absl::Time now = kT0;
  int redemptions = 0, refunds = 0, redelivered = 0;
  for (int step = 0; step < 2500; ++step) {
    now += absl::Minutes(37);
    w.loyalty.clock().Set(now);
    const int dice = static_cast<int>(rng() % 100);
    if (dice < 40) {
      const std::string oid = "o" + std::to_string(step);
      std::vector<std::tuple<std::string, std::string, int, int64_t>> items;
      OrderInfo info;
      const int n = 1 + static_cast<int>(rng() % 3);
      for (int k = 1; k <= n; ++k) {
        const int qty = 1 + static_cast<int>(rng() % 3);
        items.emplace_back(std::to_string(k), k == 1 ? "phones" : "books", qty,
                           100 + static_cast<int64_t>(rng() % 50000));
        info.items.emplace_back(std::to_string(k), qty);
      }
      orders[oid] = info;
      sent.push_back(w.Delivered(cid, oid, items, now));
      w.Deliver({sent.back()});
    } else if (dice < 55 && !orders.empty()) {
      auto it = std::next(orders.begin(), static_cast<long>(rng() % orders.size()));
      if (it->second.refunded) continue;
      it->second.refunded = true;
      sent.push_back(w.Refunded(cid, it->first, "ret-" + it->first, it->second.items, now));
      w.Deliver({sent.back()});
      ++refunds;
    } else if (dice < 75) {
      auto r = testing::ForCustomer<v1::RedeemPointsRequest>(cid);
      r.set_request_id("redeem-" + std::to_string(step));
      r.set_points(1 + static_cast<int64_t>(rng() % 800));
      const grpc::Status s = StatusOf(w.stub.get(), &Stub::RedeemPoints, r);
      REQUIRE((s.ok() || s.error_code() == grpc::StatusCode::FAILED_PRECONDITION));
      redemptions += s.ok();
    } else if (dice < 85) {
      v1::Event review;
      review.set_event_id("order-tracking/0/2." + std::to_string(step));
      review.set_customer_id(cid);
      api::SetTimestamp(now, review.mutable_occur_time());
      review.mutable_review_submitted()->set_review_id(
          "rv" + std::to_string(step % 50));  // repeats some reviews
      sent.push_back(review);
      w.Deliver({review});
    } else if (!sent.empty()) {
      w.Deliver({sent[rng() % sent.size()]});  // a redelivery
      ++redelivered;
    }
    if (step % 100 == 0) CHECK(w.Membership(cid).points_balance() >= 0);
  }
  // A large final order settles whatever refunds left owed.
  w.Deliver({w.Delivered(cid, "final", {{"1", "books", 1, 100000000}}, now)});
  const v1::Membership m = w.Membership(cid);
  CHECK(m.points_owed() == 0);
  int64_t balance = -1, sum = 0;
  std::map<std::string, int64_t> net;
  const auto ledger = w.Ledger(cid, &balance);
  for (const auto& e : ledger) {
    sum += e.points();
    if (!e.order_id().empty()) net[e.order_id()] += e.points();
  }
  CHECK(balance == m.points_balance());
  CHECK(sum == balance);
  CHECK(balance >= 0);
  int refunded_checked = 0;
  for (const auto& [oid, info] : orders) {
    if (!info.refunded) continue;
    INFO(oid);
    CHECK(net[oid] == 0);
    ++refunded_checked;
  }
  CHECK(refunded_checked == refunds);
  CHECK(refunds > 50);
  CHECK(redemptions > 50);
  CHECK(redelivered > 50);
}

// Orders delivered through the real order-tracking service reach loyalty through the outbox.
TEST_CASE("an order delivered in order-tracking earns growth in loyalty, trades are rated once",
          "[loyalty][events]") {
  World w;
  OrderHarness::Options oo = w.CallingProfile(OrderHarness::Options());
  oo.event_sinks = "loyalty=" + testing::LoopbackAddress(w.loyalty.port());
  OrderHarness orders(oo);
  w.loyalty.backends().SetAddress("order-tracking", testing::LoopbackAddress(orders.port()));
  const std::string cid = w.Customer("chain@example.com");
  testing::AddAddress(w.profiles.get(), cid, "a", "周敏", "南京", "中山路1号");
  auto ostub = v1::OrderTrackingService::NewStub(orders.channel());
  v1::Order order = testing::PlaceCashOnDeliveryOrder(ostub.get(), cid, "sku-kettle", "kitchen",
                                                      259900, kT0, absl::Hours(2));

  auto rate = testing::AboutOrder<v1::RateTradeRequest>(order);
  rate.set_rating(v1::TRADE_RATING_GOOD);
  RequireError(StatusOf(w.stub.get(), &Stub::RateTrade, rate),
               grpc::StatusCode::FAILED_PRECONDITION, "order_id:");

  order = testing::ShipAndDeliver(ostub.get(), order, "EMS", "EMS1");
  testing::WaitUntil([&] { return w.Membership(cid).growth_value() != 0; }, absl::Seconds(30));
  CHECK(w.Membership(cid).growth_value() == 2599);
  CHECK(w.Membership(cid).tier() == v1::TIER_SILVER);

  CallOk(w.stub.get(), &Stub::RateTrade, rate);
  const v1::CreditStanding credit = CallOk(w.stub.get(), &Stub::RateTrade, rate);  // a retry
  CHECK(credit.score() == 1);
  CHECK(credit.good_count() == 1);
  CHECK(credit.good_rate_percent() == Approx(100));
  rate.set_order_id("o-unknown");
  RequireError(StatusOf(w.stub.get(), &Stub::RateTrade, rate), grpc::StatusCode::NOT_FOUND,
               "order_id:");
}

TEST_CASE("the loyalty binary refuses to start on a malformed rules file, naming the line",
          "[loyalty][e2e]") {
  testing::TempDir dir;
  const std::string path = dir.Sub("rules.textproto");
  {
    std::ofstream f(path);
    f << "tiers {\n  tier: TIER_REGISTERED\n  name: \"Registered\"\n}\ngrowth { window_days: 0 }\n";
  }
  testing::Process p(testing::Process::BuildPath("services/loyalty/loyalty"),
                     {"--listen=127.0.0.1:0", "--metrics_listen=off",
                      "--data_dir=" + dir.Sub("data"), "--rules_file=" + path});
  REQUIRE_OK(p.Start());
  CHECK(p.Wait() != 0);
  INFO(p.output());
  CHECK(p.output().find("line 5") != std::string::npos);
  CHECK(p.output().find("growth.window_days") != std::string::npos);
}

TEST_CASE(
    "counted once: a delivery applied by a transaction that runs again after a conflict moves the "
    "metrics once",
    "[loyalty][metrics]") {
  World w;
  const std::string cid = w.Customer("conflict@example.com");
  const v1::Event delivered = w.Delivered(cid, "o1", {{"1", "phones", 1, 250000}}, kT0);
  // The first attempt loses a lock conflict after the handler ran, as the consumer's transaction
  // does when a concurrent writer holds a key it touches next; Transact rolls back and runs the
  // handler again.
  int attempts = 0;
  const absl::Status s = testing::TransactLosingFirstAttempt(
      w.loyalty.store(),
      [&](store::Transaction& txn) {
        return w.loyalty.component().service().HandleEvent(txn, delivered);
      },
      &attempts);
  REQUIRE_OK(s);
  CHECK(attempts == 2);
  // The counters agree with the store: the points the ledger holds, one member in one tier.
  int64_t balance = -1;
  (void)w.Ledger(cid, &balance);
  REQUIRE(balance > 0);
  auto& registry = w.loyalty.metrics().registry();
  CHECK(testing::MetricValue(registry, "crm_points_issued_total") == static_cast<double>(balance));
  CHECK(testing::MetricValue(registry, "crm_loyalty_members") == 1);
}

}  // namespace
}  // namespace crm::loyalty
