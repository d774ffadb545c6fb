#include "services/order_tracking/order_lifecycle.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"

namespace crm::order_tracking {
namespace {

using P = v1::PackageStatus;

v1::OrderStatus ToOrderStatus(P s) {
  switch (s) {
    case v1::PACKAGE_STATUS_AT_PROCESSING_CENTER: return v1::ORDER_STATUS_AT_PROCESSING_CENTER;
    case v1::PACKAGE_STATUS_PICKING: return v1::ORDER_STATUS_PICKING;
    case v1::PACKAGE_STATUS_PACKED: return v1::ORDER_STATUS_PACKED;
    case v1::PACKAGE_STATUS_HANDED_TO_CARRIER: return v1::ORDER_STATUS_HANDED_TO_CARRIER;
    case v1::PACKAGE_STATUS_OUT_FOR_DELIVERY: return v1::ORDER_STATUS_OUT_FOR_DELIVERY;
    case v1::PACKAGE_STATUS_DELIVERED: return v1::ORDER_STATUS_DELIVERED;
    case v1::PACKAGE_STATUS_DELIVERY_FAILED: return v1::ORDER_STATUS_DELIVERY_FAILED;
    case v1::PACKAGE_STATUS_RETURNED_TO_SENDER: return v1::ORDER_STATUS_RETURNED_TO_SENDER;
    default: return v1::ORDER_STATUS_UNSPECIFIED;
  }
}

}  // namespace

absl::Status ValidateMoney(const std::string& field, const v1::Money& m,
                           bool allow_empty_currency) {
  if (m.amount_minor() < 0) return api::Invalid(field + ".amount_minor", "must not be negative");
  if (m.amount_minor() > kMaxAmountMinor)
    return api::Invalid(field + ".amount_minor", "is beyond any real amount");
  if (allow_empty_currency && m.currency().empty() && m.amount_minor() == 0)
    return absl::OkStatus();
  return api::CurrencyCode(field + ".currency", m.currency());
}

absl::Status ValidateOrderLines(const std::string& field,
                                const google::protobuf::RepeatedPtrField<v1::OrderItem>& items,
                                int max_items, bool category_required, int64_t* total,
                                std::string* currency) {
  if (items.empty()) return api::Invalid(field, "an order needs at least one item");
  if (items.size() > max_items)
    return api::Invalid(field, absl::StrCat("at most ", max_items, " lines per order"));
  *currency = items.Get(0).unit_price().currency();
  *total = 0;
  for (int i = 0; i < items.size(); ++i) {
    const auto& item = items.Get(i);
    const std::string f = absl::StrCat(field, "[", i, "]");
    CRM_RETURN_IF_ERROR(api::ValidateSku(f + ".sku", item.sku()));
    CRM_RETURN_IF_ERROR(api::OptionalText(f + ".name", item.name(), 200));
    if (category_required) {
      CRM_RETURN_IF_ERROR(api::RequiredText(f + ".category", item.category(), 100));
    } else if (auto s = api::OptionalText(f + ".category", item.category(), 100); !s.ok()) {
      return s;
    }
    if (item.quantity() < 1 || item.quantity() > kMaxQuantity) {
      return api::Invalid(f + ".quantity", absl::StrCat("must be 1-", kMaxQuantity));
    }
    CRM_RETURN_IF_ERROR(ValidateMoney(f + ".unit_price", item.unit_price(), false));
    if (item.unit_price().currency() != *currency) {
      return api::Invalid(f + ".unit_price.currency",
                          "every item of an order must be in one currency");
    }
    int64_t line;
    if (__builtin_mul_overflow(item.unit_price().amount_minor(), int64_t{item.quantity()}, &line) ||
        __builtin_add_overflow(*total, line, total) || *total > kMaxAmountMinor) {
      return api::Invalid(f + ".unit_price", "the order total overflows");
    }
  }
  return absl::OkStatus();
}

absl::Status AddShippingFee(const std::string& field, const v1::Money& fee,
                            const std::string& currency, int64_t* total) {
  CRM_RETURN_IF_ERROR(ValidateMoney(field, fee, true));
  if (!fee.currency().empty() && fee.currency() != currency) {
    return api::Invalid(field + ".currency", "must be the items' currency");
  }
  if (__builtin_add_overflow(*total, fee.amount_minor(), total) || *total > kMaxAmountMinor) {
    return api::Invalid(field, "the order total overflows");
  }
  return absl::OkStatus();
}

v1::EventItem ToEventItem(const v1::OrderItem& i, int32_t quantity) {
  v1::EventItem e;
  e.set_item_id(i.item_id());
  e.set_sku(i.sku());
  e.set_category(i.category());
  e.set_quantity(quantity);
  *e.mutable_unit_price() = i.unit_price();
  return e;
}

v1::Event OrderPlacedEvent(const v1::Order& order) {
  v1::Event placed;
  auto* p = placed.mutable_order_placed();
  p->set_order_id(order.order_id());
  *p->mutable_total() = order.total();
  p->set_payment_method(order.payment_method());
  for (const auto& i : order.items()) *p->add_items() = ToEventItem(i, i.quantity());
  return placed;
}

v1::Event OrderDeliveredEvent(const v1::Order& order) {
  v1::Event e;
  auto* d = e.mutable_order_delivered();
  d->set_order_id(order.order_id());
  int64_t items_amount = 0;
  for (const auto& i : order.items()) {
    items_amount += i.unit_price().amount_minor() * i.quantity();
    *d->add_items() = ToEventItem(i, i.quantity());
  }
  d->mutable_items_amount()->set_amount_minor(items_amount - order.discount().amount_minor());
  d->mutable_items_amount()->set_currency(order.total().currency());
  d->set_timeliness(order.timeliness());
  *d->mutable_delivered_time() = order.delivered_time();
  if (order.has_delivery_window()) *d->mutable_window_end() = order.delivery_window().end_time();
  if (order.timeliness() == v1::TIMELINESS_LATE) {
    d->set_minutes_late(
        absl::ToInt64Minutes(api::FromTimestamp(order.delivered_time()) -
                             api::FromTimestamp(order.delivery_window().end_time())));
  }
  *e.mutable_occur_time() = order.delivered_time();
  return e;
}

v1::Event OrderRefundedEvent(const v1::Order& order, const v1::Return& ret) {
  v1::Event e;
  auto* f = e.mutable_order_refunded();
  f->set_order_id(order.order_id());
  f->set_return_id(ret.return_id());
  *f->mutable_amount() = ret.refund_amount();
  f->set_fault(ret.fault());
  f->set_shipping_refunded(ret.shipping_refunded());
  for (const auto& ri : ret.items()) {
    if (const v1::OrderItem* item = FindItem(order, ri.item_id()))
      *f->add_items() = ToEventItem(*item, ri.quantity());
  }
  return e;
}

v1::Event DeliveryFailedEvent(const v1::Order& order, const v1::Package& package) {
  v1::Event e;
  auto* f = e.mutable_delivery_failed();
  f->set_order_id(order.order_id());
  f->set_package_id(package.package_id());
  f->set_reason(package.failure_reason());
  f->set_attempt(package.delivery_attempts());
  return e;
}

v1::Event ShipmentUpdatedEvent(const v1::Order& order, const v1::Package& package,
                               v1::ShipmentStage stage, absl::Time when) {
  v1::Event e;
  auto* s = e.mutable_shipment_updated();
  s->set_order_id(order.order_id());
  s->set_package_id(package.package_id());
  s->set_stage(stage);
  s->set_carrier(package.carrier());
  s->set_tracking_number(package.tracking_number());
  if (package.has_eta()) *s->mutable_eta() = package.eta();
  if (stage == v1::SHIPMENT_STAGE_DELAYED)
    *s->mutable_promised_by() = order.delivery_window().end_time();
  api::SetTimestamp(when, e.mutable_occur_time());
  return e;
}

bool MarkDelayed(const v1::Order& order, v1::Package& package, absl::Time when) {
  if (package.has_delayed_time() || !package.has_eta() || IsFinal(package.status()) ||
      !order.has_delivery_window() || !order.delivery_window().has_end_time()) {
    return false;
  }
  if (api::FromTimestamp(package.eta()) <= api::FromTimestamp(order.delivery_window().end_time()))
    return false;
  api::SetTimestamp(when, package.mutable_delayed_time());
  return true;
}

v1::Event ReviewSubmittedEvent(const v1::Order& order, const v1::OrderItem& item,
                               const v1::Review& review) {
  v1::Event e;
  auto* r = e.mutable_review_submitted();
  r->set_order_id(order.order_id());
  r->set_item_id(item.item_id());
  r->set_sku(item.sku());
  r->set_category(item.category());
  r->set_review_id(review.review_id());
  r->set_rating(review.rating());
  r->set_text(review.text());
  return e;
}

std::string PackageStatusName(v1::PackageStatus s) {
  std::string n = v1::PackageStatus_Name(s);
  return n.rfind("PACKAGE_STATUS_", 0) == 0 ? n.substr(15) : n;
}

std::string OrderStatusName(v1::OrderStatus s) {
  std::string n = v1::OrderStatus_Name(s);
  return n.rfind("ORDER_STATUS_", 0) == 0 ? n.substr(13) : n;
}

int Stage(P s) {
  switch (s) {
    case v1::PACKAGE_STATUS_AT_PROCESSING_CENTER: return 1;
    case v1::PACKAGE_STATUS_PICKING: return 2;
    case v1::PACKAGE_STATUS_PACKED: return 3;
    case v1::PACKAGE_STATUS_HANDED_TO_CARRIER: return 4;
    case v1::PACKAGE_STATUS_OUT_FOR_DELIVERY:
    case v1::PACKAGE_STATUS_DELIVERY_FAILED: return 5;
    case v1::PACKAGE_STATUS_DELIVERED:
    case v1::PACKAGE_STATUS_RETURNED_TO_SENDER: return 6;
    default: return 0;
  }
}

bool IsFinal(P s) {
  return s == v1::PACKAGE_STATUS_DELIVERED || s == v1::PACKAGE_STATUS_RETURNED_TO_SENDER;
}

bool IsFinal(v1::OrderStatus s) {
  return s == v1::ORDER_STATUS_DELIVERED || s == v1::ORDER_STATUS_CANCELLED ||
         s == v1::ORDER_STATUS_RETURNED_TO_SENDER;
}

absl::Status CheckPackageMove(P from, P to) {
  static const std::multimap<P, P> kAllowed = {
      {v1::PACKAGE_STATUS_AT_PROCESSING_CENTER, v1::PACKAGE_STATUS_PICKING},
      {v1::PACKAGE_STATUS_PICKING, v1::PACKAGE_STATUS_PACKED},
      {v1::PACKAGE_STATUS_PACKED, v1::PACKAGE_STATUS_HANDED_TO_CARRIER},
      {v1::PACKAGE_STATUS_HANDED_TO_CARRIER, v1::PACKAGE_STATUS_OUT_FOR_DELIVERY},
      {v1::PACKAGE_STATUS_HANDED_TO_CARRIER, v1::PACKAGE_STATUS_DELIVERED},
      {v1::PACKAGE_STATUS_HANDED_TO_CARRIER, v1::PACKAGE_STATUS_DELIVERY_FAILED},
      {v1::PACKAGE_STATUS_OUT_FOR_DELIVERY, v1::PACKAGE_STATUS_DELIVERED},
      {v1::PACKAGE_STATUS_OUT_FOR_DELIVERY, v1::PACKAGE_STATUS_DELIVERY_FAILED},
      {v1::PACKAGE_STATUS_DELIVERY_FAILED, v1::PACKAGE_STATUS_OUT_FOR_DELIVERY},
      {v1::PACKAGE_STATUS_DELIVERY_FAILED, v1::PACKAGE_STATUS_DELIVERED},
      {v1::PACKAGE_STATUS_DELIVERY_FAILED, v1::PACKAGE_STATUS_RETURNED_TO_SENDER},
  };
  auto [lo, hi] = kAllowed.equal_range(from);
  for (auto it = lo; it != hi; ++it) {
    if (it->second == to) return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "status: a package cannot go from ", PackageStatusName(from), " to ", PackageStatusName(to)));
}

