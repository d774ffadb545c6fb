#include "services/order_tracking/order_tracking_store.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/events/store_families.h"
#include "libs/log/log.h"
#include "libs/store/idempotency.h"
#include "libs/store/key.h"
#include "libs/store/protos.h"
#include "services/order_tracking/purchase_totals.h"

namespace crm::order_tracking {
namespace {

using store::Durability;
using store::Key;
using store::Transaction;

// The column families, by what they hold (the header's table), and their names on disk.
enum Family {
  kOrders,
  kOrderIndex,
  kHistory,
  kTracking,
  kCarrierEvents,
  kReturns,
  kReviews,
  kRequests,
  kImports,
  kPurchaseTotals
};
constexpr store::FamilyName<Family> kFamilies[] = {{kOrders, "orders"},
                                                   {kOrderIndex, "order_index"},
                                                   {kHistory, "history"},
                                                   {kTracking, "tracking_numbers"},
                                                   {kCarrierEvents, "carrier_events"},
                                                   {kReturns, "returns"},
                                                   {kReviews, "reviews"},
                                                   {kRequests, "requests"},
                                                   {kImports, "imports"},
                                                   {kPurchaseTotals, "purchase_totals"}};
static_assert(store::InEnumOrder(kFamilies));
// In purchase_totals: present once the orders written before the totals existed are counted.
constexpr char kTotalsCounted[] = "";

std::string OrderKey(absl::string_view customer_id, absl::string_view order_id) {
  return Key().Str(customer_id).Str(order_id).Build();
}

std::string RequestKey(absl::string_view customer_id, absl::string_view method,
                       absl::string_view request_id) {
  return Key().Str(customer_id).Str(method).Str(request_id).Build();
}

absl::Status OrderNotFound(absl::string_view order_id) {
  return absl::NotFoundError(
      absl::StrCat("order_id: no order \"", order_id, "\" for this customer"));
}

// Inside `txn`, rewrites each record under `prefix` that parses and that `edit` changed (returns
// true for); records that do not parse are left as they are.
template <typename M>
absl::Status RewriteEach(Transaction& txn, rocksdb::ColumnFamilyHandle* cf,
                         const std::string& prefix, absl::FunctionRef<bool(M&)> edit) {
  std::vector<std::pair<std::string, M>> rewritten;
  CRM_RETURN_IF_ERROR(txn.Scan(
      cf, prefix, store::PrefixUpperBound(prefix), [&](absl::string_view k, absl::string_view v) {
        M m;
        if (m.ParseFromArray(v.data(), static_cast<int>(v.size())) && edit(m)) {
          rewritten.emplace_back(std::string(k), std::move(m));
        }
        return true;
      }));
  for (auto& [k, m] : rewritten) {
    CRM_RETURN_IF_ERROR(txn.PutProto(cf, k, m));
  }
  return absl::OkStatus();
}

// Takes the person out of the customer's orders: the address beyond the city, couriers' phones and
// last positions.
absl::Status AnonymiseOrders(Transaction& txn, rocksdb::ColumnFamilyHandle* orders,
                             const std::string& prefix) {
  std::vector<std::pair<std::string, v1::Order>> found;
  CRM_RETURN_IF_ERROR(store::ScanPrefixProtos<v1::Order>(
      txn, orders, prefix, [&](absl::string_view k, v1::Order&& o) {
        found.emplace_back(std::string(k), std::move(o));
      }));
  for (auto& [key, o] : found) {
    // Keep where it went only as far as the city: enough for delivery statistics, not a person.
    v1::Address kept;
    kept.set_country_code(o.shipping_address().country_code());
    kept.set_province(o.shipping_address().province());
    kept.set_city(o.shipping_address().city());
    *o.mutable_shipping_address() = kept;
    for (auto& p : *o.mutable_packages()) {
      p.clear_last_location();
      p.clear_courier_phone();
    }
    CRM_RETURN_IF_ERROR(txn.PutProto(orders, key, o));
  }
  return absl::OkStatus();
}

// ImportHistory's entries in the order they happened: orders as their index (>= 0), returns as
// -1 - their index.
std::vector<std::pair<absl::Time, int>> ImportSteps(const v1::ImportOrdersRequest& req) {
  std::vector<std::pair<absl::Time, int>> steps;
  for (int i = 0; i < req.orders_size(); ++i)
    steps.emplace_back(api::FromTimestamp(req.orders(i).place_time()), i);
  for (int i = 0; i < req.returns_size(); ++i) {
    steps.emplace_back(api::FromTimestamp(req.returns(i).refund_time()), -1 - i);
  }
  std::stable_sort(steps.begin(), steps.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  return steps;
}

// An imported order's or return's external number -> its id here.
std::string ImportKey(absl::string_view customer_id, absl::string_view kind,
                      absl::string_view external_id) {
  return Key().Str(customer_id).Str(kind).Str(external_id).Build();
}

}  // namespace

std::vector<std::string> OrderTrackingStore::ColumnFamilies() {
  return events::WithConsumerAndOutboxFamilies(store::FamilyNames(kFamilies));
}

OrderTrackingStore::OrderTrackingStore(store::Store* store, events::Outbox* outbox)
    : store_(store), outbox_(outbox), cf_(*store, kFamilies) {}

absl::Status OrderTrackingStore::LockOrder(Transaction& txn, absl::string_view customer_id,
                                           absl::string_view order_id, v1::Order* order) {
  CRM_ASSIGN_OR_RETURN(auto found,
                       txn.GetProto(cf_[kOrders], OrderKey(customer_id, order_id), order,
                                    /*for_update=*/true));
  if (!found) return OrderNotFound(order_id);
  return absl::OkStatus();
}

absl::Status OrderTrackingStore::ChangeOrderOnce(
    absl::string_view customer_id, absl::string_view order_id, absl::string_view method,
    absl::string_view request_id, uint64_t fingerprint, absl::Time now,
    google::protobuf::MessageLite* response,
    absl::FunctionRef<absl::Status(Transaction&, v1::Order&)> change) {
  return store::TransactOnce(*store_, Durability::kSynced, cf_[kRequests],
                             RequestKey(customer_id, method, request_id), fingerprint, now,
                             response, [&](Transaction& txn) -> absl::Status {
                               v1::Order order;
                               CRM_RETURN_IF_ERROR(LockOrder(txn, customer_id, order_id, &order));
                               return change(txn, order);
                             });
}

absl::Status OrderTrackingStore::WriteChange(Transaction& txn, v1::Order& order,
                                             OrderChange& change, absl::Time now) {
  order.set_version(order.version() + 1);
  api::SetTimestamp(now, order.mutable_update_time());
  const std::string key = OrderKey(order.customer_id(), order.order_id());
  v1::Order before;
  CRM_ASSIGN_OR_RETURN(const bool existed,
                       txn.GetProto(cf_[kOrders], key, &before, /*for_update=*/true));
  CRM_RETURN_IF_ERROR(CountInTotals(txn, existed ? &before : nullptr, order));
  CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kOrders], key, order));
  for (size_t i = 0; i < change.history.size(); ++i) {
    v1::OrderHistoryEntry& h = change.history[i];
    if (!h.has_time()) api::SetTimestamp(now, h.mutable_time());
    h.set_status(order.status());
    const std::string key = Key()
                                .Str(order.customer_id())
                                .Str(order.order_id())
                                .Time(api::FromTimestamp(h.time()))
                                .U64(static_cast<uint64_t>(order.version()) * 1000 + i)
                                .Build();
    CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kHistory], key, h));
  }
  for (const auto& [number, package_id] : change.tracking_numbers) {
    CRM_ASSIGN_OR_RETURN(auto existing, txn.GetForUpdate(cf_[kTracking], number));
    const std::string ref =
        Key().Str(order.customer_id()).Str(order.order_id()).Str(package_id).Build();
    if (existing.has_value() && *existing != ref) {
      return absl::AlreadyExistsError(
          absl::StrCat("tracking_number: \"", number, "\" already belongs to another package"));
    }
    CRM_RETURN_IF_ERROR(txn.Put(cf_[kTracking], number, ref));
  }
  for (v1::Event& e : change.events) {
    e.set_customer_id(order.customer_id());
    if (!e.has_occur_time()) api::SetTimestamp(now, e.mutable_occur_time());
    CRM_RETURN_IF_ERROR(outbox_->Append(txn, e));
  }
  return absl::OkStatus();
}

