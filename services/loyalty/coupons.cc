#include "services/loyalty/coupons.h"

#include <algorithm>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libs/api/validate.h"

namespace crm::loyalty {
namespace {

absl::Status NotMet(absl::string_view why) {
  return absl::FailedPreconditionError(absl::StrCat("items: ", why));
}

}  // namespace

std::string MoneyText(int64_t minor, const std::string& currency) {
  const char* sign = minor < 0 ? "-" : "";
  const int64_t v = minor < 0 ? -minor : minor;
  return absl::StrFormat("%s%d.%02d %s", sign, v / 100, v % 100, currency);
}

bool SingleUse(const v1::Coupon& coupon) {
  return coupon.usage() != v1::COUPON_USAGE_ONCE_PER_ORDER;
}

v1::CouponStatus StatusAt(const v1::Coupon& coupon, absl::Time now) {
  const v1::CouponStatus stored = coupon.status() == v1::COUPON_STATUS_UNSPECIFIED
                                      ? v1::COUPON_STATUS_AVAILABLE
                                      : coupon.status();
  if (stored == v1::COUPON_STATUS_AVAILABLE && now >= api::FromTimestamp(coupon.expire_time()))
    return v1::COUPON_STATUS_EXPIRED;
  return stored;
}

absl::StatusOr<CouponDiscount> DiscountFor(
    const v1::Coupon& coupon, const google::protobuf::RepeatedPtrField<v1::EventItem>& items) {
  const std::string& currency = coupon.value().currency();
  // 128 bits: a line's price times its quantity, summed over the lines, cannot overflow.
  absl::int128 items_total = 0, discounted_lines = 0;
  bool has_required = false;
  for (const auto& item : items) {
    if (item.unit_price().currency() != currency) {
      return NotMet(absl::StrCat("the coupon is in ", currency, ", the order in ",
                                 item.unit_price().currency()));
    }
    const absl::int128 line = absl::int128(item.unit_price().amount_minor()) * item.quantity();
    items_total += line;
    if (coupon.has_bundle()) {
      if (item.sku() == coupon.bundle().required_sku()) has_required = true;
      if (item.sku() == coupon.bundle().discounted_sku()) discounted_lines += line;
    }
  }
  if (items_total < coupon.min_spend().amount_minor()) {
    return NotMet(absl::StrCat("the items come to ",
                               MoneyText(static_cast<int64_t>(items_total), currency),
                               ", below the coupon's minimum spend of ",
                               MoneyText(coupon.min_spend().amount_minor(), currency)));
  }
  CouponDiscount d;
  const std::string cap = MoneyText(coupon.value().amount_minor(), currency);
  if (coupon.has_bundle()) {
    const v1::BundleOffer& b = coupon.bundle();
    if (!has_required || discounted_lines == 0) {
      return NotMet(absl::StrCat("the bundle coupon needs sku \"", b.required_sku(),
                                 "\" and sku \"", b.discounted_sku(), "\" in the order"));
    }
    // Rounded down: the discount never takes a fraction of a minor unit more than the rule says.
    const absl::int128 off = discounted_lines * b.percent_off() / 100;
    d.amount = static_cast<int64_t>(std::min<absl::int128>(off, coupon.value().amount_minor()));
    d.rule =
        absl::StrCat(b.percent_off(), "% off \"", b.discounted_sku(), "\" (",
                     MoneyText(static_cast<int64_t>(discounted_lines), currency), ") with \"",
                     b.required_sku(), "\", at most ", cap, ": ", MoneyText(d.amount, currency));
  } else {
    d.amount =
        static_cast<int64_t>(std::min<absl::int128>(items_total, coupon.value().amount_minor()));
    d.rule = absl::StrCat(cap, " off items");
    if (coupon.min_spend().amount_minor() > 0)
      absl::StrAppend(&d.rule, " of ", MoneyText(coupon.min_spend().amount_minor(), currency),
                      " or more");
    if (d.amount < coupon.value().amount_minor())
      absl::StrAppend(&d.rule, ", limited to the items' ", MoneyText(d.amount, currency));
  }
  if (d.amount <= 0) return NotMet("the coupon takes nothing off this order");
  return d;
}

}  // namespace crm::loyalty