v1::OrderStatus DeriveOrderStatus(const v1::Order& order) {
  if (order.packages().empty() || order.status() == v1::ORDER_STATUS_CANCELLED)
    return order.status();
  bool any_failed = false, all_delivered = true;
  const v1::Package* least = nullptr;
  for (const auto& p : order.packages()) {
    if (p.status() == v1::PACKAGE_STATUS_DELIVERY_FAILED) any_failed = true;
    if (p.status() != v1::PACKAGE_STATUS_DELIVERED) all_delivered = false;
    if (!IsFinal(p.status()) && (least == nullptr || Stage(p.status()) < Stage(least->status())))
      least = &p;
  }
  if (any_failed) return v1::ORDER_STATUS_DELIVERY_FAILED;
  if (least != nullptr) return ToOrderStatus(least->status());
  return all_delivered ? v1::ORDER_STATUS_DELIVERED : v1::ORDER_STATUS_RETURNED_TO_SENDER;
}

v1::Timeliness ClassifyDelivery(const v1::DeliveryWindow& window, absl::Time delivered) {
  if (delivered < api::FromTimestamp(window.start_time())) return v1::TIMELINESS_EARLY;
  if (delivered > api::FromTimestamp(window.end_time())) return v1::TIMELINESS_LATE;
  return v1::TIMELINESS_ON_TIME;
}

