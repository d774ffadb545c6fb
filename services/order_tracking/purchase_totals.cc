#include "services/order_tracking/purchase_totals.h"

#include <algorithm>

#include "libs/api/validate.h"

namespace crm::order_tracking {
namespace {

bool Cancelled(const v1::Order& o) { return o.status() == v1::ORDER_STATUS_CANCELLED; }

// A delivery under way: not delivered, cancelled or returned to sender.
bool Open(const v1::Order& o) {
  return !Cancelled(o) && o.status() != v1::ORDER_STATUS_DELIVERED &&
         o.status() != v1::ORDER_STATUS_RETURNED_TO_SENDER;
}

// Adds (sign 1) or takes back (sign -1) what `o` counts for.
void Count(const v1::Order& o, int sign, internal::PurchaseTotals& t) {
  if (Cancelled(o)) {
    t.set_cancelled_orders(t.cancelled_orders() + sign);
    return;
  }
  t.set_orders(t.orders() + sign);
  t.set_spend_minor(t.spend_minor() + sign * o.total().amount_minor());
  if (o.status() == v1::ORDER_STATUS_DELIVERED) t.set_delivered_orders(t.delivered_orders() + sign);
}

// Lists `o` among the open orders, newest first, when it is open; unlists it otherwise.
void ListIfOpen(const v1::Order& o, internal::PurchaseTotals& t) {
  auto* open = t.mutable_open_orders();
  open->erase(
      std::remove_if(open->begin(), open->end(),
                     [&](const internal::OpenOrder& e) { return e.order_id() == o.order_id(); }),
      open->end());
  if (!Open(o)) return;
  const absl::Time created = api::FromTimestamp(o.create_time());
  int at = 0;
  while (at < open->size() && api::FromTimestamp(open->Get(at).create_time()) >= created) ++at;
  internal::OpenOrder entry;
  entry.set_order_id(o.order_id());
  *entry.mutable_create_time() = o.create_time();
  open->Add(std::move(entry));
  for (int i = open->size() - 1; i > at; --i) open->SwapElements(i, i - 1);
}

}  // namespace

bool ChangesTotals(const v1::Order* before, const v1::Order& after) {
  return before == nullptr || before->status() != after.status() ||
         before->total().amount_minor() != after.total().amount_minor() ||
         before->total().currency() != after.total().currency() ||
         api::FromTimestamp(before->create_time()) != api::FromTimestamp(after.create_time());
}

bool CountOrderChange(const v1::Order* before, const v1::Order& after,
                      internal::PurchaseTotals& totals) {
  if (before != nullptr) Count(*before, -1, totals);
  Count(after, 1, totals);
  ListIfOpen(after, totals);
  if (Cancelled(after)) return after.order_id() != totals.last_order_id();
  if (totals.last_order_id().empty() || after.order_id() == totals.last_order_id() ||
      api::FromTimestamp(after.create_time()) > api::FromTimestamp(totals.last_order_time())) {
    SetLastOrder(&after, totals);
  }
  return true;
}

void SetLastOrder(const v1::Order* newest, internal::PurchaseTotals& totals) {
  if (newest == nullptr) {
    totals.clear_last_order_id();
    totals.clear_last_order_time();
    totals.clear_currency();
    return;
  }
  totals.set_last_order_id(newest->order_id());
  *totals.mutable_last_order_time() = newest->create_time();
  totals.set_currency(newest->total().currency());
}

v1::PurchaseSummary SummaryOf(absl::string_view customer_id, const internal::PurchaseTotals& totals,
                              std::vector<v1::Order> open_orders) {
  v1::PurchaseSummary out;
  out.set_customer_id(std::string(customer_id));
  out.set_orders(totals.orders());
  out.set_cancelled_orders(totals.cancelled_orders());
  if (!totals.last_order_id().empty()) {
    out.set_last_order_id(totals.last_order_id());
    *out.mutable_last_order_time() = totals.last_order_time();
  }
  out.set_delivered_orders(totals.delivered_orders());
  out.set_open_deliveries(totals.open_orders_size());
  for (v1::Order& o : open_orders) *out.add_open_orders() = std::move(o);
  out.mutable_spend()->set_amount_minor(totals.spend_minor() - totals.refunded_minor());
  out.mutable_spend()->set_currency(totals.currency());
  out.mutable_refunded()->set_amount_minor(totals.refunded_minor());
  out.mutable_refunded()->set_currency(totals.currency());
  return out;
}

}  // namespace crm::order_tracking
