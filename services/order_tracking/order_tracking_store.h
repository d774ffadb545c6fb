// Persistence of order-tracking: the only code that knows its column families and keys.
//
//   orders            customer_id, order_id                    -> Order
//   order_index       customer_id, create time (newest first), order_id -> "" (listing)
//   history           customer_id, order_id, time, n           -> OrderHistoryEntry
//   tracking_numbers  tracking number                          -> customer_id, order_id, package_id
//   carrier_events    carrier event id                         -> tracking number (duplicates)
//   returns           customer_id, return_id                   -> Return
//   reviews           customer_id, order_id, item_id           -> Review
//   requests          customer_id, method, request_id          -> answer of a retryable write
//   imports           customer_id, "order"|"return", external id -> order_id | return_id
//   purchase_totals   customer_id                              -> internal.PurchaseTotals
//                     "" -> "built" once the totals of the orders before them were counted
//   consumed_events, outbox*                                   -> libs/events
//
// Every change locks the order row, runs the domain change, and writes the order, its history
// entries, new tracking numbers, its outbox events and the customer's purchase totals in one
// transaction with a synced WAL.
// Thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/v1/order_tracking.pb.h"
#include "libs/events/outbox.h"
#include "libs/store/families.h"
#include "libs/store/store.h"

namespace crm::order_tracking {

// What a change to an order produced besides the order itself.
struct OrderChange {
  std::vector<v1::OrderHistoryEntry> history;
  // Events for other services; the store fills customer_id.
  std::vector<v1::Event> events;
  // Tracking numbers assigned by this change: number -> package_id.
  std::vector<std::pair<std::string, std::string>> tracking_numbers;
  // Set by the change when it found nothing to do (a repeated request): nothing is written.
  bool unchanged = false;
  // Short description for watchers, e.g. "package o1-p1 OUT_FOR_DELIVERY".
  std::string summary;
};

class OrderTrackingStore {
 public:
  static std::vector<std::string> ColumnFamilies();
  OrderTrackingStore(store::Store* store, events::Outbox* outbox);

  // Writes a new order with its OrderPlaced event, once per request_id.
  absl::Status CreateOrder(const v1::Order& order, const v1::Event& placed,
                           absl::string_view request_id, uint64_t fingerprint, absl::Time now,
                           v1::Order* out);
  // Whether CreateOrder already answered this request (then `out` holds that answer), so a retry
  // does not ask other services again. INVALID_ARGUMENT naming request_id when the id was used for
  // another request.
  absl::StatusOr<bool> FindCreatedOrder(absl::string_view customer_id, absl::string_view request_id,
                                        uint64_t fingerprint, v1::Order* out);
  // Imports a customer's recorded orders and returns in one synced transaction, in the order they
  // happened: each one not imported before (keyed by its external number) is made by
  // `build_order(i, …)` (orders[i]) or `apply_return(i, order, …)` (returns[i], against its order,
  // locked) and written with its history and events. Fills `out` (counts, and every order's id in
  // request order).
  absl::Status ImportHistory(
      const v1::ImportOrdersRequest& req, absl::Time now,
      absl::FunctionRef<void(int index, v1::Order* order, OrderChange* change)> build_order,
      absl::FunctionRef<absl::Status(int index, v1::Order& order, v1::Return* ret,
                                     OrderChange* change)>
          apply_return,
      v1::ImportOrdersResponse* out);
  absl::StatusOr<v1::Order> GetOrder(absl::string_view customer_id,
                                     absl::string_view order_id) const;
  absl::Status ListOrders(absl::string_view customer_id, absl::string_view after, int limit,
                          std::vector<v1::Order>* out, std::string* last_key, bool* more) const;
  // One page of the customer's reviews (a page of ListOrders' shape).
  absl::Status ListReviews(absl::string_view customer_id, absl::string_view after, int limit,
                           std::vector<v1::Review>* out, std::string* last_key, bool* more) const;
  // The customer's purchase summary from their totals row and their `open_limit` newest open
  // orders: as many reads as open orders shown, however many orders the customer has.
  absl::StatusOr<v1::PurchaseSummary> PurchaseSummary(absl::string_view customer_id,
                                                      int open_limit) const;
  // Counts the totals of orders written before purchase totals existed, once (the first start
  // after an upgrade, before serving); does nothing afterwards.
  absl::Status CountPurchaseTotalsOnce();
  absl::StatusOr<std::vector<v1::OrderHistoryEntry>> History(absl::string_view customer_id,
                                                             absl::string_view order_id) const;

  // Locks the order, lets `change` modify it and describe the change, then writes everything at
  // once. `out` receives the order as it now is (also when unchanged).
  absl::Status UpdateOrder(absl::string_view customer_id, absl::string_view order_id,
                           absl::Time now,
                           absl::FunctionRef<absl::Status(v1::Order&, OrderChange&)> change,
                           v1::Order* out, OrderChange* applied = nullptr);