absl::Status OrderTrackingStore::CountInTotals(Transaction& txn, const v1::Order* before,
                                               const v1::Order& after) {
  // Most changes (a package moving on) leave the totals as they are: no read, no write.
  if (!ChangesTotals(before, after)) return absl::OkStatus();
  const std::string key = Key().Str(after.customer_id()).Build();
  internal::PurchaseTotals totals;
  CRM_RETURN_IF_ERROR(
      txn.GetProto(cf_[kPurchaseTotals], key, &totals, /*for_update=*/true).status());
  if (!CountOrderChange(before, after, totals)) {
    CRM_ASSIGN_OR_RETURN(auto newest, NewestCountedOrder(after.customer_id(), after.order_id()));
    SetLastOrder(newest ? &*newest : nullptr, totals);
  }
  return txn.PutProto(cf_[kPurchaseTotals], key, totals);
}

absl::Status OrderTrackingStore::CountRefund(Transaction& txn, const v1::Return* before,
                                             const v1::Return& after) {
  const bool refunded_now = after.status() == v1::RETURN_STATUS_REFUNDED &&
                            (before == nullptr || before->status() != v1::RETURN_STATUS_REFUNDED);
  if (!refunded_now) return absl::OkStatus();
  const std::string key = Key().Str(after.customer_id()).Build();
  internal::PurchaseTotals totals;
  CRM_RETURN_IF_ERROR(
      txn.GetProto(cf_[kPurchaseTotals], key, &totals, /*for_update=*/true).status());
  totals.set_refunded_minor(totals.refunded_minor() + after.refund_amount().amount_minor());
  return txn.PutProto(cf_[kPurchaseTotals], key, totals);
}

