#include "services/order_tracking/order_lifecycle.h"

#include "catch2/catch.hpp"
#include "libs/api/validate.h"
#include "libs/base/error_reason.h"
#include "libs/sharding/shard_map.h"
#include "services/order_tracking/order_workflows.h"
#include "services/order_tracking/returns.h"
#include "tests/support/source_files.h"

namespace crm::order_tracking {
namespace {

using P = v1::PackageStatus;
const absl::Time kT0 = absl::FromUnixSeconds(1767225600);  // 2026-01-01

TEST_CASE("only the documented package moves are allowed", "[order_tracking][lifecycle]") {
  const std::vector<std::pair<P, P>> allowed = {
      {v1::PACKAGE_STATUS_AT_PROCESSING_CENTER, v1::PACKAGE_STATUS_PICKING},
      {v1::PACKAGE_STATUS_PICKING, v1::PACKAGE_STATUS_PACKED},
      {v1::PACKAGE_STATUS_PACKED, v1::PACKAGE_STATUS_HANDED_TO_CARRIER},
      {v1::PACKAGE_STATUS_HANDED_TO_CARRIER, v1::PACKAGE_STATUS_OUT_FOR_DELIVERY},
      {v1::PACKAGE_STATUS_HANDED_TO_CARRIER, v1::PACKAGE_STATUS_DELIVERED},
      {v1::PACKAGE_STATUS_HANDED_TO_CARRIER, v1::PACKAGE_STATUS_DELIVERY_FAILED},
      {v1::PACKAGE_STATUS_OUT_FOR_DELIVERY, v1::PACKAGE_STATUS_DELIVERED},
      {v1::PACKAGE_STATUS_OUT_FOR_DELIVERY, v1::PACKAGE_STATUS_DELIVERY_FAILED},
      {v1::PACKAGE_STATUS_DELIVERY_FAILED, v1::PACKAGE_STATUS_OUT_FOR_DELIVERY},
      {v1::PACKAGE_STATUS_DELIVERY_FAILED, v1::PACKAGE_STATUS_DELIVERED},
      {v1::PACKAGE_STATUS_DELIVERY_FAILED, v1::PACKAGE_STATUS_RETURNED_TO_SENDER},
  };
  int refused = 0;
  for (int from = 1; from <= 8; ++from) {
    for (int to = 1; to <= 8; ++to) {
      const bool expected = std::find(allowed.begin(), allowed.end(),
                                      std::make_pair(P(from), P(to))) != allowed.end();
      const absl::Status s = CheckPackageMove(P(from), P(to));
      INFO(PackageStatusName(P(from)) << " -> " << PackageStatusName(P(to)));
      CHECK(s.ok() == expected);
      if (!expected) {
        CHECK(absl::IsFailedPrecondition(s));
        ++refused;
      }
    }
  }
  CHECK(refused == 64 - static_cast<int>(allowed.size()));
}

v1::Order TwoPackageOrder() {
  v1::Order o;
  o.set_order_id("o1");
  o.set_status(v1::ORDER_STATUS_PAID);
  for (int i = 1; i <= 2; ++i) {
    auto* it = o.add_items();
    it->set_item_id(std::to_string(i));
    it->set_quantity(2);
    it->set_category("phones");
    it->mutable_unit_price()->set_amount_minor(1000);
    it->mutable_unit_price()->set_currency("CNY");
  }
  api::SetTimestamp(kT0 + absl::Hours(48), o.mutable_delivery_window()->mutable_start_time());
  api::SetTimestamp(kT0 + absl::Hours(52), o.mutable_delivery_window()->mutable_end_time());
  return o;
}

google::protobuf::RepeatedPtrField<v1::PackagePlan> Split() {
  google::protobuf::RepeatedPtrField<v1::PackagePlan> plan;
  for (int i = 1; i <= 2; ++i) {
    auto* p = plan.Add();
    p->set_split_reason(i == 1 ? v1::SPLIT_REASON_FASTEST_SPLIT : v1::SPLIT_REASON_OUT_OF_STOCK);
    auto* item = p->add_items();
    item->set_item_id(std::to_string(i));
    item->set_quantity(2);
  }
  return plan;
}

TEST_CASE("a split plan must place every unit exactly once", "[order_tracking][split]") {
  v1::Order o = TwoPackageOrder();
  CHECK(CheckSplitPlan(o, Split()).ok());
  auto short_plan = Split();
  short_plan.Mutable(1)->mutable_items(0)->set_quantity(1);
  CHECK(absl::IsInvalidArgument(CheckSplitPlan(o, short_plan)));
  auto unknown = Split();
  unknown.Mutable(0)->mutable_items(0)->set_item_id("9");
  CHECK(CheckSplitPlan(o, unknown).message().rfind("packages[0].items[0].item_id", 0) == 0);
  auto no_reason = Split();
  no_reason.Mutable(0)->set_split_reason(v1::SPLIT_REASON_UNSPECIFIED);
  CHECK_FALSE(CheckSplitPlan(o, no_reason).ok());
  CreatePackages(o, {});
  REQUIRE(o.packages_size() == 1);
  CHECK(o.packages(0).items_size() == 2);
  CHECK(o.status() == v1::ORDER_STATUS_AT_PROCESSING_CENTER);
}

v1::AdvancePackageRequest Move(P to) {
  v1::AdvancePackageRequest m;
  m.set_status(to);
  m.set_failure_reason("nobody home");
  return m;
}

TEST_CASE("the order follows its least advanced package and is delivered when all are",
          "[order_tracking][derive]") {
  v1::Order o = TwoPackageOrder();
  CreatePackages(o, Split());
  v1::Package& a = *o.mutable_packages(0);
  v1::Package& b = *o.mutable_packages(1);
  for (P s : {v1::PACKAGE_STATUS_PICKING, v1::PACKAGE_STATUS_PACKED,
              v1::PACKAGE_STATUS_HANDED_TO_CARRIER}) {
    ApplyPackageMove(o, a, Move(s), kT0);
  }
  CHECK(o.status() == v1::ORDER_STATUS_AT_PROCESSING_CENTER);
  ApplyPackageMove(o, a, Move(v1::PACKAGE_STATUS_DELIVERED), kT0 + absl::Hours(49));
  CHECK(o.status() == v1::ORDER_STATUS_AT_PROCESSING_CENTER);
  for (P s : {v1::PACKAGE_STATUS_PICKING, v1::PACKAGE_STATUS_PACKED,
              v1::PACKAGE_STATUS_HANDED_TO_CARRIER, v1::PACKAGE_STATUS_OUT_FOR_DELIVERY}) {
    ApplyPackageMove(o, b, Move(s), kT0);
  }
  CHECK(o.status() == v1::ORDER_STATUS_OUT_FOR_DELIVERY);
  ApplyPackageMove(o, b, Move(v1::PACKAGE_STATUS_DELIVERY_FAILED), kT0 + absl::Hours(50));
  CHECK(o.status() == v1::ORDER_STATUS_DELIVERY_FAILED);
  CHECK(b.delivery_attempts() == 1);
  ApplyPackageMove(o, b, Move(v1::PACKAGE_STATUS_OUT_FOR_DELIVERY), kT0 + absl::Hours(60));
  ApplyPackageMove(o, b, Move(v1::PACKAGE_STATUS_DELIVERED), kT0 + absl::Hours(60));
  CHECK(o.status() == v1::ORDER_STATUS_DELIVERED);
  CHECK(a.timeliness() == v1::TIMELINESS_ON_TIME);
  CHECK(b.timeliness() == v1::TIMELINESS_LATE);
  CHECK(o.timeliness() == v1::TIMELINESS_LATE);
  CHECK(api::FromTimestamp(o.delivered_time()) == kT0 + absl::Hours(60));
  CHECK(b.delivery_attempts() == 2);
}

TEST_CASE("deliveries are classed early, on time or late against the window",
          "[order_tracking][timeliness]") {
  v1::DeliveryWindow w;
  api::SetTimestamp(kT0, w.mutable_start_time());
  api::SetTimestamp(kT0 + absl::Hours(2), w.mutable_end_time());
  CHECK(ClassifyDelivery(w, kT0 - absl::Seconds(1)) == v1::TIMELINESS_EARLY);
  CHECK(ClassifyDelivery(w, kT0) == v1::TIMELINESS_ON_TIME);
  CHECK(ClassifyDelivery(w, kT0 + absl::Hours(2)) == v1::TIMELINESS_ON_TIME);
  CHECK(ClassifyDelivery(w, kT0 + absl::Hours(2) + absl::Seconds(1)) == v1::TIMELINESS_LATE);
}

TEST_CASE("an order cannot be cancelled once a package is with the carrier",
          "[order_tracking][cancel]") {
  v1::Order o = TwoPackageOrder();
  CHECK(CheckCancellable(o).ok());
  CreatePackages(o, Split());
  ApplyPackageMove(o, *o.mutable_packages(0), Move(v1::PACKAGE_STATUS_PICKING), kT0);
  CHECK(CheckCancellable(o).ok());
  ApplyPackageMove(o, *o.mutable_packages(0), Move(v1::PACKAGE_STATUS_PACKED), kT0);
  ApplyPackageMove(o, *o.mutable_packages(0), Move(v1::PACKAGE_STATUS_HANDED_TO_CARRIER), kT0);
  CHECK(absl::IsFailedPrecondition(CheckCancellable(o)));
}

TEST_CASE(
    "a package is found delayed once, when its ETA first passes the promised window's end, while "
    "on its way",
    "[order_tracking][shipment]") {
  v1::Order o = TwoPackageOrder();  // the window closes at 52 h
  CreatePackages(o, Split());
  v1::Package& p = *o.mutable_packages(0);
  const absl::Time found = kT0 + absl::Hours(20);
  CHECK_FALSE(MarkDelayed(o, p, found));  // no ETA yet
  api::SetTimestamp(kT0 + absl::Hours(52), p.mutable_eta());
  CHECK_FALSE(MarkDelayed(o, p, found));  // at the window's end is still on time
  api::SetTimestamp(kT0 + absl::Hours(55), p.mutable_eta());
  CHECK(MarkDelayed(o, p, found));
  CHECK(api::FromTimestamp(p.delayed_time()) == found);
  api::SetTimestamp(kT0 + absl::Hours(60), p.mutable_eta());
  CHECK_FALSE(MarkDelayed(o, p, found + absl::Hours(1)));  // told once
  CHECK(api::FromTimestamp(p.delayed_time()) == found);

  const v1::Event e = ShipmentUpdatedEvent(o, p, v1::SHIPMENT_STAGE_DELAYED, found);
  CHECK(e.shipment_updated().order_id() == "o1");
  CHECK(e.shipment_updated().package_id() == p.package_id());
  CHECK(api::FromTimestamp(e.shipment_updated().eta()) == kT0 + absl::Hours(60));
  CHECK(api::FromTimestamp(e.shipment_updated().promised_by()) == kT0 + absl::Hours(52));
  CHECK(api::FromTimestamp(e.occur_time()) == found);
  CHECK_FALSE(ShipmentUpdatedEvent(o, p, v1::SHIPMENT_STAGE_SHIPPED, found)
                  .shipment_updated()
                  .has_promised_by());

  // A delivered package is not delayed, whatever ETA arrives late.
  v1::Package& q = *o.mutable_packages(1);
  q.set_status(v1::PACKAGE_STATUS_DELIVERED);
  api::SetTimestamp(kT0 + absl::Hours(70), q.mutable_eta());
  CHECK_FALSE(MarkDelayed(o, q, found));
  CHECK_FALSE(q.has_delayed_time());

  // Nothing was promised to an order without a window.
  v1::Order unpromised = TwoPackageOrder();
  unpromised.clear_delivery_window();
  CreatePackages(unpromised, {});
  api::SetTimestamp(kT0 + absl::Hours(24 * 30), unpromised.mutable_packages(0)->mutable_eta());
  CHECK_FALSE(MarkDelayed(unpromised, *unpromised.mutable_packages(0), found));
}

TEST_CASE("return windows come from the policy per category", "[order_tracking][returns]") {
  auto rules = ParseReturnRules("# policy\ndefault 15\nfresh-food 7\napparel   20\n");
  REQUIRE(rules.ok());
  CHECK(rules->DaysFor("apparel") == 20);
  CHECK(rules->DaysFor("phones") == 15);
  const auto bad = ParseReturnRules("default 15\napparel twenty\n");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("line 2") != absl::string_view::npos);
  CHECK_FALSE(ParseReturnRules("x 400").ok());
}

TEST_CASE("a return must be of delivered items, within the window, never more than bought",
          "[order_tracking][returns]") {
  v1::Order o = TwoPackageOrder();
  CreatePackages(o, Split());
  v1::Package& a = *o.mutable_packages(0);
  for (P s : {v1::PACKAGE_STATUS_PICKING, v1::PACKAGE_STATUS_PACKED,
              v1::PACKAGE_STATUS_HANDED_TO_CARRIER, v1::PACKAGE_STATUS_DELIVERED}) {
    ApplyPackageMove(o, a, Move(s), kT0);
  }
  const ReturnRules rules = DefaultReturnRules();
  google::protobuf::RepeatedPtrField<v1::ReturnItem> items;
  auto* ri = items.Add();
  ri->set_item_id("1");
  ri->set_quantity(2);
  auto end = CheckReturnRequest(o, items, rules, 0, kT0 + absl::Hours(24 * 3));
  REQUIRE(end.ok());
  CHECK(*end == kT0 + absl::Hours(24 * 15));
  const auto late =
      CheckReturnRequest(o, items, rules, 0, kT0 + absl::Hours(24 * 15) + absl::Seconds(1));
  CHECK(absl::IsFailedPrecondition(late.status()));
  CHECK(late.status().message().find("ended 2026-01-16T00:00:00Z") != absl::string_view::npos);
  // The kind travels as the status's reason (a membership benefit is asked for only then).
  CHECK(HasReason(late.status(), kReasonReturnWindowClosed));
  CHECK(CheckReturnRequest(o, items, rules, 5, kT0 + absl::Hours(24 * 18))
            .ok());  // extended by a benefit
  ri->set_quantity(3);
  const auto too_many = CheckReturnRequest(o, items, rules, 0, kT0);
  CHECK(absl::IsFailedPrecondition(too_many.status()));
  CHECK_FALSE(HasReason(too_many.status(), kReasonReturnWindowClosed));
  ri->set_quantity(1);
  ri->set_item_id("2");  // its package is not delivered
  CHECK(absl::IsFailedPrecondition(CheckReturnRequest(o, items, rules, 0, kT0).status()));
}

TEST_CASE("refunds add shipping only when the merchant or carrier was at fault, once",
          "[order_tracking][returns]") {
  v1::Order o = TwoPackageOrder();
  o.mutable_shipping_fee()->set_amount_minor(800);
  o.mutable_total()->set_currency("CNY");
  v1::Return r;
  auto* ri = r.add_items();
  ri->set_item_id("1");
  ri->set_quantity(1);
  bool shipping = false;
  r.set_fault(v1::FAULT_CUSTOMER);
  CHECK(RefundAmount(o, r, &shipping).amount_minor() == 1000);
  CHECK_FALSE(shipping);
  r.set_fault(v1::FAULT_CARRIER);
  CHECK(RefundAmount(o, r, &shipping).amount_minor() == 1800);
  CHECK(shipping);
  o.set_shipping_refunded(true);
  CHECK(RefundAmount(o, r, &shipping).amount_minor() == 1000);
}

TEST_CASE("returns move forward only, and can be rejected until refunded",
          "[order_tracking][returns]") {
  CHECK(CheckReturnMove(v1::RETURN_STATUS_REQUESTED, v1::RETURN_STATUS_PICKUP_SCHEDULED).ok());
  CHECK(CheckReturnMove(v1::RETURN_STATUS_RECEIVED, v1::RETURN_STATUS_REFUNDED).ok());
  CHECK(CheckReturnMove(v1::RETURN_STATUS_RECEIVED, v1::RETURN_STATUS_REJECTED).ok());
  CHECK_FALSE(CheckReturnMove(v1::RETURN_STATUS_REQUESTED, v1::RETURN_STATUS_REFUNDED).ok());
  CHECK_FALSE(CheckReturnMove(v1::RETURN_STATUS_REFUNDED, v1::RETURN_STATUS_REJECTED).ok());
}

TEST_CASE("the shipped return policy file says what the built-in policy says",
          "[order_tracking][returns]") {
  const auto text = testing::ReadSourceFile("deploy/config/return-policy.txt");
  REQUIRE(text.ok());
  auto rules = ParseReturnRules(*text);
  REQUIRE(rules.ok());
  CHECK(rules->default_days == DefaultReturnRules().default_days);
  CHECK(rules->days_by_category == DefaultReturnRules().days_by_category);
}

TEST_CASE("an order's id depends only on its customer and request id, in every build",
          "[order_tracking]") {
  // Pinned ids, minted by the first implementation: a CreateOrder retried on a newer build must
  // name the same order (its coupon reservation is keyed by it), and the id must fall in the
  // customer's bucket so that it routes to the customer's shard.
  const struct {
    const char* customer;
    const char* request;
    const char* order;
  } kPinned[] = {{"c0123456789abcdef", "r-1", "oe6892470d3cac703"},
                 {"c0123456789abcdef", "r-2", "odd5bd73a44c4a984"},
                 {"cffffffffffffffff", "checkout-7f3a", "o638a3d4690ec2acf"},
                 {"u42", "client-a:req-9", "ofba80b88c73362e5"},
                 {"", "", "o955b890f6e2e1fff"}};
  for (const auto& p : kPinned) {
    CAPTURE(p.customer, p.request);
    const std::string id = OrderIdFor(p.customer, p.request);
    CHECK(id == p.order);
    CHECK(sharding::BucketOf(id) == sharding::BucketOf(p.customer));
  }
}

}  // namespace
}  // namespace crm::order_tracking
