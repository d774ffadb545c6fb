// What each customer or operator request does to an order, as steps a handler runs inside the
// store's transaction: placing an order, paying, cancelling and processing it, opening and moving a
// return, reviewing an item. Each step takes a validated request, changes the order (and its return
// or review) and fills the change's history entries, summary and events; FAILED_PRECONDITION or
// NOT_FOUND when the order's state does not allow it. No storage, no gRPC.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/v1/order_tracking.pb.h"
#include "services/order_tracking/order_tracking_store.h"
#include "services/order_tracking/returns.h"

namespace crm::order_tracking {

// The address a new order ships to: the one the request names, else the customer's default.
// FAILED_PRECONDITION when the customer has no address yet, NOT_FOUND when the named one is not
// theirs.
absl::StatusOr<v1::Address> ShippingAddress(const v1::Customer& customer,
                                            const std::string& requested_address_id);

// The id of the order a CreateOrder request places: derived from the customer and the (caller's)
// request id, in the customer's bucket, so a retried request names the same order (the key its
// coupon is reserved under) whether or not the first attempt was written.
std::string OrderIdFor(const std::string& customer_id, const std::string& request_id);

// The order CreateOrder places (PLACED at `now`, id `order_id`): the request's lines numbered from
// 1, its total and currency as validated, and a copy of `address`.
v1::Order NewOrder(const v1::CreateOrderRequest& req, const std::string& order_id, int64_t total,
                   const std::string& currency, const v1::Address& address, absl::Time now);

// The order's lines as loyalty checks a coupon against them.
google::protobuf::RepeatedPtrField<v1::EventItem> CouponLines(const v1::Order& order);

// Applies the coupon loyalty reserved for the order: the coupon, its discount (off the items, in
// the order's currency) and rule; the total becomes what the customer pays. INTERNAL when the
// discount is not one the order can take (another currency, more than the items).
absl::Status ApplyDiscount(const std::string& coupon_id, const v1::Money& discount,
                           const std::string& rule, v1::Order& order);

// The refund of a return (RefundAmount, returns.h), recorded on the order: the list value it
// refunds and, when *shipping is set, that shipping is refunded.
v1::Money TakeRefund(v1::Order& order, const v1::Return& ret, bool* shipping);

// PayOrder: a PLACED order (not cash on delivery) becomes PAID; the same payment again is
// unchanged.
absl::Status ApplyPayment(const v1::PayOrderRequest& req, absl::Time now, v1::Order& o,
                          OrderChange& c);
// CancelOrder: cancels the order while no package is with a carrier, with an OrderCancelled event.
absl::Status ApplyCancellation(const v1::CancelOrderRequest& req, const std::string& actor,
                               absl::Time now, v1::Order& o, OrderChange& c);
// ProcessOrder: a paid (or cash-on-delivery) order gets its packages from the split plan; an order
// with packages already is unchanged.
absl::Status ApplyProcessing(const v1::ProcessOrderRequest& req, absl::Time now, v1::Order& o,
                             OrderChange& c);

// RequestReturn: checks the return against the order and `rules` (windows extended by
// `extra_days`), then fills `r` (REQUESTED, with a new id and its window end) and counts its items
// as returned.
absl::Status ApplyReturnRequest(const v1::RequestReturnRequest& req, const ReturnRules& rules,
                                int extra_days, const std::string& actor, absl::Time now,
                                v1::Order& o, v1::Return& r, OrderChange& c);
// AdvanceReturn: moves the return to the requested status (the same status again is unchanged):
// the pickup window when scheduled, the refund with its OrderRefunded event when refunded, the
// items no longer counted as returned when rejected.
absl::Status ApplyReturnMove(const v1::AdvanceReturnRequest& req, const std::string& actor,
                             absl::Time now, v1::Order& o, v1::Return& r, OrderChange& c);

// SubmitReview: a delivered item of the order gets the review `r`, with a ReviewSubmitted event.
absl::Status ApplyReview(const v1::SubmitReviewRequest& req, absl::Time now, v1::Order& o,
                         v1::Review& r, OrderChange& c);

}  // namespace crm::order_tracking