absl::StatusOr<std::optional<v1::Order>> OrderTrackingStore::NewestCountedOrder(
    absl::string_view customer_id, absl::string_view except_order_id) const {
  std::optional<v1::Order> newest;
  CRM_RETURN_IF_ERROR(store::ScanPrefixProtos<v1::Order>(
      *store_, cf_[kOrders], Key().Str(customer_id).bytes(), [&](absl::string_view, v1::Order&& o) {
        if (o.status() == v1::ORDER_STATUS_CANCELLED || o.order_id() == except_order_id) return;
        if (!newest ||
            api::FromTimestamp(o.create_time()) > api::FromTimestamp(newest->create_time()))
          newest = std::move(o);
      }));
  return newest;
}

absl::StatusOr<v1::PurchaseSummary> OrderTrackingStore::PurchaseSummary(
    absl::string_view customer_id, int open_limit) const {
  internal::PurchaseTotals totals;
  CRM_RETURN_IF_ERROR(
      store_->GetProto(cf_[kPurchaseTotals], Key().Str(customer_id).bytes(), &totals).status());
  std::vector<std::string> keys;
  for (const internal::OpenOrder& open : totals.open_orders()) {
    if (static_cast<int>(keys.size()) == open_limit) break;
    keys.push_back(OrderKey(customer_id, open.order_id()));
  }
  CRM_ASSIGN_OR_RETURN(auto found, store_->MultiGetProtos<v1::Order>(cf_[kOrders], keys));
  std::vector<v1::Order> open_orders;
  for (auto& order : found) {
    if (order) open_orders.push_back(*std::move(order));
  }
  return SummaryOf(customer_id, totals, std::move(open_orders));
}

absl::Status OrderTrackingStore::CountPurchaseTotalsOnce() {
  CRM_ASSIGN_OR_RETURN(auto counted, store_->Get(cf_[kPurchaseTotals], kTotalsCounted));
  if (counted.has_value()) return absl::OkStatus();
  std::map<std::string, internal::PurchaseTotals> totals;  // by customer
  CRM_RETURN_IF_ERROR(store::ScanPrefixProtos<v1::Order>(
      *store_, cf_[kOrders], "", [&](absl::string_view, v1::Order&& o) {
        CountOrderChange(nullptr, o, totals[o.customer_id()]);
      }));
  CRM_RETURN_IF_ERROR(store::ScanPrefixProtos<v1::Return>(
      *store_, cf_[kReturns], "", [&](absl::string_view, v1::Return&& r) {
        if (r.status() != v1::RETURN_STATUS_REFUNDED) return;
        auto& t = totals[r.customer_id()];
        t.set_refunded_minor(t.refunded_minor() + r.refund_amount().amount_minor());
      }));
  rocksdb::WriteBatch batch;
  for (const auto& [customer_id, t] : totals) {
    batch.Put(cf_[kPurchaseTotals], Key().Str(customer_id).Build(), t.SerializeAsString());
  }
  batch.Put(cf_[kPurchaseTotals], kTotalsCounted, "counted");
  CRM_RETURN_IF_ERROR(store_->Write(&batch, Durability::kSynced));
  log::Info("purchase totals counted", {{"customers", static_cast<int64_t>(totals.size())}});
  return absl::OkStatus();
}