  // Where a tracking number belongs.
  struct PackageRef {
    std::string customer_id, order_id, package_id;
  };
  absl::StatusOr<std::optional<PackageRef>> FindTrackingNumber(
      absl::string_view tracking_number) const;
  // Applies one carrier event to its package at most once: `change` runs only the first time
  // `carrier_event_id` is seen (*duplicate tells). The event id is recorded with the change.
  absl::Status ApplyCarrierEvent(const PackageRef& ref, absl::string_view carrier_event_id,
                                 absl::string_view tracking_number, absl::Time now,
                                 absl::FunctionRef<absl::Status(v1::Order&, OrderChange&)> change,
                                 bool* duplicate, v1::Order* out, OrderChange* applied);

  // Creates a return (locking its order, so quantities cannot be over-returned), once per
  // request_id.
  absl::Status CreateReturn(
      absl::string_view customer_id, absl::string_view order_id, absl::string_view request_id,
      uint64_t fingerprint, absl::Time now,
      absl::FunctionRef<absl::Status(v1::Order&, v1::Return&, OrderChange&)> create,
      v1::Return* out, v1::Order* order_out);
  // Locks the return and its order and applies `change` to both.
  absl::Status UpdateReturn(
      absl::string_view customer_id, absl::string_view return_id, absl::Time now,
      absl::FunctionRef<absl::Status(v1::Order&, v1::Return&, OrderChange&)> change,
      v1::Return* out, v1::Order* order_out);
  absl::StatusOr<std::vector<v1::Return>> ListReturns(absl::string_view customer_id,
                                                      absl::string_view order_id) const;

  // Writes a review (locking its order), once per item and once per request_id.
  absl::Status CreateReview(
      absl::string_view customer_id, absl::string_view order_id, absl::string_view item_id,
      absl::string_view request_id, uint64_t fingerprint, absl::Time now,
      absl::FunctionRef<absl::Status(v1::Order&, v1::Review&, OrderChange&)> create,
      v1::Review* out);

  // For a CustomerErased event, inside the consumer's transaction: removes personal data from the
  // customer's orders, history, returns and reviews; keeps amounts and statuses (accounting
  // records).
  absl::Status AnonymiseCustomer(store::Transaction& txn, absl::string_view customer_id);

  // Makes every buffered write so far durable (after a batch of carrier events).
  absl::Status SyncWal() { return store_->SyncWal(); }

 private:
  absl::Status WriteChange(store::Transaction& txn, v1::Order& order, OrderChange& change,
                           absl::Time now);
  // Moves the order's contribution to its customer's purchase totals from `before` (null: a new
  // order) to `after`, inside the order's transaction.
  absl::Status CountInTotals(store::Transaction& txn, const v1::Order* before,
                             const v1::Order& after);
  // Adds a return's refund to the totals when this write makes it REFUNDED.
  absl::Status CountRefund(store::Transaction& txn, const v1::Return* before,
                           const v1::Return& after);
  // The customer's newest order that is not cancelled (nullopt: none), other than
  // `except_order_id` (which the caller is changing); reads all their orders (only when the newest
  // one is cancelled).
  absl::StatusOr<std::optional<v1::Order>> NewestCountedOrder(
      absl::string_view customer_id, absl::string_view except_order_id) const;
  absl::Status LockOrder(store::Transaction& txn, absl::string_view customer_id,
                         absl::string_view order_id, v1::Order* order);
  // A retryable change of one order, once per request id (`method` names the call in the request
  // record): `change` runs with the order read under its row lock.
  absl::Status ChangeOrderOnce(
      absl::string_view customer_id, absl::string_view order_id, absl::string_view method,
      absl::string_view request_id, uint64_t fingerprint, absl::Time now,
      google::protobuf::MessageLite* response,
      absl::FunctionRef<absl::Status(store::Transaction&, v1::Order&)> change);
  // The listing's entry for a new order (newest first).
  absl::Status IndexOrder(store::Transaction& txn, const v1::Order& order);
  // One recorded order (orders[index]) or return (returns[index]) of ImportHistory, unless it was
  // imported before: written with its history and events, and counted in `out`.
  absl::Status ImportOrder(store::Transaction& txn, const v1::ImportOrdersRequest& req, int index,
                           absl::Time now,
                           absl::FunctionRef<void(int, v1::Order*, OrderChange*)> build_order,
                           std::string* order_id, v1::ImportOrdersResponse* out);
  absl::Status ImportReturn(
      store::Transaction& txn, const v1::ImportOrdersRequest& req, int index, absl::Time now,
      absl::FunctionRef<absl::Status(int, v1::Order&, v1::Return*, OrderChange*)> apply_return,
      v1::ImportOrdersResponse* out);

  store::Store* const store_;
  events::Outbox* const outbox_;
  // The handles of the column families, indexed by the .cc's Family.
  store::Families cf_;
};

}  // namespace crm::order_tracking