v1::Timeliness OrderTimeliness(const v1::Order& order) {
  bool early = false;
  for (const auto& p : order.packages()) {
    if (p.timeliness() == v1::TIMELINESS_LATE) return v1::TIMELINESS_LATE;
    early = early || p.timeliness() == v1::TIMELINESS_EARLY;
  }
  return early ? v1::TIMELINESS_EARLY : v1::TIMELINESS_ON_TIME;
}

absl::Status CheckSplitPlan(const v1::Order& order,
                            const google::protobuf::RepeatedPtrField<v1::PackagePlan>& plan) {
  if (plan.empty()) return absl::OkStatus();
  if (plan.size() > kMaxPackages) {
    return api::Invalid("packages", absl::StrCat("at most ", kMaxPackages, " packages per order"));
  }
  std::map<std::string, int64_t> planned;
  for (int i = 0; i < plan.size(); ++i) {
    const std::string f = absl::StrCat("packages[", i, "]");
    if (plan[i].items().empty())
      return api::Invalid(f + ".items", "a package must hold at least one item");
    if (plan[i].split_reason() == v1::SPLIT_REASON_UNSPECIFIED ||
        !v1::SplitReason_IsValid(plan[i].split_reason())) {
      return api::Invalid(
          f + ".split_reason",
          "must say why the order is split (PRESALE, OUT_OF_STOCK, FASTEST_SPLIT, ...)");
    }
    for (int j = 0; j < plan[i].items_size(); ++j) {
      const auto& it = plan[i].items(j);
      const std::string fi = absl::StrCat(f, ".items[", j, "]");
      if (FindItem(order, it.item_id()) == nullptr) {
        return api::Invalid(fi + ".item_id",
                            absl::StrCat("the order has no item \"", it.item_id(), "\""));
      }
      if (it.quantity() <= 0) return api::Invalid(fi + ".quantity", "must be at least 1");
      planned[it.item_id()] += it.quantity();
    }
  }
  for (const auto& item : order.items()) {
    if (planned[item.item_id()] != item.quantity()) {
      return api::Invalid("packages",
                          absl::StrCat("item \"", item.item_id(), "\" has ", item.quantity(),
                                       " units but the packages hold ", planned[item.item_id()]));
    }
  }
  return absl::OkStatus();
}

