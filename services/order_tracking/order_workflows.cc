#include "services/order_tracking/order_workflows.h"

#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/sharding/hash.h"
#include "libs/sharding/shard_map.h"
#include "services/order_tracking/order_changes.h"
#include "services/order_tracking/order_lifecycle.h"

namespace crm::order_tracking {
namespace {

// The refund of a return reaching REFUNDED: its amount (shipping included when the fault was not
// the customer's, once per order), appended to `what`, and the OrderRefunded event.
void Refund(v1::Order& o, v1::Return& r, OrderChange& c, std::string* what) {
  bool shipping = false;
  *r.mutable_refund_amount() = TakeRefund(o, r, &shipping);
  r.set_shipping_refunded(shipping);
  absl::StrAppend(what, " ", r.refund_amount().amount_minor(), " ", r.refund_amount().currency());
  c.events.push_back(OrderRefundedEvent(o, r));
}

}  // namespace

absl::StatusOr<v1::Address> ShippingAddress(const v1::Customer& customer,
                                            const std::string& requested_address_id) {
  const std::string address_id =
      requested_address_id.empty() ? customer.default_address_id() : requested_address_id;
  const v1::Address* address = nullptr;
  for (const auto& a : customer.addresses()) {
    if (a.address_id() == address_id) address = &a;
  }
  if (address != nullptr) return *address;
  if (requested_address_id.empty()) {
    return absl::FailedPreconditionError(
        "shipping_address_id: the customer has no address yet; add one first");
  }
  return absl::NotFoundError(
      absl::StrCat("shipping_address_id: the customer has no address \"", address_id, "\""));
}

std::string OrderIdFor(const std::string& customer_id, const std::string& request_id) {
  // FNV-1a then a splitmix64 finish: stable across processes and builds (absl::Hash is not). A
  // retried CreateOrder must name the same order: it is the key of the order's coupon reservation.
  // The start is FNV's offset basis with its last digit lost; ids minted since depend on it.
  constexpr uint64_t kSeedStart = 1469598103934665603ULL;
  const uint64_t seed =
      sharding::Fnv1a(request_id, sharding::Fnv1a("\n", sharding::Fnv1a(customer_id, kSeedStart)));
  return sharding::FirstIdInBucket("o", sharding::BucketOf(customer_id), [seed](uint64_t attempt) {
    uint64_t v = seed + attempt * 0x9E3779B97F4A7C15ULL;
    v = (v ^ (v >> 30)) * 0xBF58476D1CE4E5B9ULL;
    v = (v ^ (v >> 27)) * 0x94D049BB133111EBULL;
    return v ^ (v >> 31);
  });
}

v1::Order NewOrder(const v1::CreateOrderRequest& req, const std::string& order_id, int64_t total,
                   const std::string& currency, const v1::Address& address, absl::Time now) {
  v1::Order order;
  order.set_order_id(order_id);
  order.set_customer_id(req.customer_id());
  for (int i = 0; i < req.items_size(); ++i) {
    auto* item = order.add_items();
    *item = req.items(i);
    item->set_item_id(std::to_string(i + 1));
  }
  order.set_payment_method(req.payment_method());
  *order.mutable_shipping_fee() = req.shipping_fee();
  order.mutable_shipping_fee()->set_currency(currency);
  order.mutable_total()->set_amount_minor(total);
  order.mutable_total()->set_currency(currency);
  *order.mutable_delivery_window() = req.delivery_window();
  order.set_status(v1::ORDER_STATUS_PLACED);
  *order.mutable_shipping_address() = address;
  api::SetTimestamp(now, order.mutable_create_time());
  return order;
}

google::protobuf::RepeatedPtrField<v1::EventItem> CouponLines(const v1::Order& order) {
  google::protobuf::RepeatedPtrField<v1::EventItem> lines;
  for (const auto& item : order.items()) *lines.Add() = ToEventItem(item, item.quantity());
  return lines;
}

absl::Status ApplyDiscount(const std::string& coupon_id, const v1::Money& discount,
                           const std::string& rule, v1::Order& order) {
  const int64_t items = ItemsListValue(order);
  if (discount.currency() != order.total().currency() || discount.amount_minor() <= 0 ||
      discount.amount_minor() > items) {
    return absl::InternalError(
        absl::StrCat("loyalty reserved a discount of ", discount.amount_minor(), " ",
                     discount.currency(), " for items of ", items, " ", order.total().currency()));
  }
  order.set_coupon_id(coupon_id);
  *order.mutable_discount() = discount;
  order.set_discount_rule(rule);
  order.mutable_total()->set_amount_minor(order.total().amount_minor() - discount.amount_minor());
  return absl::OkStatus();
}

v1::Money TakeRefund(v1::Order& order, const v1::Return& ret, bool* shipping) {
  v1::Money refund = RefundAmount(order, ret, shipping);
  order.set_items_refunded_list_minor(order.items_refunded_list_minor() +
                                      ReturnedListValue(order, ret));
  if (*shipping) order.set_shipping_refunded(true);
  return refund;
}

absl::Status ApplyPayment(const v1::PayOrderRequest& req, absl::Time now, v1::Order& o,
                          OrderChange& c) {
  if (o.status() == v1::ORDER_STATUS_PAID && o.payment_reference() == req.payment_reference()) {
    c.unchanged = true;  // the same payment reported again
    return absl::OkStatus();
  }
  if (o.payment_method() == v1::PAYMENT_METHOD_TYPE_CASH_ON_DELIVERY) {
    return absl::FailedPreconditionError(
        "order_id: a cash-on-delivery order is paid at the door, on delivery");
  }
  if (o.status() != v1::ORDER_STATUS_PLACED) {
    return absl::FailedPreconditionError(absl::StrCat("order_id: the order is ",
                                                      OrderStatusName(o.status()),
                                                      "; only a PLACED order can be paid"));
  }
  o.set_status(v1::ORDER_STATUS_PAID);
  o.set_payment_reference(req.payment_reference());
  api::SetTimestamp(now, o.mutable_paid_time());
  c.history.push_back(HistoryEntry("paid", "payment", now));
  c.summary = "paid";
  return absl::OkStatus();
}

absl::Status ApplyCancellation(const v1::CancelOrderRequest& req, const std::string& actor,
                               absl::Time now, v1::Order& o, OrderChange& c) {
  if (o.status() == v1::ORDER_STATUS_CANCELLED) {
    c.unchanged = true;
    return absl::OkStatus();
  }
  CRM_RETURN_IF_ERROR(CheckCancellable(o));
  o.set_status(v1::ORDER_STATUS_CANCELLED);
  o.set_cancel_reason(req.reason());
  c.history.push_back(HistoryEntry(absl::StrCat("cancelled: ", req.reason()), actor, now));
  c.summary = "cancelled";
  v1::Event e;
  e.mutable_order_cancelled()->set_order_id(o.order_id());
  e.mutable_order_cancelled()->set_reason(req.reason());
  c.events.push_back(std::move(e));
  return absl::OkStatus();
}

absl::Status ApplyProcessing(const v1::ProcessOrderRequest& req, absl::Time now, v1::Order& o,
                             OrderChange& c) {
  if (!o.packages().empty()) {
    c.unchanged = true;  // already processed
    return absl::OkStatus();
  }
  const bool cod = o.payment_method() == v1::PAYMENT_METHOD_TYPE_CASH_ON_DELIVERY;
  if (!(o.status() == v1::ORDER_STATUS_PAID || (cod && o.status() == v1::ORDER_STATUS_PLACED))) {
    return absl::FailedPreconditionError(
        absl::StrCat("order_id: the order is ", OrderStatusName(o.status()),
                     "; it must be paid (or cash on delivery) before processing"));
  }
  CRM_RETURN_IF_ERROR(CheckSplitPlan(o, req.packages()));
  CreatePackages(o, req.packages());
  c.history.push_back(HistoryEntry(
      absl::StrCat("at processing center, ", o.packages_size(), " package(s)"), "warehouse", now));
  c.summary = "at processing center";
  return absl::OkStatus();
}

absl::Status ApplyReturnRequest(const v1::RequestReturnRequest& req, const ReturnRules& rules,
                                int extra_days, const std::string& actor, absl::Time now,
                                v1::Order& o, v1::Return& r, OrderChange& c) {
  CRM_ASSIGN_OR_RETURN(auto window_end, CheckReturnRequest(o, req.items(), rules, extra_days, now));
  r.set_return_id(sharding::NewIdInBucket("r", sharding::BucketOf(req.customer_id())));
  r.set_order_id(o.order_id());
  r.set_customer_id(o.customer_id());
  *r.mutable_items() = req.items();
  r.set_reason(req.reason());
  r.set_fault(req.fault());
  r.set_status(v1::RETURN_STATUS_REQUESTED);
  api::SetTimestamp(now, r.mutable_request_time());
  api::SetTimestamp(now, r.mutable_update_time());
  api::SetTimestamp(window_end, r.mutable_window_end_time());
  for (const auto& it : req.items())
    (*o.mutable_returned_quantities())[it.item_id()] += it.quantity();
  c.history.push_back(HistoryEntry(
      absl::StrCat("return ", r.return_id(), " requested: ", req.reason()), actor, now));
  c.summary = "return requested";
  return absl::OkStatus();
}

absl::Status ApplyReturnMove(const v1::AdvanceReturnRequest& req, const std::string& actor,
                             absl::Time now, v1::Order& o, v1::Return& r, OrderChange& c) {
  if (r.status() == req.status()) {
    c.unchanged = true;
    return absl::OkStatus();
  }
  CRM_RETURN_IF_ERROR(CheckReturnMove(r.status(), req.status()));
  r.set_status(req.status());
  std::string what = absl::StrCat("return ", r.return_id(), " ", ReturnStatusName(req.status()));
  switch (req.status()) {
    case v1::RETURN_STATUS_PICKUP_SCHEDULED:
      *r.mutable_pickup_start_time() = req.pickup_start_time();
      *r.mutable_pickup_end_time() = req.pickup_end_time();
      break;
    case v1::RETURN_STATUS_REFUNDED: Refund(o, r, c, &what); break;
    case v1::RETURN_STATUS_REJECTED:
      r.set_rejection_reason(req.rejection_reason());
      for (const auto& ri : r.items())
        (*o.mutable_returned_quantities())[ri.item_id()] -= ri.quantity();
      break;
    default: break;
  }
  c.history.push_back(HistoryEntry(what, actor, now));
  c.summary = what;
  return absl::OkStatus();
}

absl::Status ApplyReview(const v1::SubmitReviewRequest& req, absl::Time now, v1::Order& o,
                         v1::Review& r, OrderChange& c) {
  const v1::OrderItem* item = FindItem(o, req.item_id());
  if (item == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("item_id: the order has no item \"", req.item_id(), "\""));
  }
  const v1::Package* p = PackageOfItem(o, item->item_id());
  if (p == nullptr || p->status() != v1::PACKAGE_STATUS_DELIVERED) {
    return absl::FailedPreconditionError(
        "item_id: an item can be reviewed once it has been delivered");
  }
  r.set_review_id(sharding::NewId("rv"));
  r.set_order_id(o.order_id());
  r.set_item_id(item->item_id());
  r.set_sku(item->sku());
  r.set_rating(req.rating());
  r.set_text(req.text());
  api::SetTimestamp(now, r.mutable_create_time());
  o.add_reviewed_item_ids(item->item_id());
  c.history.push_back(
      HistoryEntry(absl::StrCat("review of item ", item->item_id(), ": ", req.rating(), " stars"),
                   "customer", now));
  c.summary = "reviewed";
  c.events.push_back(ReviewSubmittedEvent(o, *item, r));
  return absl::OkStatus();
}

}  // namespace crm::order_tracking