absl::Status OrderTrackingStore::IndexOrder(Transaction& txn, const v1::Order& order) {
  const std::string listed = Key()
                                 .Str(order.customer_id())
                                 .TimeNewestFirst(api::FromTimestamp(order.create_time()))
                                 .Str(order.order_id())
                                 .Build();
  return txn.Put(cf_[kOrderIndex], listed, "");
}

absl::Status OrderTrackingStore::CreateOrder(const v1::Order& order, const v1::Event& placed,
                                             absl::string_view request_id, uint64_t fingerprint,
                                             absl::Time now, v1::Order* out) {
  return store::TransactOnce(
      *store_, Durability::kSynced, cf_[kRequests],
      RequestKey(order.customer_id(), "CreateOrder", request_id), fingerprint, now, out,
      [&](Transaction& txn) -> absl::Status {
        // Order ids follow from request ids: one never replaces an order.
        CRM_ASSIGN_OR_RETURN(
            auto taken,
            txn.GetForUpdate(cf_[kOrders], OrderKey(order.customer_id(), order.order_id())));
        if (taken.has_value()) {
          return absl::AlreadyExistsError(
              absl::StrCat("request_id: order ", order.order_id(),
                           " was placed with this request id before; use a new one"));
        }
        *out = order;
        OrderChange change;
        v1::OrderHistoryEntry h;
        h.set_description("order placed");
        h.set_actor("customer");
        change.history.push_back(h);
        change.events.push_back(placed);
        CRM_RETURN_IF_ERROR(IndexOrder(txn, order));
        out->set_version(0);
        return WriteChange(txn, *out, change, now);
      });
}

absl::StatusOr<bool> OrderTrackingStore::FindCreatedOrder(absl::string_view customer_id,
                                                          absl::string_view request_id,
                                                          uint64_t fingerprint, v1::Order* out) {
  bool found = false;
  CRM_RETURN_IF_ERROR(
      store_->Transact(Durability::kBuffered, [&](Transaction& txn) -> absl::Status {
        CRM_ASSIGN_OR_RETURN(
            found, store::FindCompletedRequest(txn, cf_[kRequests],
                                               RequestKey(customer_id, "CreateOrder", request_id),
                                               fingerprint, out));
        return absl::OkStatus();
      }));
  return found;
}

absl::Status OrderTrackingStore::ImportHistory(
    const v1::ImportOrdersRequest& req, absl::Time now,
    absl::FunctionRef<void(int, v1::Order*, OrderChange*)> build_order,
    absl::FunctionRef<absl::Status(int, v1::Order&, v1::Return*, OrderChange*)> apply_return,
    v1::ImportOrdersResponse* out) {
  // In the order they happened, so that every consumer receives the history as it unfolded.
  const std::vector<std::pair<absl::Time, int>> steps = ImportSteps(req);
  return store_->Transact(Durability::kSynced, [&](Transaction& txn) -> absl::Status {
    out->Clear();
    std::vector<std::string> order_ids(req.orders_size());
    for (const auto& [when, index] : steps) {
      if (index >= 0) {
        CRM_RETURN_IF_ERROR(ImportOrder(txn, req, index, now, build_order, &order_ids[index], out));
      } else {
        CRM_RETURN_IF_ERROR(ImportReturn(txn, req, -1 - index, now, apply_return, out));
      }
    }
    for (int i = 0; i < req.orders_size(); ++i) {
      v1::ImportedOrderRef* ref = out->add_orders();
      ref->set_external_order_id(req.orders(i).external_order_id());
      ref->set_order_id(order_ids[i]);
    }
    return absl::OkStatus();
  });
}

