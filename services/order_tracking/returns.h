// Returns: the window per category (Joyo 15 days unconditional, JD 20 days for intact goods, Tmall
// 7 days "no reason"; seeds 000, 001, 002), the return state machine, and the refund: items at the
// price paid, plus shipping when the merchant or its carrier was at fault. Pure functions; no
// storage, no gRPC.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/v1/order_tracking.pb.h"

namespace crm::order_tracking {

struct ReturnRules {
  int default_days = 15;
  std::map<std::string, int> days_by_category;

  int DaysFor(const std::string& category) const;
  v1::ReturnPolicy ToProto() const;
};

// Built-in policy: 15 days; fresh food and digital goods 7; apparel and large appliances 20.
ReturnRules DefaultReturnRules();

// Parses a policy file: one "<category> <days>" per line ("default <days>" for the rest), '#'
// comments. INVALID_ARGUMENT names the bad line.
absl::StatusOr<ReturnRules> ParseReturnRules(absl::string_view text);

// Checks a return of `items` from `order` at `now`: each item delivered, quantities not beyond what
// is left to return, every item inside its window. Returns the earliest window end among the items.
// `extra_days` extends every window (a membership benefit).
absl::StatusOr<absl::Time> CheckReturnRequest(
    const v1::Order& order, const google::protobuf::RepeatedPtrField<v1::ReturnItem>& items,
    const ReturnRules& rules, int extra_days, absl::Time now);

// REQUESTED -> PICKUP_SCHEDULED -> RECEIVED -> REFUNDED; REQUESTED, PICKUP_SCHEDULED or RECEIVED ->
// REJECTED. FAILED_PRECONDITION otherwise.
absl::Status CheckReturnMove(v1::ReturnStatus from, v1::ReturnStatus to);

// The refund for `ret` at the price paid: without a discount, unit price × quantity of each item;
// with one, the paid share (items' list value less the discount, in proportion) of the items' list
// value refunded so far including `ret`, less what earlier refunds gave (order.items_refunded_list_
// minor), rounded down: exact in minor units, the refunds never exceed what was paid for the items
// and add up to it when everything is returned. Plus the shipping fee when the fault is the
// merchant's or the carrier's and shipping was not refunded before. Sets *shipping when it is
// included.
v1::Money RefundAmount(const v1::Order& order, const v1::Return& ret, bool* shipping);
// The list value (unit price × quantity) of the items `ret` returns.
int64_t ReturnedListValue(const v1::Order& order, const v1::Return& ret);

std::string ReturnStatusName(v1::ReturnStatus s);

}  // namespace crm::order_tracking
