// The order and package lifecycle as an explicit state machine (seed 000 §3.1), delivery timeliness
// against the agreed window (seed 002 §1.2.4), and how an order's status follows from its packages.
// Pure functions over crm.v1 messages; no storage, no gRPC.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "crm/v1/events.pb.h"
#include "crm/v1/order_tracking.pb.h"

namespace crm::order_tracking {

inline constexpr int kMaxItems = 100;
inline constexpr int kMaxQuantity = 10000;
inline constexpr int kMaxPackages = 20;
// ~10^15 minor units: far beyond any real order.
inline constexpr int64_t kMaxAmountMinor = int64_t{1} << 50;

// A money amount: not negative, below kMaxAmountMinor, an ISO currency (an empty currency is
// allowed for zero when `allow_empty_currency`). INVALID_ARGUMENT naming `field`.
absl::Status ValidateMoney(const std::string& field, const v1::Money& m, bool allow_empty_currency);

// Checks an order's lines (`field` is "items" or "orders[3].items"): 1-`max_items` lines, each with
// a valid sku, optional name, a category when `category_required`, quantity 1-kMaxQuantity and a
// price in the one currency of the order. Sets *total to the lines' sum and *currency to theirs.
absl::Status ValidateOrderLines(const std::string& field,
                                const google::protobuf::RepeatedPtrField<v1::OrderItem>& items,
                                int max_items, bool category_required, int64_t* total,
                                std::string* currency);
// Adds the shipping fee (in the items' currency, or empty for none) to *total, checked.
absl::Status AddShippingFee(const std::string& field, const v1::Money& fee,
                            const std::string& currency, int64_t* total);

// OK when a package may move `from` -> `to`; FAILED_PRECONDITION naming both states otherwise.
// AT_PROCESSING_CENTER -> PICKING -> PACKED -> HANDED_TO_CARRIER -> OUT_FOR_DELIVERY -> DELIVERED;
// HANDED_TO_CARRIER may go straight to DELIVERED (carriers report sparsely); OUT_FOR_DELIVERY ->
// DELIVERY_FAILED -> OUT_FOR_DELIVERY (retry), DELIVERED, or RETURNED_TO_SENDER.
absl::Status CheckPackageMove(v1::PackageStatus from, v1::PackageStatus to);

// How far along a package is (for "never backwards" checks): 1 at the processing center ... 6 done.
int Stage(v1::PackageStatus status);
bool IsFinal(v1::PackageStatus status);
bool IsFinal(v1::OrderStatus status);

// The order's status from its packages: DELIVERY_FAILED while any package is failed; otherwise the
// least advanced unfinished package; once all are finished, DELIVERED if every package was, else
// RETURNED_TO_SENDER. Orders without packages keep their own status.
v1::OrderStatus DeriveOrderStatus(const v1::Order& order);

// Early before the window opens, late after it closes, on time inside it.
v1::Timeliness ClassifyDelivery(const v1::DeliveryWindow& window, absl::Time delivered);
// LATE if any package was late, else EARLY if any was early, else ON_TIME.
v1::Timeliness OrderTimeliness(const v1::Order& order);

// Checks a split plan against the order: every item's quantity in exactly one package in all, no
// unknown items, no empty package. An empty plan means one package with everything.
absl::Status CheckSplitPlan(const v1::Order& order,
                            const google::protobuf::RepeatedPtrField<v1::PackagePlan>& plan);
// Creates the packages (AT_PROCESSING_CENTER) from a checked plan.
void CreatePackages(v1::Order& order,
                    const google::protobuf::RepeatedPtrField<v1::PackagePlan>& plan);

// May the order still be cancelled? Not once any package is with a carrier.
absl::Status CheckCancellable(const v1::Order& order);

// Applies a package move with its details (carrier, courier, ETA, failure reason) at `when`; the
// caller has checked the move. Sets delivered time and timeliness on delivery, counts failed
// attempts, and updates the order's derived status, delivered time and timeliness.
void ApplyPackageMove(v1::Order& order, v1::Package& package, const v1::AdvancePackageRequest& move,
                      absl::Time when);

// The items at their unit prices, before any discount (the order's total less shipping, plus the
// discount).
int64_t ItemsListValue(const v1::Order& order);

v1::Package* FindPackage(v1::Order& order, absl::string_view package_id);
const v1::OrderItem* FindItem(const v1::Order& order, absl::string_view item_id);
// The package that holds an item (the first one when split across several).
const v1::Package* PackageOfItem(const v1::Order& order, absl::string_view item_id);

// The events an order produces for other services, as they need them (customer_id and, unless set
// here, occur_time are filled by the store).
v1::EventItem ToEventItem(const v1::OrderItem& item, int32_t quantity);
v1::Event OrderPlacedEvent(const v1::Order& order);
// Dated at the order's delivered_time; its items_amount is what was paid for the items (less the
// coupon's discount).
v1::Event OrderDeliveredEvent(const v1::Order& order);
// For a refunded return of the order: its amount, fault and items.
v1::Event OrderRefundedEvent(const v1::Order& order, const v1::Return& ret);
// The failed delivery attempt a package of the order records (its count and reason).
v1::Event DeliveryFailedEvent(const v1::Order& order, const v1::Package& package);
// A notice for the customer that a package of the order reached `stage` at `when`: its carrier,
// tracking number and ETA as they now are; for DELAYED also the promised window's end.
v1::Event ShipmentUpdatedEvent(const v1::Order& order, const v1::Package& package,
                               v1::ShipmentStage stage, absl::Time when);
// Called when the package's ETA was just set: true (and delayed_time set to `when`) the first time
// the ETA lies past the end of the order's promised delivery window while the package is still on
// its way. False for orders without a window, finished packages, ETAs inside the window, and every
// later call once the package was found delayed, so the customer hears of a delay once.
bool MarkDelayed(const v1::Order& order, v1::Package& package, absl::Time when);
// A review of one of the order's items.
v1::Event ReviewSubmittedEvent(const v1::Order& order, const v1::OrderItem& item,
                               const v1::Review& review);

std::string PackageStatusName(v1::PackageStatus s);
std::string OrderStatusName(v1::OrderStatus s);

}  // namespace crm::order_tracking