absl::Status OrderTrackingStore::ImportOrder(
    Transaction& txn, const v1::ImportOrdersRequest& req, int index, absl::Time now,
    absl::FunctionRef<void(int, v1::Order*, OrderChange*)> build_order, std::string* order_id,
    v1::ImportOrdersResponse* out) {
  const std::string key =
      ImportKey(req.customer_id(), "order", req.orders(index).external_order_id());
  CRM_ASSIGN_OR_RETURN(auto known, txn.GetForUpdate(cf_[kImports], key));
  if (known.has_value()) {
    *order_id = *known;
    out->set_orders_already_imported(out->orders_already_imported() + 1);
    return absl::OkStatus();
  }
  v1::Order order;
  OrderChange change;
  build_order(index, &order, &change);
  *order_id = order.order_id();
  CRM_RETURN_IF_ERROR(txn.Put(cf_[kImports], key, order.order_id()));
  CRM_RETURN_IF_ERROR(IndexOrder(txn, order));
  CRM_RETURN_IF_ERROR(WriteChange(txn, order, change, now));
  out->set_orders_imported(out->orders_imported() + 1);
  return absl::OkStatus();
}

absl::Status OrderTrackingStore::ImportReturn(
    Transaction& txn, const v1::ImportOrdersRequest& req, int r, absl::Time now,
    absl::FunctionRef<absl::Status(int, v1::Order&, v1::Return*, OrderChange*)> apply_return,
    v1::ImportOrdersResponse* out) {
  const std::string& customer_id = req.customer_id();
  const v1::HistoricalReturn& recorded = req.returns(r);
  const std::string key = ImportKey(customer_id, "return", recorded.external_return_id());
  CRM_ASSIGN_OR_RETURN(auto known, txn.GetForUpdate(cf_[kImports], key));
  if (known.has_value()) {
    out->set_returns_already_imported(out->returns_already_imported() + 1);
    return absl::OkStatus();
  }
  CRM_ASSIGN_OR_RETURN(auto order_id,
                       txn.GetForUpdate(cf_[kImports], ImportKey(customer_id, "order",
                                                                 recorded.external_order_id())));
  if (!order_id.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "returns[", r, "].external_order_id: no order \"", recorded.external_order_id(),
        "\" was imported for this customer, or it is later"));
  }
  v1::Order order;
  CRM_RETURN_IF_ERROR(LockOrder(txn, customer_id, *order_id, &order));
  v1::Return ret;
  OrderChange change;
  CRM_RETURN_IF_ERROR(apply_return(r, order, &ret, &change));
  CRM_RETURN_IF_ERROR(txn.Put(cf_[kImports], key, ret.return_id()));
  CRM_RETURN_IF_ERROR(
      txn.PutProto(cf_[kReturns], Key().Str(customer_id).Str(ret.return_id()).Build(), ret));
  CRM_RETURN_IF_ERROR(CountRefund(txn, nullptr, ret));
  CRM_RETURN_IF_ERROR(WriteChange(txn, order, change, now));
  out->set_returns_imported(out->returns_imported() + 1);
  return absl::OkStatus();
}

absl::StatusOr<v1::Order> OrderTrackingStore::GetOrder(absl::string_view customer_id,
                                                       absl::string_view order_id) const {
  return store::GetProtoOr<v1::Order>(*store_, cf_[kOrders], OrderKey(customer_id, order_id),
                                      [&] { return OrderNotFound(order_id); });
}

absl::Status OrderTrackingStore::ListReviews(absl::string_view customer_id, absl::string_view after,
                                             int limit, std::vector<v1::Review>* out,
                                             std::string* last_key, bool* more) const {
  return store::ScanPage(*store_, cf_[kReviews], Key().Str(customer_id).Build(), after, limit, out,
                         last_key, more);
}

