// A customer's purchase totals kept incrementally: each order change adds the order's new
// contribution and takes back its old one, each refund adds its amount, so that the purchase
// summary is one row plus the few open orders, whatever the number of orders. Pure functions;
// order_tracking_store calls them inside the order's transaction.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "crm/internal/order_tracking_storage.pb.h"
#include "crm/v1/order_tracking.pb.h"

namespace crm::order_tracking {

// Whether changing an order from `before` (null for a new order) to `after` changes what it counts
// for: its status, total or placing time. Most changes (a package moving on) do not.
bool ChangesTotals(const v1::Order* before, const v1::Order& after);

// Moves `order`'s contribution from `before` (null for a new order) to `after`. False when the
// newest order not cancelled was cancelled: the caller must find the newest one again
// (SetLastOrder) from the orders themselves.
bool CountOrderChange(const v1::Order* before, const v1::Order& after,
                      internal::PurchaseTotals& totals);

// The newest order not cancelled (null: none).
void SetLastOrder(const v1::Order* newest, internal::PurchaseTotals& totals);

// The summary GetPurchaseSummary answers: the totals, and `open_orders` (the newest open orders,
// newest first, at most the request's limit).
v1::PurchaseSummary SummaryOf(absl::string_view customer_id, const internal::PurchaseTotals& totals,
                              std::vector<v1::Order> open_orders);

}  // namespace crm::order_tracking