void CreatePackages(v1::Order& order,
                    const google::protobuf::RepeatedPtrField<v1::PackagePlan>& plan) {
  order.clear_packages();
  if (plan.empty()) {
    auto* p = order.add_packages();
    p->set_package_id(order.order_id() + "-p1");
    p->set_split_reason(v1::SPLIT_REASON_NONE);
    p->set_status(v1::PACKAGE_STATUS_AT_PROCESSING_CENTER);
    for (const auto& item : order.items()) {
      auto* pi = p->add_items();
      pi->set_item_id(item.item_id());
      pi->set_quantity(item.quantity());
    }
  } else {
    for (int i = 0; i < plan.size(); ++i) {
      auto* p = order.add_packages();
      p->set_package_id(absl::StrCat(order.order_id(), "-p", i + 1));
      p->set_split_reason(plan[i].split_reason());
      p->set_status(v1::PACKAGE_STATUS_AT_PROCESSING_CENTER);
      *p->mutable_items() = plan[i].items();
    }
  }
  order.set_status(DeriveOrderStatus(order));
}

absl::Status CheckCancellable(const v1::Order& order) {
  if (order.status() == v1::ORDER_STATUS_CANCELLED) return absl::OkStatus();
  for (const auto& p : order.packages()) {
    if (Stage(p.status()) >= Stage(v1::PACKAGE_STATUS_HANDED_TO_CARRIER)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "order_id: package ", p.package_id(), " is already ", PackageStatusName(p.status()),
          "; once with the carrier the order cannot be cancelled, request a return after "
          "delivery"));
    }
  }
  return absl::OkStatus();
}

