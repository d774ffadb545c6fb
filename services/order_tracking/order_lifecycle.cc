#include "services/order_tracking/order_lifecycle.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"

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

bool IsFinal(P s) { return s == v1::PACKAGE_STATUS_DELIVERED || s == v1::PACKAGE_STATUS_RETURNED_TO_SENDER; }

bool IsFinal(v1::OrderStatus s) {
  return s == v1::ORDER_STATUS_DELIVERED || s == v1::ORDER_STATUS_CANCELLED || s == v1::ORDER_STATUS_RETURNED_TO_SENDER;
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
  return absl::FailedPreconditionError(absl::StrCat("status: a package cannot go from ", PackageStatusName(from),
                                                    " to ", PackageStatusName(to)));
}

v1::OrderStatus DeriveOrderStatus(const v1::Order& order) {
  if (order.packages().empty() || order.status() == v1::ORDER_STATUS_CANCELLED) return order.status();
  bool any_failed = false, all_delivered = true;
  const v1::Package* least = nullptr;
  for (const auto& p : order.packages()) {
    if (p.status() == v1::PACKAGE_STATUS_DELIVERY_FAILED) any_failed = true;
    if (p.status() != v1::PACKAGE_STATUS_DELIVERED) all_delivered = false;
    if (!IsFinal(p.status()) && (least == nullptr || Stage(p.status()) < Stage(least->status()))) least = &p;
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

absl::Status CheckSplitPlan(const v1::Order& order, const google::protobuf::RepeatedPtrField<v1::PackagePlan>& plan) {
  if (plan.empty()) return absl::OkStatus();
  if (plan.size() > kMaxPackages) {
    return api::Invalid("packages", absl::StrCat("at most ", kMaxPackages, " packages per order"));
  }
  std::map<std::string, int64_t> planned;
  for (int i = 0; i < plan.size(); ++i) {
    const std::string f = absl::StrCat("packages[", i, "]");
    if (plan[i].items().empty()) return api::Invalid(f + ".items", "a package must hold at least one item");
    if (plan[i].split_reason() == v1::SPLIT_REASON_UNSPECIFIED || !v1::SplitReason_IsValid(plan[i].split_reason())) {
      return api::Invalid(f + ".split_reason", "must say why the order is split (PRESALE, OUT_OF_STOCK, FASTEST_SPLIT, ...)");
    }
    for (int j = 0; j < plan[i].items_size(); ++j) {
      const auto& it = plan[i].items(j);
      const std::string fi = absl::StrCat(f, ".items[", j, "]");
      if (FindItem(order, it.item_id()) == nullptr) {
        return api::Invalid(fi + ".item_id", absl::StrCat("the order has no item \"", it.item_id(), "\""));
      }
      if (it.quantity() <= 0) return api::Invalid(fi + ".quantity", "must be at least 1");
      planned[it.item_id()] += it.quantity();
    }
  }
  for (const auto& item : order.items()) {
    if (planned[item.item_id()] != item.quantity()) {
      return api::Invalid("packages", absl::StrCat("item \"", item.item_id(), "\" has ", item.quantity(),
                                                   " units but the packages hold ", planned[item.item_id()]));
    }
  }
  return absl::OkStatus();
}

void CreatePackages(v1::Order& order, const google::protobuf::RepeatedPtrField<v1::PackagePlan>& plan) {
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
          "; once with the carrier the order cannot be cancelled, request a return after delivery"));
    }
  }
  return absl::OkStatus();
}

void ApplyPackageMove(v1::Order& order, v1::Package& p, const v1::AdvancePackageRequest& m, absl::Time when) {
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
    case v1::PACKAGE_STATUS_OUT_FOR_DELIVERY:
      p.clear_failure_reason();
      break;
    case v1::PACKAGE_STATUS_DELIVERY_FAILED:
      p.set_delivery_attempts(p.delivery_attempts() + 1);
      p.set_failure_reason(m.failure_reason());
      break;
    case v1::PACKAGE_STATUS_DELIVERED:
      p.set_delivery_attempts(p.delivery_attempts() + 1);
      api::SetTimestamp(when, p.mutable_delivered_time());
      p.set_timeliness(ClassifyDelivery(order.delivery_window(), when));
      break;
    default:
      break;
  }
  order.set_status(DeriveOrderStatus(order));
  if (order.status() == v1::ORDER_STATUS_DELIVERED) {
    absl::Time last = absl::InfinitePast();
    for (const auto& q : order.packages()) last = std::max(last, api::FromTimestamp(q.delivered_time()));
    api::SetTimestamp(last, order.mutable_delivered_time());
    order.set_timeliness(OrderTimeliness(order));
  }
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

v1::PurchaseSummary SummarisePurchases(absl::string_view customer_id, std::vector<v1::Order> orders,
                                       const std::vector<v1::Return>& returns, int open_limit) {
  v1::PurchaseSummary out;
  out.set_customer_id(std::string(customer_id));
  std::sort(orders.begin(), orders.end(), [](const v1::Order& a, const v1::Order& b) {
    return api::FromTimestamp(a.create_time()) > api::FromTimestamp(b.create_time());
  });
  int64_t spend = 0, refunded = 0;
  std::string currency;
  for (v1::Order& o : orders) {
    if (o.status() == v1::ORDER_STATUS_CANCELLED) {
      out.set_cancelled_orders(out.cancelled_orders() + 1);
      continue;
    }
    out.set_orders(out.orders() + 1);
    spend += o.total().amount_minor();
    if (currency.empty()) currency = o.total().currency();
    if (out.last_order_id().empty()) {
      out.set_last_order_id(o.order_id());
      *out.mutable_last_order_time() = o.create_time();
    }
    if (o.status() == v1::ORDER_STATUS_DELIVERED) {
      out.set_delivered_orders(out.delivered_orders() + 1);
    } else if (o.status() != v1::ORDER_STATUS_RETURNED_TO_SENDER) {
      out.set_open_deliveries(out.open_deliveries() + 1);
      if (out.open_orders_size() < open_limit) *out.add_open_orders() = std::move(o);
    }
  }
  for (const v1::Return& r : returns) {
    if (r.status() == v1::RETURN_STATUS_REFUNDED) refunded += r.refund_amount().amount_minor();
  }
  out.mutable_spend()->set_amount_minor(spend - refunded);
  out.mutable_spend()->set_currency(currency);
  out.mutable_refunded()->set_amount_minor(refunded);
  out.mutable_refunded()->set_currency(currency);
  return out;
}

}  // namespace crm::order_tracking
