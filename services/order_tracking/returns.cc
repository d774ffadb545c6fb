#include "services/order_tracking/returns.h"

#include <algorithm>

#include "absl/numeric/int128.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libs/api/validate.h"
#include "libs/base/error_reason.h"
#include "services/order_tracking/order_lifecycle.h"

namespace crm::order_tracking {

int ReturnRules::DaysFor(const std::string& category) const {
  auto it = days_by_category.find(category);
  return it == days_by_category.end() ? default_days : it->second;
}

v1::ReturnPolicy ReturnRules::ToProto() const {
  v1::ReturnPolicy p;
  p.set_default_days(default_days);
  for (const auto& [c, d] : days_by_category) (*p.mutable_days_by_category())[c] = d;
  return p;
}

ReturnRules DefaultReturnRules() {
  ReturnRules r;
  r.default_days = 15;
  r.days_by_category = {
      {"fresh-food", 7}, {"digital-goods", 7}, {"apparel", 20}, {"large-appliances", 20}};
  return r;
}

absl::StatusOr<ReturnRules> ParseReturnRules(absl::string_view text) {
  ReturnRules r;
  r.days_by_category.clear();
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    std::vector<absl::string_view> parts = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    int days = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &days) || days < 0 || days > 365) {
      return absl::InvalidArgumentError(absl::StrCat("return policy line ", line_no, ": \"", line,
                                                     "\" is not \"<category> <days 0-365>\""));
    }
    if (parts[0] == "default") {
      r.default_days = days;
    } else {
      r.days_by_category[std::string(parts[0])] = days;
    }
  }
  return r;
}

absl::StatusOr<absl::Time> CheckReturnRequest(
    const v1::Order& order, const google::protobuf::RepeatedPtrField<v1::ReturnItem>& items,
    const ReturnRules& rules, int extra_days, absl::Time now) {
  if (items.empty()) return api::Invalid("items", "name at least one item to return");
  absl::Time earliest_end = absl::InfiniteFuture();
  std::map<std::string, int64_t> asked;
  for (int i = 0; i < items.size(); ++i) {
    const std::string f = absl::StrCat("items[", i, "]");
    const v1::OrderItem* item = FindItem(order, items[i].item_id());
    if (item == nullptr)
      return api::Invalid(f + ".item_id",
                          absl::StrCat("the order has no item \"", items[i].item_id(), "\""));
    if (items[i].quantity() <= 0) return api::Invalid(f + ".quantity", "must be at least 1");
    asked[item->item_id()] += items[i].quantity();
    const auto returned = order.returned_quantities().find(item->item_id());
    const int64_t left =
        item->quantity() - (returned == order.returned_quantities().end() ? 0 : returned->second);
    if (asked[item->item_id()] > left) {
      return absl::FailedPreconditionError(absl::StrCat(
          f, ".quantity: only ", left, " of item \"", item->item_id(), "\" can still be returned"));
    }
    const v1::Package* package = PackageOfItem(order, item->item_id());
    if (package == nullptr || package->status() != v1::PACKAGE_STATUS_DELIVERED) {
      return absl::FailedPreconditionError(
          absl::StrCat(f, ".item_id: item \"", item->item_id(), "\" has not been delivered yet"));
    }
    const int days = rules.DaysFor(item->category()) + extra_days;
    const absl::Time end = api::FromTimestamp(package->delivered_time()) + absl::Hours(24) * days;
    if (now > end) {
      return WithReason(absl::FailedPreconditionError(absl::StrCat(
                            f, ".item_id: the return window of item \"", item->item_id(), "\" (",
                            item->category(), ", ", days, " days from delivery) ended ",
                            absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", end, absl::UTCTimeZone()))),
                        kReasonReturnWindowClosed);
    }
    earliest_end = std::min(earliest_end, end);
  }
  return earliest_end;
}

std::string ReturnStatusName(v1::ReturnStatus s) {
  std::string n = v1::ReturnStatus_Name(s);
  return n.rfind("RETURN_STATUS_", 0) == 0 ? n.substr(14) : n;
}

absl::Status CheckReturnMove(v1::ReturnStatus from, v1::ReturnStatus to) {
  using R = v1::ReturnStatus;
  const bool ok =
      (from == v1::RETURN_STATUS_REQUESTED && to == v1::RETURN_STATUS_PICKUP_SCHEDULED) ||
      (from == v1::RETURN_STATUS_PICKUP_SCHEDULED && to == v1::RETURN_STATUS_RECEIVED) ||
      (from == v1::RETURN_STATUS_RECEIVED && to == v1::RETURN_STATUS_REFUNDED) ||
      (to == v1::RETURN_STATUS_REJECTED &&
       (from == R::RETURN_STATUS_REQUESTED || from == R::RETURN_STATUS_PICKUP_SCHEDULED ||
        from == R::RETURN_STATUS_RECEIVED));
  if (ok) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "status: a return cannot go from ", ReturnStatusName(from), " to ", ReturnStatusName(to)));
}

v1::Money RefundAmount(const v1::Order& order, const v1::Return& ret, bool* shipping) {
  int64_t returned_list = 0;
  for (const auto& ri : ret.items()) {
    const v1::OrderItem* item = FindItem(order, ri.item_id());
    if (item != nullptr) returned_list += item->unit_price().amount_minor() * ri.quantity();
  }
  const int64_t items = ItemsListValue(order);
  const int64_t paid = items - order.discount().amount_minor();
  // Cumulative and rounded down: each refund is the paid share of everything refunded so far less
  // what earlier refunds gave, so the refunds never exceed `paid` and reach it exactly at the end.
  auto paid_share = [&](int64_t list) {
    return items == 0 ? 0 : static_cast<int64_t>(absl::int128(paid) * list / items);
  };
  const int64_t before = order.items_refunded_list_minor();
  int64_t amount = paid_share(before + returned_list) - paid_share(before);
  *shipping = (ret.fault() == v1::FAULT_MERCHANT || ret.fault() == v1::FAULT_CARRIER) &&
              !order.shipping_refunded();
  if (*shipping) amount += order.shipping_fee().amount_minor();
  v1::Money m;
  m.set_currency(order.total().currency());
  m.set_amount_minor(amount);
  return m;
}

int64_t ReturnedListValue(const v1::Order& order, const v1::Return& ret) {
  int64_t list = 0;
  for (const auto& ri : ret.items()) {
    if (const v1::OrderItem* item = FindItem(order, ri.item_id()))
      list += item->unit_price().amount_minor() * ri.quantity();
  }
  return list;
}

}  // namespace crm::order_tracking