void ApplyPackageMove(v1::Order& order, v1::Package& p, const v1::AdvancePackageRequest& m,
                      absl::Time when) {
  p.set_status(m.status());
  if (!m.carrier().empty()) p.set_carrier(m.carrier());
  if (m.carrier_type() != v1::CARRIER_TYPE_UNSPECIFIED) p.set_carrier_type(m.carrier_type());
  if (!m.tracking_number().empty()) p.set_tracking_number(m.tracking_number());
  if (!m.station().empty()) p.set_station(m.station());
  if (!m.courier_name().empty()) p.set_courier_name(m.courier_name());
  if (!m.courier_phone().empty()) p.set_courier_phone(m.courier_phone());
  if (m.has_eta()) *p.mutable_eta() = m.eta();
  api::SetTimestamp(when, p.mutable_last_event_time());
  switch (m.status()) {
    case v1::PACKAGE_STATUS_HANDED_TO_CARRIER:
      api::SetTimestamp(when, p.mutable_out_of_warehouse_time());
      break;
    case v1::PACKAGE_STATUS_OUT_FOR_DELIVERY: p.clear_failure_reason(); break;
    case v1::PACKAGE_STATUS_DELIVERY_FAILED:
      p.set_delivery_attempts(p.delivery_attempts() + 1);
      p.set_failure_reason(m.failure_reason());
      break;
    case v1::PACKAGE_STATUS_DELIVERED:
      p.set_delivery_attempts(p.delivery_attempts() + 1);
      api::SetTimestamp(when, p.mutable_delivered_time());
      p.set_timeliness(ClassifyDelivery(order.delivery_window(), when));
      break;
    default: break;
  }
  order.set_status(DeriveOrderStatus(order));
  if (order.status() == v1::ORDER_STATUS_DELIVERED) {
    absl::Time last = absl::InfinitePast();
    for (const auto& q : order.packages())
      last = std::max(last, api::FromTimestamp(q.delivered_time()));
    api::SetTimestamp(last, order.mutable_delivered_time());
    order.set_timeliness(OrderTimeliness(order));
  }
}

int64_t ItemsListValue(const v1::Order& order) {
  int64_t items = 0;
  for (const auto& i : order.items()) items += i.unit_price().amount_minor() * i.quantity();
  return items;
}

v1::Package* FindPackage(v1::Order& order, absl::string_view package_id) {
  for (auto& p : *order.mutable_packages()) {
    if (p.package_id() == package_id) return &p;
  }
  return nullptr;
}

const v1::OrderItem* FindItem(const v1::Order& order, absl::string_view item_id) {
  for (const auto& i : order.items()) {
    if (i.item_id() == item_id) return &i;
  }
  return nullptr;
}

const v1::Package* PackageOfItem(const v1::Order& order, absl::string_view item_id) {
  for (const auto& p : order.packages()) {
    for (const auto& i : p.items()) {
      if (i.item_id() == item_id) return &p;
    }
  }
  return nullptr;
}

}  // namespace crm::order_tracking
