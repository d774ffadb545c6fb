// Coupon rules: what a coupon takes off an order's items (an amount off above a minimum spend, or a
// bundle's "buy A, percent off B" up to the coupon's value), and where a coupon stands at a given
// time. Pure functions over crm.v1 messages, exact in minor units; no storage, no gRPC.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/v1/events.pb.h"
#include "crm/v1/loyalty.pb.h"

namespace crm::loyalty {

struct CouponDiscount {
  // Minor units, 1 to the items' total.
  int64_t amount = 0;
  // The rule applied, spelled out for the order and the customer.
  std::string rule;
};

// What `coupon` takes off an order of `items` (checked lines: quantity >= 1, prices not negative).
// FAILED_PRECONDITION naming "items" when the order does not meet the coupon's rules: another
// currency, below the minimum spend, a bundle's skus missing, or nothing to take off.
absl::StatusOr<CouponDiscount> DiscountFor(
    const v1::Coupon& coupon, const google::protobuf::RepeatedPtrField<v1::EventItem>& items);

// The coupon's status as a customer sees it at `now`: an unused coupon past its expiry is EXPIRED;
// a coupon stored before coupons had a status is AVAILABLE.
v1::CouponStatus StatusAt(const v1::Coupon& coupon, absl::Time now);

// A single-use coupon (the default usage) is held by one order at a time and used once.
bool SingleUse(const v1::Coupon& coupon);

// "12.34 CNY" for 1234 minor units of CNY.
std::string MoneyText(int64_t minor, const std::string& currency);

}  // namespace crm::loyalty
