// The membership's next expiry (the points that expire first, and when) read from the summary every
// save keeps in the account, against the same membership read by scanning the lots as accounts
// saved before the summary existed are read. Real loyalty and customer-profile over RocksDB.
#include "catch2/catch.hpp"
#include "crm/internal/loyalty_storage.pb.h"
#include "crm/v1/loyalty.grpc.pb.h"
#include "google/protobuf/util/message_differencer.h"
#include "services/customer_profile/customer_profile_component.h"
#include "services/loyalty/loyalty_component.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"
#include "tests/support/shop_calls.h"

namespace crm::loyalty {
namespace {

using ProfileHarness = testing::ServiceHarness<customer_profile::CustomerProfileComponent>;
using LoyaltyHarness = testing::ServiceHarness<LoyaltyComponent>;

// An order of one item delivered at `when`.
v1::Event DeliveredAt(const std::string& customer_id, int seq, int64_t amount_minor,
                      absl::Time when) {
  v1::Event e = testing::EventFrom("order-tracking", seq, customer_id, when);
  auto* d = e.mutable_order_delivered();
  d->set_order_id("order-" + std::to_string(seq));
  auto* item = d->add_items();
  item->set_item_id("1");
  item->set_sku("sku-1");
  item->set_category("phones");
  item->set_quantity(1);
  item->mutable_unit_price()->set_amount_minor(amount_minor);
  item->mutable_unit_price()->set_currency("CNY");
  *d->mutable_items_amount() = item->unit_price();
  return e;
}

TEST_CASE(
    "the points that expire first read from the account's summary equal those found by scanning "
    "the lots",
    "[loyalty][points]") {
  ProfileHarness profile{ProfileHarness::Options()};
  LoyaltyHarness::Options o;
  o.backends = {{"customer-profile", testing::LoopbackAddress(profile.port())}};
  LoyaltyHarness loyalty(o);
  auto profiles = v1::CustomerProfileService::NewStub(profile.channel());
  auto stub = v1::LoyaltyService::NewStub(loyalty.channel());
  auto sink = v1::EventSink::NewStub(loyalty.channel());
  const std::string customer = testing::RegisterCustomer(profiles.get(), "expiry@example.com");
  const absl::Time now = loyalty.clock().Now();
  // Points earned in two calendar years: two lots, last year's expiring first.
  testing::DeliverEvents(sink.get(), {DeliveredAt(customer, 1, 300000, now - absl::Hours(24 * 200)),
                                      DeliveredAt(customer, 2, 500000, now + absl::Hours(1))});

  auto membership = [&] {
    v1::GetMembershipRequest req;
    req.set_customer_id(customer);
    v1::Membership m;
    REQUIRE(testing::Call(stub.get(), &v1::LoyaltyService::Stub::GetMembership, req, &m).ok());
    return m;
  };
  // The same read as an account written before the summary existed: the scan of the lots.
  auto membership_by_scanning_lots = [&] {
    store::Store& db = loyalty.store();
    internal::LoyaltyAccount account;
    auto found = db.GetProto(db.cf("accounts"), customer, &account);
    REQUIRE(found.ok());
    REQUIRE(*found);
    REQUIRE(account.has_next_expiry());
    const internal::LoyaltyAccount with_summary = account;
    account.clear_next_expiry();
    rocksdb::WriteBatch batch;
    batch.Put(db.cf("accounts"), customer, account.SerializeAsString());
    REQUIRE(db.Write(&batch, store::Durability::kBuffered).ok());
    const v1::Membership m = membership();
    batch.Clear();
    batch.Put(db.cf("accounts"), customer, with_summary.SerializeAsString());
    REQUIRE(db.Write(&batch, store::Durability::kBuffered).ok());
    return m;
  };

  const v1::Membership earned = membership();
  INFO(earned.DebugString());
  CHECK(earned.points_balance() > earned.points_expiring());
  CHECK(earned.points_expiring() > 0);
  CHECK(earned.has_points_expire_time());
  CHECK(google::protobuf::util::MessageDifferencer::Equals(earned, membership_by_scanning_lots()));

  // Spending takes the oldest points first; the summary follows.
  v1::RedeemPointsRequest redeem;
  redeem.set_customer_id(customer);
  redeem.set_points(earned.points_expiring() - 1);
  redeem.set_request_id("redeem-1");
  v1::LedgerEntry spent;
  REQUIRE(testing::Call(stub.get(), &v1::LoyaltyService::Stub::RedeemPoints, redeem, &spent).ok());
  const v1::Membership after = membership();
  CHECK(after.points_expiring() == 1);
  CHECK(after.points_expire_time().seconds() == earned.points_expire_time().seconds());
  CHECK(google::protobuf::util::MessageDifferencer::Equals(after, membership_by_scanning_lots()));

  // The last of last year's points gone: the next lot is the one that expires first.
  redeem.set_points(1);
  redeem.set_request_id("redeem-2");
  REQUIRE(testing::Call(stub.get(), &v1::LoyaltyService::Stub::RedeemPoints, redeem, &spent).ok());
  const v1::Membership later = membership();
  CHECK(later.points_expiring() == later.points_balance());
  CHECK(later.points_expire_time().seconds() > earned.points_expire_time().seconds());
  CHECK(google::protobuf::util::MessageDifferencer::Equals(later, membership_by_scanning_lots()));
}

}  // namespace
}  // namespace crm::loyalty