absl::Status OrderTrackingStore::ListOrders(absl::string_view customer_id, absl::string_view after,
                                            int limit, std::vector<v1::Order>* out,
                                            std::string* last_key, bool* more) const {
  *more = false;
  const std::string prefix = Key().Str(customer_id).Build();
  CRM_ASSIGN_OR_RETURN(auto begin, store::ResumeAfter(prefix, after));
  std::vector<std::pair<std::string, std::string>> keys;  // index key, order id
  absl::Status s = store_->Scan(cf_[kOrderIndex], begin, store::PrefixUpperBound(prefix),
                                [&](absl::string_view k, absl::string_view) {
                                  if (static_cast<int>(keys.size()) == limit) {
                                    *more = true;
                                    return false;
                                  }
                                  store::KeyReader r(k);
                                  (void)r.Str();
                                  (void)r.Descending();
                                  auto order_id = r.Str();
                                  if (order_id) keys.emplace_back(std::string(k), *order_id);
                                  return true;
                                });
  if (!s.ok()) return s;
  for (const auto& [k, id] : keys) {
    auto o = GetOrder(customer_id, id);
    if (!o.ok()) return o.status();
    out->push_back(std::move(*o));
    *last_key = k;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::OrderHistoryEntry>> OrderTrackingStore::History(
    absl::string_view customer_id, absl::string_view order_id) const {
  CRM_RETURN_IF_ERROR(GetOrder(customer_id, order_id));
  return store::ProtosUnder<v1::OrderHistoryEntry>(*store_, cf_[kHistory],
                                                   OrderKey(customer_id, order_id));
}

absl::Status OrderTrackingStore::UpdateOrder(
    absl::string_view customer_id, absl::string_view order_id, absl::Time now,
    absl::FunctionRef<absl::Status(v1::Order&, OrderChange&)> change, v1::Order* out,
    OrderChange* applied) {
  return store_->Transact(Durability::kSynced, [&](Transaction& txn) -> absl::Status {
    v1::Order order;
    CRM_RETURN_IF_ERROR(LockOrder(txn, customer_id, order_id, &order));
    OrderChange c;
    CRM_RETURN_IF_ERROR(change(order, c));
    if (!c.unchanged) {
      CRM_RETURN_IF_ERROR(WriteChange(txn, order, c, now));
    }
    *out = order;
    if (applied != nullptr) *applied = std::move(c);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::optional<OrderTrackingStore::PackageRef>>
OrderTrackingStore::FindTrackingNumber(absl::string_view tracking_number) const {
  CRM_ASSIGN_OR_RETURN(auto v, store_->Get(cf_[kTracking], tracking_number));
  if (!v.has_value()) return std::optional<PackageRef>();
  store::KeyReader r(*v);
  auto c = r.Str(), o = r.Str(), p = r.Str();
  if (!c || !o || !p) return absl::DataLossError("tracking number record is malformed");
  return std::optional<PackageRef>(PackageRef{*c, *o, *p});
}

absl::Status OrderTrackingStore::ApplyCarrierEvent(
    const PackageRef& ref, absl::string_view carrier_event_id, absl::string_view tracking_number,
    absl::Time now, absl::FunctionRef<absl::Status(v1::Order&, OrderChange&)> change,
    bool* duplicate, v1::Order* out, OrderChange* applied) {
  // Buffered: the batch call syncs the WAL once before answering the carrier.
  return store_->Transact(Durability::kBuffered, [&](Transaction& txn) -> absl::Status {
    v1::Order order;
    CRM_RETURN_IF_ERROR(LockOrder(txn, ref.customer_id, ref.order_id, &order));
    CRM_ASSIGN_OR_RETURN(auto seen, txn.GetForUpdate(cf_[kCarrierEvents], carrier_event_id));
    *duplicate = seen.has_value();
    *out = order;
    if (*duplicate) return absl::OkStatus();
    OrderChange c;
    CRM_RETURN_IF_ERROR(change(order, c));
    CRM_RETURN_IF_ERROR(txn.Put(cf_[kCarrierEvents], carrier_event_id, tracking_number));
    if (!c.unchanged) {
      CRM_RETURN_IF_ERROR(WriteChange(txn, order, c, now));
    }
    *out = order;
    *applied = std::move(c);
    return absl::OkStatus();
  });
}

absl::Status OrderTrackingStore::CreateReturn(
    absl::string_view customer_id, absl::string_view order_id, absl::string_view request_id,
    uint64_t fingerprint, absl::Time now,
    absl::FunctionRef<absl::Status(v1::Order&, v1::Return&, OrderChange&)> create, v1::Return* out,
    v1::Order* order_out) {
  return ChangeOrderOnce(
      customer_id, order_id, "RequestReturn", request_id, fingerprint, now, out,
      [&](Transaction& txn, v1::Order& order) -> absl::Status {
        OrderChange c;
        CRM_RETURN_IF_ERROR(create(order, *out, c));
        CRM_RETURN_IF_ERROR(txn.PutProto(
            cf_[kReturns], Key().Str(customer_id).Str(out->return_id()).bytes(), *out));
        CRM_RETURN_IF_ERROR(CountRefund(txn, nullptr, *out));
        CRM_RETURN_IF_ERROR(WriteChange(txn, order, c, now));
        *order_out = order;
        return absl::OkStatus();
      });
}

absl::Status OrderTrackingStore::UpdateReturn(
    absl::string_view customer_id, absl::string_view return_id, absl::Time now,
    absl::FunctionRef<absl::Status(v1::Order&, v1::Return&, OrderChange&)> change, v1::Return* out,
    v1::Order* order_out) {
  return store_->Transact(Durability::kSynced, [&](Transaction& txn) -> absl::Status {
    const std::string key = Key().Str(customer_id).Str(return_id).Build();
    v1::Return ret;
    CRM_ASSIGN_OR_RETURN(auto found, txn.GetProto(cf_[kReturns], key, &ret, /*for_update=*/true));
    if (!found)
      return absl::NotFoundError(
          absl::StrCat("return_id: no return \"", return_id, "\" for this customer"));
    v1::Order order;
    CRM_RETURN_IF_ERROR(LockOrder(txn, customer_id, ret.order_id(), &order));
    const v1::Return before = ret;
    OrderChange c;
    CRM_RETURN_IF_ERROR(change(order, ret, c));
    if (!c.unchanged) {
      api::SetTimestamp(now, ret.mutable_update_time());
      CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kReturns], key, ret));
      CRM_RETURN_IF_ERROR(CountRefund(txn, &before, ret));
      CRM_RETURN_IF_ERROR(WriteChange(txn, order, c, now));
    }
    *out = ret;
    *order_out = order;
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<v1::Return>> OrderTrackingStore::ListReturns(
    absl::string_view customer_id, absl::string_view order_id) const {
  std::vector<v1::Return> out;
  CRM_RETURN_IF_ERROR(
      store::ScanPrefixProtos<v1::Return>(*store_, cf_[kReturns], Key().Str(customer_id).bytes(),
                                          [&](absl::string_view, v1::Return&& r) {
                                            if (order_id.empty() || r.order_id() == order_id)
                                              out.push_back(std::move(r));
                                          }));
  return out;
}

absl::Status OrderTrackingStore::CreateReview(
    absl::string_view customer_id, absl::string_view order_id, absl::string_view item_id,
    absl::string_view request_id, uint64_t fingerprint, absl::Time now,
    absl::FunctionRef<absl::Status(v1::Order&, v1::Review&, OrderChange&)> create,
    v1::Review* out) {
  return ChangeOrderOnce(
      customer_id, order_id, "SubmitReview", request_id, fingerprint, now, out,
      [&](Transaction& txn, v1::Order& order) -> absl::Status {
        const std::string key = Key().Str(customer_id).Str(order_id).Str(item_id).Build();
        CRM_ASSIGN_OR_RETURN(auto existing, txn.GetForUpdate(cf_[kReviews], key));
        if (existing.has_value()) {
          return absl::AlreadyExistsError(
              absl::StrCat("item_id: item \"", item_id, "\" of this order is already reviewed"));
        }
        OrderChange c;
        CRM_RETURN_IF_ERROR(create(order, *out, c));
        CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kReviews], key, *out));
        return WriteChange(txn, order, c, now);
      });
}

absl::Status OrderTrackingStore::AnonymiseCustomer(Transaction& txn,
                                                   absl::string_view customer_id) {
  const std::string prefix = Key().Str(customer_id).Build();
  CRM_RETURN_IF_ERROR(AnonymiseOrders(txn, cf_[kOrders], prefix));
  // History entries may carry courier positions at the door; notes may quote the customer.
  CRM_RETURN_IF_ERROR(RewriteEach<v1::OrderHistoryEntry>(txn, cf_[kHistory], prefix, [](auto& h) {
    if (!h.has_location()) return false;
    h.clear_location();
    return true;
  }));
  CRM_RETURN_IF_ERROR(RewriteEach<v1::Review>(txn, cf_[kReviews], prefix, [](auto& r) {
    r.clear_text();
    return true;
  }));
  CRM_RETURN_IF_ERROR(RewriteEach<v1::Return>(txn, cf_[kReturns], prefix, [](auto& r) {
    r.clear_reason();
    return true;
  }));
  // Answers of retryable writes may hold addresses.
  return txn.DeletePrefix(cf_[kRequests], prefix);
}

}  // namespace crm::order_tracking
