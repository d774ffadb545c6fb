#include "services/order_tracking/history_import.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "services/order_tracking/order_changes.h"
#include "services/order_tracking/order_lifecycle.h"
#include "services/order_tracking/order_workflows.h"
#include "services/order_tracking/returns.h"

namespace crm::order_tracking {
namespace {

absl::StatusOr<absl::Time> PastTime(const std::string& field, const google::protobuf::Timestamp& ts,
                                    absl::Time now) {
  CRM_ASSIGN_OR_RETURN(auto t, api::ToTime(field, ts));
  if (t > now + kClockSkew) return api::Invalid(field, "is in the future");
  return t;
}

absl::Status ValidateOrder(const std::string& f, const v1::HistoricalOrder& o, absl::Time now) {
  CRM_RETURN_IF_ERROR(api::RequiredId(f + ".external_order_id", o.external_order_id()));
  if (!o.has_place_time()) return api::Invalid(f + ".place_time", "is required");
  CRM_ASSIGN_OR_RETURN(auto placed, PastTime(f + ".place_time", o.place_time(), now));
  int64_t total = 0;
  std::string currency;
  if (auto s = ValidateOrderLines(f + ".items", o.items(), kMaxImportedItems,
                                  /*category_required=*/false, &total, &currency);
      !s.ok()) {
    return s;
  }
  CRM_RETURN_IF_ERROR(AddShippingFee(f + ".shipping_fee", o.shipping_fee(), currency, &total));
  if (!v1::PaymentMethodType_IsValid(o.payment_method())) {
    return api::Invalid(f + ".payment_method", "is not a payment method");
  }
  if (o.has_delivered_time()) {
    auto delivered = PastTime(f + ".delivered_time", o.delivered_time(), now);
    if (!delivered.ok()) return delivered.status();
    if (*delivered < placed) return api::Invalid(f + ".delivered_time", "is before place_time");
  }
  return absl::OkStatus();
}

absl::Status ValidateReturn(const std::string& f, const v1::HistoricalReturn& r, absl::Time now) {
  CRM_RETURN_IF_ERROR(api::RequiredId(f + ".external_return_id", r.external_return_id()));
  CRM_RETURN_IF_ERROR(api::RequiredId(f + ".external_order_id", r.external_order_id()));
  if (!r.has_refund_time()) return api::Invalid(f + ".refund_time", "is required");
  CRM_RETURN_IF_ERROR(PastTime(f + ".refund_time", r.refund_time(), now));
  if (r.lines().empty()) return api::Invalid(f + ".lines", "a return needs at least one line");
  if (r.lines_size() > kMaxImportedItems) {
    return api::Invalid(f + ".lines",
                        absl::StrCat("at most ", kMaxImportedItems, " lines per return"));
  }
  for (int i = 0; i < r.lines_size(); ++i) {
    const std::string lf = absl::StrCat(f, ".lines[", i, "]");
    CRM_RETURN_IF_ERROR(api::ValidateSku(lf + ".sku", r.lines(i).sku()));
    if (r.lines(i).quantity() < 1 || r.lines(i).quantity() > kMaxQuantity) {
      return api::Invalid(lf + ".quantity", absl::StrCat("must be 1-", kMaxQuantity));
    }
  }
  if (!v1::Fault_IsValid(r.fault())) return api::Invalid(f + ".fault", "is not a fault");
  return absl::OkStatus();
}

v1::OrderHistoryEntry Entry(std::string description, const google::protobuf::Timestamp& when) {
  v1::OrderHistoryEntry h;
  h.set_description(std::move(description));
  h.set_actor("import");
  *h.mutable_time() = when;
  return h;
}

// The recorded return's lines as items of `order`: each sku's lines in order, each taking what it
// still holds, into `ret` and the order's returned quantities. FAILED_PRECONDITION naming `field`
// when the order holds less of a sku than the line returns.
absl::Status TakeReturnedLines(const std::string& field, const v1::HistoricalReturn& recorded,
                               v1::Order& order, v1::Return* ret) {
  auto& returned = *order.mutable_returned_quantities();
  for (int i = 0; i < recorded.lines_size(); ++i) {
    const auto& line = recorded.lines(i);
    int32_t left = line.quantity();
    for (const auto& item : order.items()) {
      if (item.sku() != line.sku() || left == 0) continue;
      const int32_t free = item.quantity() - returned[item.item_id()];
      const int32_t take = std::min(free, left);
      if (take <= 0) continue;
      returned[item.item_id()] += take;
      left -= take;
      v1::ReturnItem* ri = ret->add_items();
      ri->set_item_id(item.item_id());
      ri->set_quantity(take);
    }
    if (left > 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(field, ".lines[", i, "].quantity: order \"", recorded.external_order_id(),
                       "\" holds ", line.quantity() - left, " more of sku \"", line.sku(),
                       "\" to return, not ", line.quantity()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Time ImportedTime(const v1::HistoricalOrder& o) { return api::FromTimestamp(o.place_time()); }
absl::Time ImportedTime(const v1::HistoricalReturn& r) {
  return api::FromTimestamp(r.refund_time());
}

absl::Status ValidateImport(const v1::ImportOrdersRequest& req, absl::Time now) {
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req.customer_id()));
  if (req.orders().empty() && req.returns().empty()) {
    return api::Invalid("orders", "send at least one order or return");
  }
  if (req.orders_size() > kMaxImportedOrdersPerCall) {
    return api::Invalid("orders",
                        absl::StrCat("at most ", kMaxImportedOrdersPerCall, " orders per call"));
  }
  if (req.returns_size() > kMaxImportedReturnsPerCall) {
    return api::Invalid("returns",
                        absl::StrCat("at most ", kMaxImportedReturnsPerCall, " returns per call"));
  }
  std::set<std::string> orders, returns;
  for (int i = 0; i < req.orders_size(); ++i) {
    const std::string f = absl::StrCat("orders[", i, "]");
    CRM_RETURN_IF_ERROR(ValidateOrder(f, req.orders(i), now));
    if (!orders.insert(req.orders(i).external_order_id()).second) {
      return api::Invalid(f + ".external_order_id", "appears twice in the request");
    }
  }
  for (int i = 0; i < req.returns_size(); ++i) {
    const std::string f = absl::StrCat("returns[", i, "]");
    CRM_RETURN_IF_ERROR(ValidateReturn(f, req.returns(i), now));
    if (!returns.insert(req.returns(i).external_return_id()).second) {
      return api::Invalid(f + ".external_return_id", "appears twice in the request");
    }
  }
  return absl::OkStatus();
}

void BuildImportedOrder(const std::string& customer_id, const v1::HistoricalOrder& recorded,
                        std::string order_id, v1::Order* order, OrderChange* change) {
  order->set_order_id(std::move(order_id));
  order->set_customer_id(customer_id);
  order->set_external_order_id(recorded.external_order_id());
  int64_t total = 0;
  for (int i = 0; i < recorded.items_size(); ++i) {
    v1::OrderItem* item = order->add_items();
    *item = recorded.items(i);
    item->set_item_id(std::to_string(i + 1));
    total += item->unit_price().amount_minor() * item->quantity();
  }
  const std::string& currency = recorded.items(0).unit_price().currency();
  *order->mutable_shipping_fee() = recorded.shipping_fee();
  order->mutable_shipping_fee()->set_currency(currency);
  order->mutable_total()->set_amount_minor(total + recorded.shipping_fee().amount_minor());
  order->mutable_total()->set_currency(currency);
  order->set_payment_method(recorded.payment_method() == v1::PAYMENT_METHOD_TYPE_UNSPECIFIED
                                ? v1::PAYMENT_METHOD_TYPE_CARD
                                : recorded.payment_method());
  *order->mutable_create_time() = recorded.place_time();
  change->history.push_back(Entry("order placed (imported)", recorded.place_time()));
  v1::Event placed = OrderPlacedEvent(*order);
  *placed.mutable_occur_time() = recorded.place_time();
  change->events.push_back(std::move(placed));
  if (recorded.cancelled()) {
    order->set_status(v1::ORDER_STATUS_CANCELLED);
    order->set_cancel_reason("cancelled before import");
    change->history.push_back(Entry("order cancelled (imported)", recorded.place_time()));
    v1::Event cancelled;
    cancelled.mutable_order_cancelled()->set_order_id(order->order_id());
    cancelled.mutable_order_cancelled()->set_reason(order->cancel_reason());
    *cancelled.mutable_occur_time() = recorded.place_time();
    change->events.push_back(std::move(cancelled));
    return;
  }
  order->set_status(v1::ORDER_STATUS_DELIVERED);
  *order->mutable_paid_time() = recorded.place_time();
  *order->mutable_delivered_time() =
      recorded.has_delivered_time() ? recorded.delivered_time() : recorded.place_time();
  change->history.push_back(Entry("order delivered (imported)", order->delivered_time()));
  change->events.push_back(OrderDeliveredEvent(*order));
}

absl::Status ApplyImportedReturn(const std::string& field, const v1::HistoricalReturn& recorded,
                                 std::string return_id, v1::Order& order, v1::Return* ret,
                                 OrderChange* change) {
  if (order.status() != v1::ORDER_STATUS_DELIVERED) {
    return absl::FailedPreconditionError(
        absl::StrCat(field, ".external_order_id: order \"", recorded.external_order_id(), "\" is ",
                     OrderStatusName(order.status()), "; only a delivered order has returns"));
  }
  if (ImportedTime(recorded) < api::FromTimestamp(order.create_time())) {
    return absl::FailedPreconditionError(absl::StrCat(
        field, ".refund_time: is before order \"", recorded.external_order_id(), "\" was placed"));
  }
  ret->set_return_id(std::move(return_id));
  ret->set_order_id(order.order_id());
  ret->set_customer_id(order.customer_id());
  ret->set_external_return_id(recorded.external_return_id());
  ret->set_fault(recorded.fault() == v1::FAULT_UNSPECIFIED ? v1::FAULT_CUSTOMER : recorded.fault());
  ret->set_status(v1::RETURN_STATUS_REFUNDED);
  ret->set_reason("returned before import");
  *ret->mutable_request_time() = recorded.refund_time();
  *ret->mutable_update_time() = recorded.refund_time();
  CRM_RETURN_IF_ERROR(TakeReturnedLines(field, recorded, order, ret));
  bool shipping = false;
  *ret->mutable_refund_amount() = TakeRefund(order, *ret, &shipping);
  ret->set_shipping_refunded(shipping);
  change->history.push_back(
      Entry(absl::StrCat("return ", ret->return_id(), " refunded (imported) ",
                         ret->refund_amount().amount_minor(), " ", ret->refund_amount().currency()),
            recorded.refund_time()));
  v1::Event refunded = OrderRefundedEvent(order, *ret);
  *refunded.mutable_occur_time() = recorded.refund_time();
  change->events.push_back(std::move(refunded));
  return absl::OkStatus();
}

}  // namespace crm::order_tracking
