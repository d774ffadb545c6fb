// Onboarding a shop's order history (ImportOrders): what a recorded order or return must look like,
// and how it becomes this service's order, return, history and events. An imported order is
// DELIVERED when it arrived (CANCELLED when it never did), with no packages or delivery window:
// only what the shop recorded. Its events carry the times they happened, so every consumer learns
// the history as it was. Pure functions; no storage, no gRPC.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "crm/v1/order_tracking.pb.h"
#include "services/order_tracking/order_tracking_store.h"

namespace crm::order_tracking {

inline constexpr int kMaxImportedOrdersPerCall = 500;
inline constexpr int kMaxImportedReturnsPerCall = 500;
// Lines of one imported order: wholesale invoices run to hundreds, beyond what a checkout sends.
inline constexpr int kMaxImportedItems = 1000;

// Checks every field of the request against the rules in order_tracking.proto; INVALID_ARGUMENT
// names the first bad one, e.g. "orders[3].items[2].quantity". Times must not be after `now`.
absl::Status ValidateImport(const v1::ImportOrdersRequest& req, absl::Time now);

// The order `recorded` becomes (checked by ValidateImport), with id `order_id`, its history entries
// and its events: OrderPlaced at place_time, then OrderDelivered at delivered_time or
// OrderCancelled.
void BuildImportedOrder(const std::string& customer_id, const v1::HistoricalOrder& recorded,
                        std::string order_id, v1::Order* order, OrderChange* change);

// Applies the recorded return to its order: `ret` (with id `return_id`) becomes a REFUNDED return
// of the order's lines by sku, the order's returned quantities grow, and `change` gets the history
// entry and the OrderRefunded event at refund_time. FAILED_PRECONDITION naming `field` when the
// order was cancelled, does not hold a sku, or holds less of it than the returns so far plus this
// one.
absl::Status ApplyImportedReturn(const std::string& field, const v1::HistoricalReturn& recorded,
                                 std::string return_id, v1::Order& order, v1::Return* ret,
                                 OrderChange* change);

// When an entry of the request happened (place_time of an order, refund_time of a return).
absl::Time ImportedTime(const v1::HistoricalOrder& o);
absl::Time ImportedTime(const v1::HistoricalReturn& r);

}  // namespace crm::order_tracking
