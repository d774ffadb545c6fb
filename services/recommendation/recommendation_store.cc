#include "services/recommendation/recommendation_store.h"

#include <algorithm>
#include <iterator>
#include <optional>
#include <set>
#include <thread>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/behavior/interest.h"
#include "libs/events/store_families.h"
#include "libs/log/log.h"
#include "libs/sharding/hash.h"
#include "libs/store/counters.h"
#include "libs/store/key.h"
#include "libs/store/protos.h"
#include "libs/store/status.h"
#include "services/recommendation/customer_summary.h"
#include "services/recommendation/models.h"

namespace crm::recommendation {
namespace {

using store::Key;
using store::Transaction;

// A record that may be absent: nothing when the key is not there.
template <typename T>
absl::StatusOr<std::optional<T>> FindProto(store::Store& s, rocksdb::ColumnFamilyHandle* cf,
                                           absl::string_view key) {
  T value;
  CRM_ASSIGN_OR_RETURN(auto found, s.GetProto(cf, key, &value));
  if (!found) return std::nullopt;
  return value;
}

// The column families, by what they hold (the header's table), and their names on disk.
enum Family {
  kItems,
  kSuccessors,
  kItemStats,
  kCoCounts,
  kNeighbours,
  kSales,
  kGlobalStats,
  kCustomers,
  kCustomerItems,
  kBaskets,
  kFirstViews,
  kFirstPurchases,
  kAffinity,
  kShown,
  kRequests,
  kReminders,
  kBuyers
};
constexpr store::FamilyName<Family> kFamilies[] = {{kItems, "items"},
                                                   {kSuccessors, "successors"},
                                                   {kItemStats, "item_stats"},
                                                   {kCoCounts, "co_counts"},
                                                   {kNeighbours, "neighbours"},
                                                   {kSales, "sales"},
                                                   {kGlobalStats, "global_stats"},
                                                   {kCustomers, "customers"},
                                                   {kCustomerItems, "customer_items"},
                                                   {kBaskets, "baskets"},
                                                   {kFirstViews, "first_views"},
                                                   {kFirstPurchases, "first_purchases"},
                                                   {kAffinity, "affinity"},
                                                   {kShown, "shown"},
                                                   {kRequests, "requests"},
                                                   {kReminders, "reminders"},
                                                   {kBuyers, "buyers"}};
static_assert(store::InEnumOrder(kFamilies));

// Deliveries add to one of these, chosen by customer, so parallel deliveries rarely wait on each
// other.
constexpr int kBasketStripes = 16;

int64_t DayOf(absl::Time t) { return absl::ToUnixSeconds(t) / 86400; }

std::string PairKey(absl::string_view a, absl::string_view b) {
  return a < b ? Key().Str(a).Str(b).Build() : Key().Str(b).Str(a).Build();
}

int StripeOf(absl::string_view customer_id) {
  return static_cast<int>(sharding::StableHash64(customer_id) % kBasketStripes);
}

std::string BuyerKey(absl::string_view sku, absl::Time last_bought, absl::string_view customer_id) {
  return Key().Str(sku).TimeNewestFirst(last_bought).Str(customer_id).Build();
}

// The buyers family's row saying it holds every buyer (written with the last rows by
// IndexBuyersOnce). No SKU is empty, so no buyer's key is this.
constexpr char kBuyersIndexed[] = "";

// The keys of rows keyed by one string each: items (by sku) or customers (by id).
std::vector<std::string> OneStringKeys(const std::vector<std::string>& ids) {
  std::vector<std::string> keys;
  keys.reserve(ids.size());
  for (const auto& id : ids) keys.push_back(Key().Str(id).Build());
  return keys;
}

std::vector<std::string> CustomerItemKeys(absl::string_view customer_id,
                                          const std::vector<std::string>& skus) {
  std::vector<std::string> keys;
  keys.reserve(skus.size());
  for (const auto& sku : skus) keys.push_back(Key().Str(customer_id).Str(sku).Build());
  return keys;
}

// Absent rows read as empty messages (zero counts).
template <typename M>
absl::StatusOr<std::vector<M>> OrEmpty(absl::StatusOr<std::vector<std::optional<M>>> found) {
  if (!found.ok()) return found.status();
  std::vector<M> out(found->size());
  for (size_t i = 0; i < out.size(); ++i) {
    if ((*found)[i].has_value()) out[i] = std::move(*(*found)[i]);
  }
  return out;
}

}  // namespace

// Signed changes to the rows every customer shares, gathered first and applied in key order.
struct RecommendationStore::GraphDelta {
  struct Sales {
    int64_t units = 0;
    int64_t orders = 0;
  };
  // Counts a sale in its category's ranking and in the overall one ("").
  void AddSale(const std::string& category, int64_t day, const std::string& sku, int64_t units,
               int64_t orders) {
    auto add = [&](const std::string& ranking) {
      Sales& s = sales[{ranking, day, sku}];
      s.units += units;
      s.orders += orders;
    };
    if (!category.empty()) add(category);
    add("");
  }
  std::map<std::string, internal::ItemStats> stats;
  // Keyed by PairKey; the pair itself kept for the neighbour lists.
  std::map<std::string, std::pair<std::pair<std::string, std::string>, internal::CoCounts>> pairs;
  std::map<std::tuple<std::string, int64_t, std::string>, Sales> sales;
  std::map<int, int64_t> baskets;

  void AddPair(const std::string& a, const std::string& b, const internal::CoCounts& d) {
    if (a == b) return;
    auto& [pair, co] = pairs[PairKey(a, b)];
    pair = a < b ? std::make_pair(a, b) : std::make_pair(b, a);
    co.set_purchases(co.purchases() + d.purchases());
    co.set_views(co.views() + d.views());
    co.set_buyers(co.buyers() + d.buyers());
  }
};

std::vector<std::string> RecommendationStore::ColumnFamilies() {
  return events::WithConsumerAndOutboxFamilies(store::FamilyNames(kFamilies));
}

std::map<std::string, std::shared_ptr<rocksdb::MergeOperator>>
RecommendationStore::MergeOperators() {
  const auto name = [](Family f) { return std::string(kFamilies[f].name); };
  return {{name(kItemStats), store::CounterSum(internal::ItemStats::default_instance())},
          {name(kCoCounts), store::CounterSum(internal::CoCounts::default_instance())},
          {name(kSales), store::CounterSum(internal::Sold::default_instance())},
          {name(kGlobalStats), store::CounterSum(internal::GlobalStats::default_instance())}};
}

RecommendationStore::RecommendationStore(store::Store* store, events::Outbox* outbox)
    : store_(store), outbox_(outbox), cf_(*store, kFamilies) {}

rocksdb::ColumnFamilyHandle* RecommendationStore::requests() const { return cf_[kRequests]; }

std::string RecommendationStore::RequestKey(absl::string_view customer_id, absl::string_view method,
                                            absl::string_view request_id) {
  return Key().Str(customer_id).Str(method).Str(request_id).Build();
}

// ---- catalog ----

std::shared_ptr<const v1::CatalogItem> RecommendationStore::Cache(const v1::CatalogItem& item,
                                                                  bool written) const {
  absl::MutexLock lock(&items_mu_);
  if (item_cache_bytes_ >= kCachedItemBytes) {
    item_cache_.clear();
    item_cache_bytes_ = 0;
  }
  auto cached = std::make_shared<const v1::CatalogItem>(item);
  // The message, its key and the map slot; a replaced entry is counted again, which only drops the
  // cache a little early.
  item_cache_bytes_ += cached->SpaceUsedLong() + 2 * item.sku().size() + 64;
  // A reader caches what it read only if no writer got there first: a write committed after that
  // read must win.
  if (written) {
    // Two writers of one item cache in the order they stamped it.
    auto& slot = item_cache_[item.sku()];
    if (slot == nullptr ||
        api::FromTimestamp(slot->update_time()) <= api::FromTimestamp(item.update_time())) {
      slot = cached;
    }
  } else {
    item_cache_.try_emplace(item.sku(), cached);
  }
  return cached;
}

absl::Status RecommendationStore::UpsertItems(const std::vector<v1::CatalogItem>& items,
                                              absl::Time now) {
  std::vector<v1::CatalogItem> written;
  absl::Status s =
      store_->Transact(store::Durability::kSynced, [&](Transaction& txn) -> absl::Status {
        written.clear();
        for (v1::CatalogItem item : items) {
          const std::string key = Key().Str(item.sku()).Build();
          v1::CatalogItem existing;
          CRM_ASSIGN_OR_RETURN(auto found,
                               txn.GetProto(cf_[kItems], key, &existing, /*for_update=*/true));
          if (!item.has_in_stock()) item.set_in_stock(found ? existing.in_stock() : true);
          api::SetTimestamp(now, item.mutable_update_time());
          if (found && !existing.successor_of().empty() &&
              existing.successor_of() != item.successor_of()) {
            if (auto s = txn.Delete(cf_[kSuccessors],
                                    Key().Str(existing.successor_of()).Str(item.sku()));
                !s.ok())
              return s;
          }
          if (!item.successor_of().empty()) {
            CRM_RETURN_IF_ERROR(
                txn.Put(cf_[kSuccessors], Key().Str(item.successor_of()).Str(item.sku()), ""));
          }
          CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kItems], key, item));
          written.push_back(std::move(item));
        }
        return absl::OkStatus();
      });
  if (s.ok()) {
    for (const auto& item : written) {
      Cache(item, /*written=*/true);
      if (names_loaded_)
        names_.Put(item.sku(), item.name(), api::FromTimestamp(item.update_time()));
    }
  }
  return s;
}

absl::Status RecommendationStore::LoadNameIndex() {
  names_loaded_ = true;
  CRM_RETURN_IF_ERROR(store::ScanPrefixProtos<v1::CatalogItem>(
      *store_, cf_[kItems], "", [&](absl::string_view, v1::CatalogItem&& item) {
        names_.Put(item.sku(), item.name(), api::FromTimestamp(item.update_time()));
      }));
  log::Info("catalog names indexed", {{"items", static_cast<int64_t>(names_.size())}});
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const v1::CatalogItem>> RecommendationStore::Item(
    absl::string_view sku) const {
  {
    absl::ReaderMutexLock lock(&items_mu_);
    if (auto it = item_cache_.find(sku); it != item_cache_.end()) return it->second;
  }
  CRM_ASSIGN_OR_RETURN(auto item, FindProto<v1::CatalogItem>(*store_, cf_[kItems], Key().Str(sku)));
  if (!item.has_value()) return nullptr;
  return Cache(*item, /*written=*/false);
}

absl::StatusOr<std::vector<std::string>> RecommendationStore::SetStock(
    const std::vector<v1::StockChange>& changes, absl::Time now) {
  std::vector<std::string> unknown;
  std::vector<v1::CatalogItem> written;
  absl::Status s =
      store_->Transact(store::Durability::kSynced, [&](Transaction& txn) -> absl::Status {
        unknown.clear();
        written.clear();
        for (const auto& change : changes) {
          const std::string key = Key().Str(change.sku()).Build();
          v1::CatalogItem item;
          CRM_ASSIGN_OR_RETURN(auto found,
                               txn.GetProto(cf_[kItems], key, &item, /*for_update=*/true));
          if (!found) {
            unknown.push_back(change.sku());
            continue;
          }
          item.set_in_stock(change.in_stock());
          api::SetTimestamp(now, item.mutable_update_time());
          CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kItems], key, item));
          written.push_back(std::move(item));
        }
        return absl::OkStatus();
      });
  if (!s.ok()) return s;
  for (const auto& item : written) Cache(item, /*written=*/true);
  return unknown;
}

absl::StatusOr<std::vector<std::string>> RecommendationStore::Successors(
    absl::string_view sku) const {
  std::vector<std::string> out;
  absl::Status s = store_->ScanPrefix(cf_[kSuccessors], Key().Str(sku),
                                      [&](absl::string_view k, absl::string_view) {
                                        store::KeyReader r(k);
                                        r.Str();
                                        if (auto successor = r.Str()) out.push_back(*successor);
                                        return true;
                                      });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<std::vector<std::string>> RecommendationStore::ItemsWithSuccessors() const {
  std::vector<std::string> out;
  absl::Status s =
      store_->Scan(cf_[kSuccessors], "", "", [&](absl::string_view k, absl::string_view) {
        store::KeyReader r(k);
        if (auto predecessor = r.Str();
            predecessor && (out.empty() || out.back() != *predecessor)) {
          out.push_back(*predecessor);
        }
        return true;
      });
  if (!s.ok()) return s;
  return out;
}

// ---- learning ----

void RecommendationStore::BasketDelta(const internal::Basket& basket, int sign,
                                      GraphDelta& delta) const {
  std::map<std::string, int64_t> returned;
  for (const auto& r : basket.returned()) returned[r.sku()] += r.quantity();
  const int64_t day = DayOf(api::FromTimestamp(basket.delivered_time()));
  for (const auto& line : basket.lines()) {
    internal::ItemStats& s = delta.stats[line.sku()];
    s.set_baskets(s.baskets() + sign);
    s.set_units(s.units() + sign * line.quantity());
    s.set_returned_units(s.returned_units() + sign * returned[line.sku()]);
    const int64_t kept = std::max<int64_t>(0, line.quantity() - returned[line.sku()]);
    delta.AddSale(line.category(), day, line.sku(), sign * kept, kept > 0 ? sign : 0);
  }
  const std::vector<std::string> paired = ItemsToPair(basket);
  internal::CoCounts together;
  together.set_purchases(sign);
  for (size_t i = 0; i < paired.size(); ++i) {
    for (size_t j = i + 1; j < paired.size(); ++j) delta.AddPair(paired[i], paired[j], together);
  }
}

absl::Status RecommendationStore::TouchPairs(Transaction& txn, Touch kind,
                                             absl::string_view customer_id, int64_t sequence,
                                             const internal::FirstTouch& touch, int sign,
                                             GraphDelta& delta) const {
  const absl::Time t = api::FromTimestamp(touch.time());
  const bool view = kind == Touch::kView;
  const int64_t from =
      std::max<int64_t>(0, sequence - (view ? kMaxViewsPaired : kMaxPurchasesPaired));
  internal::CoCounts d;
  (view ? d.set_views(sign) : d.set_buyers(sign));
  return store::ScanProtos<internal::FirstTouch>(
      txn, view ? cf_[kFirstViews] : cf_[kFirstPurchases], Key().Str(customer_id).I64(from),
      Key().Str(customer_id).I64(sequence), [&](absl::string_view, internal::FirstTouch&& earlier) {
        // Views pair only when close in time; purchases at any distance.
        if (!view || absl::AbsDuration(t - api::FromTimestamp(earlier.time())) <= kCoViewWindow) {
          delta.AddPair(touch.sku(), earlier.sku(), d);
        }
      });
}

absl::Status RecommendationStore::FirstTouch(Transaction& txn, Touch kind,
                                             absl::string_view customer_id, int64_t sequence,
                                             absl::string_view sku, absl::Time when, bool unpaired,
                                             GraphDelta& delta) {
  internal::FirstTouch touch;
  touch.set_sku(std::string(sku));
  api::SetTimestamp(when, touch.mutable_time());
  touch.set_unpaired(unpaired);
  internal::ItemStats& d = delta.stats[touch.sku()];
  (kind == Touch::kView ? d.set_viewers(d.viewers() + 1) : d.set_buyers(d.buyers() + 1));
  if (!unpaired) {
    CRM_RETURN_IF_ERROR(TouchPairs(txn, kind, customer_id, sequence, touch, +1, delta));
  }
  return txn.PutProto(kind == Touch::kView ? cf_[kFirstViews] : cf_[kFirstPurchases],
                      Key().Str(customer_id).I64(sequence), touch);
}

absl::Status RecommendationStore::UndoTouches(Transaction& txn, Touch kind,
                                              absl::string_view customer_id,
                                              GraphDelta& delta) const {
  const std::string prefix = Key().Str(customer_id).Build();
  std::vector<std::pair<int64_t, internal::FirstTouch>> touches;
  absl::Status s = store::ScanPrefixProtos<internal::FirstTouch>(
      txn, kind == Touch::kView ? cf_[kFirstViews] : cf_[kFirstPurchases], prefix,
      [&](absl::string_view key, internal::FirstTouch&& touch) {
        store::KeyReader r(key);
        r.Str();
        touches.emplace_back(r.I64().value_or(0), std::move(touch));
      });
  if (!s.ok()) return s;
  for (const auto& [sequence, touch] : touches) {
    internal::ItemStats& d = delta.stats[touch.sku()];
    (kind == Touch::kView ? d.set_viewers(d.viewers() - 1) : d.set_buyers(d.buyers() - 1));
    if (touch.unpaired()) continue;
    CRM_RETURN_IF_ERROR(TouchPairs(txn, kind, customer_id, sequence, touch, -1, delta));
  }
  return absl::OkStatus();
}

absl::Status RecommendationStore::Apply(Transaction& txn, const GraphDelta& delta) {
  // Shared item rows are counters: each delta is added without reading or locking the row, so
  // deliveries learned on several threads never wait for one another on a popular item (reading
  // and locking hundreds of pair rows per basket was most of what learning cost).
  auto stats_changed = std::make_shared<std::vector<std::string>>();
  for (const auto& [sku, d] : delta.stats) {
    CRM_RETURN_IF_ERROR(txn.AddCounters(cf_[kItemStats], Key().Str(sku).Build(), d));
    stats_changed->push_back(sku);
  }
  CRM_RETURN_IF_ERROR(ApplyPairCounts(txn, delta));
  for (const auto& [k, d] : delta.sales) {
    if (d.units == 0 && d.orders == 0) continue;
    const auto& [category, day, sku] = k;
    internal::Sold sold;
    sold.set_units(d.units);
    sold.set_orders(d.orders);
    CRM_RETURN_IF_ERROR(
        txn.AddCounters(cf_[kSales], Key().Str(category).I64(day).Str(sku).Build(), sold));
  }
  bool baskets_changed = false;
  for (const auto& [stripe, d] : delta.baskets) {
    if (d == 0) continue;
    baskets_changed = true;
    internal::GlobalStats g;
    g.set_baskets(d);
    CRM_RETURN_IF_ERROR(
        txn.AddCounters(cf_[kGlobalStats], Key().U64(static_cast<uint64_t>(stripe)).Build(), g));
  }
  if (!stats_changed->empty() || baskets_changed) {
    txn.OnFinish([this, stats_changed, baskets_changed](bool committed) {
      if (committed) ForgetStats(*stats_changed, baskets_changed);
    });
  }
  return absl::OkStatus();
}

absl::Status RecommendationStore::ApplyPairCounts(Transaction& txn, const GraphDelta& delta) {
  auto changed = std::make_shared<std::vector<std::pair<std::string, std::string>>>();
  changed->reserve(delta.pairs.size());
  for (const auto& [key, entry] : delta.pairs) {
    const auto& [pair, d] = entry;
    CRM_RETURN_IF_ERROR(txn.AddCounters(cf_[kCoCounts], key, d));
    changed->push_back(pair);
  }
  // Once committed, each changed pair is noted for both items' neighbour lists.
  if (!changed->empty()) {
    txn.OnFinish([this, changed](bool committed) {
      if (!committed) return;
      absl::MutexLock lock(&changed_mu_);
      for (const auto& [a, b] : *changed) {
        changed_pairs_[a].insert(b);
        changed_pairs_[b].insert(a);
      }
    });
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::flat_hash_map<std::string, internal::CoCounts>>
RecommendationStore::ReadPairCounts(
    const absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>>& changed) const {
  std::vector<std::string> keys;
  for (const auto& [item, partners] : changed) {
    for (const auto& partner : partners) {
      if (item < partner) keys.push_back(PairKey(item, partner));
    }
  }
  std::sort(keys.begin(), keys.end());
  // Reading merged counts is most of a large refresh (a backlog's batch), and the delivery that
  // asked for it waits while the consumer's threads are idle: from kSplitAt keys on, the upper half
  // (in key order, so each half reads its own blocks) is read on another thread. A live batch's few
  // pairs are read inline.
  constexpr size_t kSplitAt = 1024;
  const size_t split = keys.size() >= kSplitAt ? keys.size() / 2 : keys.size();
  const std::vector<std::string> high(std::make_move_iterator(keys.begin() + split),
                                      std::make_move_iterator(keys.end()));
  keys.resize(split);
  absl::StatusOr<std::vector<std::optional<internal::CoCounts>>> high_counts;
  std::optional<std::thread> reader;
  if (!high.empty()) {
    reader.emplace(
        [&] { high_counts = store_->MultiGetProtos<internal::CoCounts>(cf_[kCoCounts], high); });
  }
  auto low_counts = store_->MultiGetProtos<internal::CoCounts>(cf_[kCoCounts], keys);
  if (reader) reader->join();
  if (!low_counts.ok()) return low_counts.status();
  absl::flat_hash_map<std::string, internal::CoCounts> pair_counts;
  pair_counts.reserve(keys.size() + high.size());
  auto fold = [&](const std::vector<std::string>& part,
                  std::vector<std::optional<internal::CoCounts>>& counts) {
    for (size_t k = 0; k < part.size(); ++k) {
      internal::CoCounts& co = pair_counts[part[k]] = counts[k].value_or(internal::CoCounts());
      store::FloorCounters(co);
    }
  };
  fold(keys, *low_counts);
  if (reader) {
    if (!high_counts.ok()) return high_counts.status();
    fold(high, *high_counts);
  }
  return pair_counts;
}

RecommendationStore::ChangedPairs RecommendationStore::TakeChangedPairs() {
  ChangedPairs taken;
  absl::MutexLock lock(&changed_mu_);
  taken.swap(changed_pairs_);
  return taken;
}

void RecommendationStore::NoteAgain(ChangedPairs taken) {
  absl::MutexLock lock(&changed_mu_);
  for (auto& [item, partners] : taken) changed_pairs_[item].merge(partners);
}

absl::StatusOr<int64_t> RecommendationStore::RefreshNeighbours() {
  ChangedPairs changed = TakeChangedPairs();
  if (changed.empty()) return 0;  // the periodic pass with nothing learned since the last
  auto folded = FoldChangedPairs(changed);
  // Not folded (a store error): the next refresh or rebuild folds them.
  if (!folded.ok()) NoteAgain(std::move(changed));
  return folded;
}

absl::StatusOr<int64_t> RecommendationStore::FoldChangedPairs(ChangedPairs& changed) {
  // In key order, so the list rows are written sequentially.
  std::vector<std::string> items;
  items.reserve(changed.size());
  int64_t notes = 0;  // each changed pair is noted under both its items
  for (const auto& [item, partners] : changed) {
    items.push_back(item);
    notes += static_cast<int64_t>(partners.size());
  }
  std::sort(items.begin(), items.end());
  // Every sku involved is in `items` (pairs are noted both ways): their stats and lists in two
  // MultiGets. Counts are read after the changes that noted them committed; a change committed
  // meanwhile notes the pair again for the next refresh.
  CRM_ASSIGN_OR_RETURN(auto stats, StatsOf(items));
  auto lists =
      OrEmpty(store_->MultiGetProtos<internal::Neighbours>(cf_[kNeighbours], OneStringKeys(items)));
  if (!lists.ok()) return lists.status();
  absl::flat_hash_map<std::string, size_t> index_of;
  for (size_t i = 0; i < items.size(); ++i) index_of[items[i]] = i;
  CRM_ASSIGN_OR_RETURN(auto pair_counts, ReadPairCounts(changed));
  rocksdb::WriteBatch batch;
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string& item = items[i];
    internal::Neighbours& list = (*lists)[i];
    bool list_changed = false;
    for (const auto& partner : changed[item]) {
      const internal::Neighbour n =
          AsNeighbour(partner, pair_counts[PairKey(item, partner)], stats[index_of[partner]]);
      list_changed |= OfferNeighbour(list, stats[i], n);
    }
    if (list_changed)
      batch.Put(cf_[kNeighbours], Key().Str(item).bytes(), list.SerializeAsString());
  }
  if (batch.Count() > 0) {
    CRM_RETURN_IF_ERROR(store_->Write(&batch, store::Durability::kBuffered));
  }
  return notes / 2;
}

absl::StatusOr<RecommendationStore::Rebuilt> RecommendationStore::RebuildNeighbours() {
  // Every change noted so far is in the counts read below; those committed later are noted again.
  ChangedPairs taken = TakeChangedPairs();
  auto rebuilt = RebuildFromCounts();
  // Not rebuilt (a store error): what was noted goes back, for the batch refreshes to fold until a
  // rebuild succeeds.
  if (!rebuilt.ok()) NoteAgain(std::move(taken));
  return rebuilt;
}

absl::StatusOr<RecommendationStore::Rebuilt> RecommendationStore::RebuildFromCounts() {
  std::vector<std::string> skus;
  std::vector<internal::ItemStats> stats;
  CRM_RETURN_IF_ERROR(AllItemStats(skus, stats));
  absl::flat_hash_map<std::string, uint32_t> index_of;
  for (uint32_t i = 0; i < skus.size(); ++i) index_of.emplace(skus[i], i);
  BestNeighbours best(skus, stats);
  Rebuilt out;
  CRM_RETURN_IF_ERROR(
      store_->Scan(cf_[kCoCounts], "", "", [&](absl::string_view key, absl::string_view v) {
        store::KeyReader r(key);
        auto a = r.Str();
        auto b = r.Str();
        internal::CoCounts co;
        if (!a || !b || !co.ParseFromArray(v.data(), static_cast<int>(v.size()))) return true;
        store::FloorCounters(co);
        auto ia = index_of.find(*a);
        auto ib = index_of.find(*b);
        if (ia != index_of.end() && ib != index_of.end() && best.Offer(ia->second, ib->second, co))
          ++out.pairs;
        return true;
      }));
  // Every list is written again (an item left without pairs loses its list), in key order.
  rocksdb::WriteBatch batch;
  for (uint32_t i = 0; i < skus.size(); ++i) {
    const std::string key = Key().Str(skus[i]).Build();
    const internal::Neighbours list = best.TakeList(i);
    if (list.items().empty()) {
      batch.Delete(cf_[kNeighbours], key);
    } else {
      batch.Put(cf_[kNeighbours], key, list.SerializeAsString());
      ++out.items;
    }
    if (batch.Count() >= 1000) {
      CRM_RETURN_IF_ERROR(store_->Write(&batch, store::Durability::kBuffered));
      batch.Clear();
    }
  }
  if (batch.Count() > 0) CRM_RETURN_IF_ERROR(store_->Write(&batch, store::Durability::kBuffered));
  return out;
}

absl::Status RecommendationStore::AllItemStats(std::vector<std::string>& skus,
                                               std::vector<internal::ItemStats>& stats) const {
  return store_->Scan(cf_[kItemStats], "", "", [&](absl::string_view key, absl::string_view v) {
    store::KeyReader r(key);
    auto sku = r.Str();
    internal::ItemStats st;
    if (!sku || !st.ParseFromArray(v.data(), static_cast<int>(v.size()))) return true;
    store::FloorCounters(st);
    skus.push_back(*std::move(sku));
    stats.push_back(std::move(st));
    return true;
  });
}

absl::Status RecommendationStore::LearnDelivery(Transaction& txn, absl::string_view customer_id,
                                                const v1::OrderDelivered& order, absl::Time when) {
  const std::string basket_key = Key().Str(customer_id).Str(order.order_id()).Build();
  if (auto existing = txn.GetForUpdate(cf_[kBaskets], basket_key);
      !existing.ok() || existing->has_value()) {
    return existing.status();  // already learned (or a read error)
  }
  internal::Basket basket;
  basket.set_order_id(order.order_id());
  basket.set_paired_by_content(true);
  api::SetTimestamp(when, basket.mutable_delivered_time());
  CRM_RETURN_IF_ERROR(AddBasketLines(txn, order, basket));
  if (basket.lines().empty()) return absl::OkStatus();

  const std::string summary_key = Key().Str(customer_id).Build();
  internal::CustomerSummary summary;
  CRM_RETURN_IF_ERROR(txn.GetProto(cf_[kCustomers], summary_key, &summary, /*for_update=*/true));
  summary.set_baskets(summary.baskets() + 1);
  if (!summary.has_last_activity() || api::FromTimestamp(summary.last_activity()) < when) {
    api::SetTimestamp(when, summary.mutable_last_activity());
  }
  GraphDelta delta;
  CRM_RETURN_IF_ERROR(NoteBoughtItems(txn, customer_id, basket, when, summary, delta));
  CRM_RETURN_IF_ERROR(AccumulatePurchases(txn, customer_id, basket, when));
  if (!summary.has_last_basket_time() || api::FromTimestamp(summary.last_basket_time()) <= when) {
    summary.clear_last_basket_skus();
    for (const auto& line : basket.lines()) summary.add_last_basket_skus(line.sku());
    api::SetTimestamp(when, summary.mutable_last_basket_time());
  }
  CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kCustomers], summary_key, summary));
  CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kBaskets], basket_key, basket));
  BasketDelta(basket, +1, delta);
  delta.baskets[StripeOf(customer_id)] += 1;
  return Apply(txn, delta);
}

absl::Status RecommendationStore::AddBasketLines(Transaction& txn, const v1::OrderDelivered& order,
                                                 internal::Basket& basket) const {
  // One line per sku; the catalog's category wins over the one the order carried.
  std::map<std::string, internal::BasketLine> lines;
  for (const auto& item : order.items()) {
    // A line whose SKU breaks the catalog's rule could never be recommended or looked up: not
    // learned.
    if (!IsValidSku(item.sku()) || item.quantity() <= 0) continue;
    internal::BasketLine& line = lines[item.sku()];
    if (line.sku().empty()) {
      line.set_sku(item.sku());
      v1::CatalogItem catalog;
      CRM_ASSIGN_OR_RETURN(auto found, txn.GetProto(cf_[kItems], Key().Str(item.sku()), &catalog));
      line.set_category(found ? catalog.category() : item.category());
    }
    line.set_quantity(line.quantity() + item.quantity());
  }
  for (auto& [sku, line] : lines) *basket.add_lines() = line;
  return absl::OkStatus();
}

absl::Status RecommendationStore::NoteBoughtItems(Transaction& txn, absl::string_view customer_id,
                                                  const internal::Basket& basket, absl::Time when,
                                                  internal::CustomerSummary& summary,
                                                  GraphDelta& delta) {
  const bool wholesale = basket.lines_size() > kWholesaleBasketLines;
  // Each item's row among its buyers: moved once the basket's items are counted.
  struct Moved {
    std::string sku;
    std::optional<absl::Time> before, after;
  };
  std::vector<Moved> moved;
  for (const auto& line : basket.lines()) {
    const std::string key = Key().Str(customer_id).Str(line.sku()).Build();
    internal::CustomerItem mine;
    CRM_RETURN_IF_ERROR(txn.GetProto(cf_[kCustomerItems], key, &mine, /*for_update=*/true));
    if (mine.bought() == 0) {
      const int64_t sequence = summary.items_bought();
      summary.set_items_bought(sequence + 1);
      CRM_RETURN_IF_ERROR(FirstTouch(txn, Touch::kPurchase, customer_id, sequence, line.sku(), when,
                                     wholesale, delta));
    }
    NoteBought(summary, line.sku(), line.category(), when);
    NotePurchaseIn(summary, line.category(), when);
    mine.set_sku(line.sku());
    mine.set_category(line.category());
    mine.set_bought(mine.bought() + 1);
    std::optional<absl::Time> before;
    if (mine.has_last_bought()) before = api::FromTimestamp(mine.last_bought());
    if (!before || *before < when) api::SetTimestamp(when, mine.mutable_last_bought());
    moved.push_back({line.sku(), before, api::FromTimestamp(mine.last_bought())});
    CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kCustomerItems], key, mine));
  }
  for (const Moved& m : moved) {
    CRM_RETURN_IF_ERROR(
        MoveBuyer(txn, customer_id, m.sku, m.before, m.after, summary.items_bought()));
  }
  return absl::OkStatus();
}

absl::Status RecommendationStore::AccumulatePurchases(Transaction& txn,
                                                      absl::string_view customer_id,
                                                      const internal::Basket& basket,
                                                      absl::Time when) {
  std::set<std::string> categories;
  for (const auto& line : basket.lines()) {
    if (!line.category().empty()) categories.insert(line.category());
  }
  for (const auto& category : categories) {
    const std::string key = Key().Str(customer_id).Str(category).Build();
    v1::CategoryAffinity a;
    CRM_RETURN_IF_ERROR(txn.GetProto(cf_[kAffinity], key, &a, /*for_update=*/true));
    a.set_category(category);
    behavior::Accumulate(a, behavior::Action::kPurchase, 0, when);
    CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kAffinity], key, a));
  }
  return absl::OkStatus();
}

absl::Status RecommendationStore::LearnRefund(Transaction& txn, absl::string_view customer_id,
                                              const v1::OrderRefunded& refund) {
  const std::string basket_key = Key().Str(customer_id).Str(refund.order_id()).Build();
  internal::Basket basket;
  CRM_ASSIGN_OR_RETURN(auto has_basket,
                       txn.GetProto(cf_[kBaskets], basket_key, &basket, /*for_update=*/true));
  const std::string summary_key = Key().Str(customer_id).Build();
  internal::CustomerSummary summary;
  CRM_ASSIGN_OR_RETURN(auto has_summary,
                       txn.GetProto(cf_[kCustomers], summary_key, &summary, /*for_update=*/true));
  GraphDelta delta;
  for (const auto& item : refund.items()) {
    // A line whose SKU breaks the catalog's rule could never be recommended or looked up: not
    // learned.
    if (!IsValidSku(item.sku()) || item.quantity() <= 0) continue;
    ForgetRecent(summary, item.sku());
    CRM_RETURN_IF_ERROR(MarkReturned(txn, customer_id, item));
    if (has_basket) TakeBackReturned(item, basket, delta);
  }
  if (has_basket) {
    CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kBaskets], basket_key, basket));
  }
  if (has_summary) {
    CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kCustomers], summary_key, summary));
  }
  return Apply(txn, delta);
}

absl::Status RecommendationStore::MarkReturned(Transaction& txn, absl::string_view customer_id,
                                               const v1::EventItem& item) {
  const std::string key = Key().Str(customer_id).Str(item.sku()).Build();
  internal::CustomerItem mine;
  CRM_RETURN_IF_ERROR(txn.GetProto(cf_[kCustomerItems], key, &mine, /*for_update=*/true));
  mine.set_sku(item.sku());
  if (mine.category().empty()) mine.set_category(item.category());
  mine.set_returned(true);
  if (mine.has_last_bought()) {
    CRM_RETURN_IF_ERROR(MoveBuyer(txn, customer_id, item.sku(),
                                  api::FromTimestamp(mine.last_bought()), std::nullopt, 0));
  }
  return txn.PutProto(cf_[kCustomerItems], key, mine);
}

absl::Status RecommendationStore::MoveBuyer(Transaction& txn, absl::string_view customer_id,
                                            absl::string_view sku, std::optional<absl::Time> before,
                                            std::optional<absl::Time> after, int64_t items_bought) {
  if (before && before != after) {
    CRM_RETURN_IF_ERROR(txn.Delete(cf_[kBuyers], BuyerKey(sku, *before, customer_id)));
  }
  if (!after) return absl::OkStatus();
  internal::Buyer buyer;
  buyer.set_items_bought(items_bought);
  return txn.PutProto(cf_[kBuyers], BuyerKey(sku, *after, customer_id), buyer);
}

void RecommendationStore::TakeBackReturned(const v1::EventItem& item, internal::Basket& basket,
                                           GraphDelta& delta) {
  // Units returned count against the item (return rate) and come off the day's sales, never more
  // than the basket held.
  const internal::BasketLine* line = nullptr;
  for (const auto& l : basket.lines()) {
    if (l.sku() == item.sku()) line = &l;
  }
  if (line == nullptr) return;
  internal::BasketLine* returned = nullptr;
  for (auto& r : *basket.mutable_returned()) {
    if (r.sku() == item.sku()) returned = &r;
  }
  if (returned == nullptr) {
    returned = basket.add_returned();
    returned->set_sku(item.sku());
    returned->set_category(line->category());
  }
  const int32_t units = std::min<int32_t>(item.quantity(), line->quantity() - returned->quantity());
  if (units <= 0) return;
  returned->set_quantity(returned->quantity() + units);
  internal::ItemStats& d = delta.stats[item.sku()];
  d.set_returned_units(d.returned_units() + units);
  const int64_t day = DayOf(api::FromTimestamp(basket.delivered_time()));
  // A line sent back whole no longer counts as an order of the item.
  delta.AddSale(line->category(), day, item.sku(), -units,
                returned->quantity() == line->quantity() ? -1 : 0);
}

absl::Status RecommendationStore::LearnBrowsing(Transaction& txn, absl::string_view customer_id,
                                                const v1::BehaviorRecorded& b, absl::Time when) {
  const std::string summary_key = Key().Str(customer_id).Build();
  internal::CustomerSummary summary;
  CRM_RETURN_IF_ERROR(txn.GetProto(cf_[kCustomers], summary_key, &summary, /*for_update=*/true));
  std::map<std::string, v1::CategoryAffinity> affinity;
  GraphDelta delta;
  for (const auto& signal : b.signals()) {
    const behavior::Action action = behavior::ActionOf(signal.type());
    if (action == behavior::Action::kOther) continue;
    const absl::Time t = signal.has_occur_time() ? api::FromTimestamp(signal.occur_time()) : when;
    if (!signal.category().empty()) {
      auto [it, inserted] = affinity.try_emplace(signal.category());
      if (inserted) {
        CRM_RETURN_IF_ERROR(txn.GetProto(
            cf_[kAffinity], Key().Str(customer_id).Str(signal.category()), &it->second, true));
        it->second.set_category(signal.category());
      }
      behavior::Accumulate(it->second, action, signal.dwell_seconds(), t);
    }
    if (!IsValidSku(signal.sku()) ||
        (action != behavior::Action::kItemView && action != behavior::Action::kAddToCart)) {
      continue;
    }
    CRM_RETURN_IF_ERROR(NoteViewedItem(txn, customer_id, signal, t, summary, delta));
  }
  for (const auto& [category, a] : affinity) {
    CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kAffinity], Key().Str(customer_id).Str(category), a));
  }
  if (!summary.has_last_activity() || api::FromTimestamp(summary.last_activity()) < when) {
    api::SetTimestamp(when, summary.mutable_last_activity());
  }
  CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kCustomers], summary_key, summary));
  return Apply(txn, delta);
}

absl::Status RecommendationStore::NoteViewedItem(Transaction& txn, absl::string_view customer_id,
                                                 const v1::BehaviorSignal& signal, absl::Time t,
                                                 internal::CustomerSummary& summary,
                                                 GraphDelta& delta) {
  const std::string key = Key().Str(customer_id).Str(signal.sku()).Build();
  internal::CustomerItem mine;
  CRM_RETURN_IF_ERROR(txn.GetProto(cf_[kCustomerItems], key, &mine, /*for_update=*/true));
  const bool first_view = mine.views() == 0;
  NoteViewed(summary, signal.sku(), signal.category().empty() ? mine.category() : signal.category(),
             t, signal.dwell_seconds());
  mine.set_sku(signal.sku());
  if (mine.category().empty()) mine.set_category(signal.category());
  mine.set_views(mine.views() + 1);
  mine.set_max_dwell_seconds(std::max(mine.max_dwell_seconds(), signal.dwell_seconds()));
  if (!mine.has_last_viewed() || api::FromTimestamp(mine.last_viewed()) < t) {
    api::SetTimestamp(t, mine.mutable_last_viewed());
  }
  CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kCustomerItems], key, mine));
  if (!first_view) return absl::OkStatus();
  const int64_t sequence = summary.items_viewed();
  summary.set_items_viewed(sequence + 1);
  return FirstTouch(txn, Touch::kView, customer_id, sequence, signal.sku(), t, /*unpaired=*/false,
                    delta);
}

absl::Status RecommendationStore::Forget(Transaction& txn, absl::string_view customer_id) {
  const std::string prefix = Key().Str(customer_id).Build();
  GraphDelta delta;
  int64_t baskets = 0;
  absl::Status s = store::ScanPrefixProtos<internal::Basket>(
      txn, cf_[kBaskets], prefix, [&](absl::string_view, internal::Basket&& basket) {
        BasketDelta(basket, -1, delta);
        ++baskets;
      });
  if (!s.ok()) return s;
  delta.baskets[StripeOf(customer_id)] -= baskets;
  for (Touch kind : {Touch::kView, Touch::kPurchase}) {
    CRM_RETURN_IF_ERROR(UndoTouches(txn, kind, customer_id, delta));
  }
  CRM_RETURN_IF_ERROR(Apply(txn, delta));
  // Out of every item's buyers (their keys start with the item, so they go one by one).
  std::vector<std::pair<std::string, absl::Time>> bought;
  CRM_RETURN_IF_ERROR(store::ScanPrefixProtos<internal::CustomerItem>(
      txn, cf_[kCustomerItems], prefix, [&](absl::string_view, internal::CustomerItem&& mine) {
        if (mine.has_last_bought()) {
          bought.emplace_back(mine.sku(), api::FromTimestamp(mine.last_bought()));
        }
      }));
  for (const auto& [sku, last_bought] : bought) {
    CRM_RETURN_IF_ERROR(MoveBuyer(txn, customer_id, sku, last_bought, std::nullopt, 0));
  }
  CRM_RETURN_IF_ERROR(txn.Delete(cf_[kCustomers], prefix));
  for (auto* cf : {cf_[kCustomerItems], cf_[kBaskets], cf_[kFirstViews], cf_[kFirstPurchases],
                   cf_[kAffinity], cf_[kShown], cf_[kRequests], cf_[kReminders]}) {
    CRM_RETURN_IF_ERROR(txn.DeletePrefix(cf, prefix));
  }
  // Reminders about the customer not yet delivered need not travel: they would only be erased.
  return outbox_->DropPendingEventsOf(txn, customer_id);
}

absl::Status RecommendationStore::CustomersWithPurchases(absl::string_view after, int limit,
                                                         std::vector<std::string>* ids,
                                                         std::string* last_key) const {
  ids->clear();
  CRM_ASSIGN_OR_RETURN(const std::string begin, store::ResumeAfter("", after));
  absl::Status parse;
  int visited = 0;
  CRM_RETURN_IF_ERROR(
      store_->Scan(cf_[kCustomers], begin, "", [&](absl::string_view k, absl::string_view v) {
        if (visited == limit) return false;
        ++visited;
        *last_key = std::string(k);
        internal::CustomerSummary summary;
        if (!store::ParseStored(v, summary, parse)) return false;
        if (summary.baskets() == 0) return true;
        store::KeyReader key(k);
        std::optional<std::string> id = key.Str();
        if (!id) {
          parse = absl::DataLossError("a customer row's key has no customer id");
          return false;
        }
        ids->push_back(std::move(*id));
        return true;
      }));
  CRM_RETURN_IF_ERROR(parse);
  if (visited < limit) last_key->clear();
  return absl::OkStatus();
}

namespace {

std::string ReminderKey(absl::string_view customer_id, v1::ReminderKind kind) {
  return Key().Str(customer_id).I64(kind).Build();
}

}  // namespace

absl::StatusOr<int64_t> RecommendationStore::LastReminderDay(absl::string_view customer_id,
                                                             v1::ReminderKind kind) const {
  CRM_ASSIGN_OR_RETURN(auto sent, FindProto<internal::ReminderSent>(
                                      *store_, cf_[kReminders], ReminderKey(customer_id, kind)));
  return sent.has_value() ? sent->day() : 0;
}

absl::StatusOr<bool> RecommendationStore::NoteReminder(Transaction& txn,
                                                       absl::string_view customer_id,
                                                       v1::ReminderKind kind, int64_t day,
                                                       absl::string_view sku) {
  // Locking the customer's summary row orders this against an erasure, which deletes it: an erased
  // customer's reminder either commits before the erasure (which then drops it from the outbox) or
  // finds no customer.
  internal::CustomerSummary summary;
  CRM_ASSIGN_OR_RETURN(const bool known, txn.GetProto(cf_[kCustomers], Key().Str(customer_id),
                                                      &summary, /*for_update=*/true));
  if (!known) return false;
  const std::string key = ReminderKey(customer_id, kind);
  internal::ReminderSent sent;
  CRM_ASSIGN_OR_RETURN(const bool before,
                       txn.GetProto(cf_[kReminders], key, &sent, /*for_update=*/true));
  if (before && sent.day() >= day) return false;
  sent.set_day(day);
  sent.set_sku(std::string(sku));
  CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kReminders], key, sent));
  return true;
}

absl::Status RecommendationStore::RecordShown(Transaction& txn, absl::string_view customer_id,
                                              absl::string_view sku, int impressions, int clicks,
                                              absl::Time now) {
  const std::string key = Key().Str(customer_id).Str(sku).Build();
  internal::Shown shown;
  CRM_RETURN_IF_ERROR(txn.GetProto(cf_[kShown], key, &shown, /*for_update=*/true));
  if (!shown.has_window_start() ||
      now - api::FromTimestamp(shown.window_start()) >= kImpressionWindow) {
    shown.Clear();
    api::SetTimestamp(now, shown.mutable_window_start());
  }
  shown.set_impressions(shown.impressions() + impressions);
  shown.set_clicks(shown.clicks() + clicks);
  if (impressions > 0) api::SetTimestamp(now, shown.mutable_last_shown());
  return txn.PutProto(cf_[kShown], key, shown);
}

// ---- reads ----

absl::StatusOr<CustomerView> RecommendationStore::Customer(absl::string_view customer_id) const {
  CustomerView v;
  const std::string prefix = Key().Str(customer_id).Build();
  CRM_ASSIGN_OR_RETURN(auto found, store_->GetProto(cf_[kCustomers], prefix, &v.summary));
  v.known = found;
  CRM_ASSIGN_OR_RETURN(v.affinity,
                       store::ProtosUnder<v1::CategoryAffinity>(*store_, cf_[kAffinity], prefix));
  return v;
}

absl::StatusOr<std::optional<internal::Shown>> RecommendationStore::ShownTo(
    absl::string_view customer_id, absl::string_view sku) const {
  return FindProto<internal::Shown>(*store_, cf_[kShown], Key().Str(customer_id).Str(sku));
}

absl::StatusOr<internal::ItemStats> RecommendationStore::Stats(absl::string_view sku) const {
  internal::ItemStats s;
  CRM_RETURN_IF_ERROR(store_->GetProto(cf_[kItemStats], Key().Str(sku), &s));
  store::FloorCounters(s);
  return s;
}

void RecommendationStore::ForgetStats(const std::vector<std::string>& skus,
                                      bool basket_total) const {
  absl::MutexLock lock(&stats_mu_);
  ++stats_generation_;
  for (const std::string& sku : skus) stats_cache_.erase(sku);
  if (basket_total) basket_total_.reset();
}

absl::StatusOr<std::vector<internal::ItemStats>> RecommendationStore::StatsOf(
    const std::vector<std::string>& skus) const {
  std::vector<internal::ItemStats> stats(skus.size());
  std::vector<std::string> unread;
  std::vector<size_t> unread_at;
  uint64_t generation;
  {
    absl::MutexLock lock(&stats_mu_);
    generation = stats_generation_;
    for (size_t i = 0; i < skus.size(); ++i) {
      if (auto it = stats_cache_.find(skus[i]); it != stats_cache_.end()) {
        stats[i] = it->second;
      } else {
        unread.push_back(skus[i]);
        unread_at.push_back(i);
      }
    }
  }
  if (unread.empty()) return stats;
  CRM_ASSIGN_OR_RETURN(
      std::vector<internal::ItemStats> found,
      OrEmpty(store_->MultiGetProtos<internal::ItemStats>(cf_[kItemStats], OneStringKeys(unread))));
  for (auto& s : found) store::FloorCounters(s);
  absl::MutexLock lock(&stats_mu_);
  const bool current = generation == stats_generation_;
  for (size_t k = 0; k < unread.size(); ++k) {
    if (current) {
      if (stats_cache_bytes_ >= kCachedStatsBytes) {
        stats_cache_.clear();
        stats_cache_bytes_ = 0;
      }
      // The stats, their key and the map slot.
      stats_cache_bytes_ += sizeof(internal::ItemStats) + 2 * unread[k].size() + 32;
      stats_cache_.try_emplace(unread[k], found[k]);
    }
    stats[unread_at[k]] = std::move(found[k]);
  }
  return stats;
}

absl::StatusOr<std::vector<internal::Neighbours>> RecommendationStore::NeighboursOf(
    const std::vector<std::string>& skus) const {
  return OrEmpty(
      store_->MultiGetProtos<internal::Neighbours>(cf_[kNeighbours], OneStringKeys(skus)));
}

absl::StatusOr<std::vector<std::optional<internal::CustomerItem>>> RecommendationStore::Mine(
    absl::string_view customer_id, const std::vector<std::string>& skus) const {
  return store_->MultiGetProtos<internal::CustomerItem>(cf_[kCustomerItems],
                                                        CustomerItemKeys(customer_id, skus));
}

absl::StatusOr<std::vector<std::optional<internal::Shown>>> RecommendationStore::ShownTo(
    absl::string_view customer_id, const std::vector<std::string>& skus) const {
  return store_->MultiGetProtos<internal::Shown>(cf_[kShown], CustomerItemKeys(customer_id, skus));
}

absl::Status RecommendationStore::ListShown(absl::string_view customer_id, absl::string_view after,
                                            int limit, std::vector<v1::ShownItem>* out,
                                            std::string* last_key, bool* more) const {
  *more = false;
  const std::string prefix = Key().Str(customer_id).Build();
  CRM_ASSIGN_OR_RETURN(const std::string begin, store::ResumeAfter(prefix, after));
  absl::Status parse;
  CRM_RETURN_IF_ERROR(store_->Scan(cf_[kShown], begin, store::PrefixUpperBound(prefix),
                                   [&](absl::string_view k, absl::string_view v) {
                                     if (static_cast<int>(out->size()) == limit) {
                                       *more = true;
                                       return false;
                                     }
                                     internal::Shown shown;
                                     if (!store::ParseStored(v, shown, parse)) return false;
                                     // The row's key is (customer_id, sku): the sku is the part
                                     // after the prefix.
                                     store::KeyReader key(k.substr(prefix.size()));
                                     std::optional<std::string> sku = key.Str();
                                     if (!sku) {
                                       parse = absl::DataLossError("a shown row's key has no sku");
                                       return false;
                                     }
                                     v1::ShownItem& item = out->emplace_back();
                                     item.set_sku(std::move(*sku));
                                     item.set_impressions(shown.impressions());
                                     item.set_clicks(shown.clicks());
                                     *item.mutable_window_start() = shown.window_start();
                                     *item.mutable_last_shown_time() = shown.last_shown();
                                     *last_key = std::string(k);
                                     return true;
                                   }));
  return parse;
}

absl::StatusOr<absl::flat_hash_map<std::string, RecommendationStore::Alike>>
RecommendationStore::BuyersOf(const std::vector<std::string>& skus, int per_item,
                              absl::Time now) const {
  absl::flat_hash_map<std::string, Alike> alike;
  for (const std::string& sku : skus) {
    const std::string prefix = Key().Str(sku).Build();
    int read = 0;
    absl::Time last_read;
    absl::Status bad_key;
    CRM_RETURN_IF_ERROR(store::ScanPrefixProtos<internal::Buyer>(
        *store_, cf_[kBuyers], prefix, [&](absl::string_view k, internal::Buyer&& buyer) {
          store::KeyReader key(k.substr(prefix.size()));
          const std::optional<absl::Time> bought = key.TimeNewestFirst();
          std::optional<std::string> customer = key.Str();
          if (!bought || !customer) {
            bad_key =
                absl::DataLossError(absl::StrCat("a buyer's key of ", sku, " does not parse"));
            return false;
          }
          if (*bought > now) return true;  // bought after the time asked about
          // The newest `per_item`, and every other buyer of the same instant as the last of them:
          // which are read then does not depend on the customer ids the key orders them by, which
          // are minted at random (imported histories often share a minute). At most four times
          // `per_item`, so a history with dates only cannot make a call read thousands.
          if (read >= per_item && (*bought != last_read || read >= 4 * per_item)) return false;
          Alike& a = alike[*customer];
          ++a.shared;
          a.latest = std::max(a.latest, *bought);
          a.items_bought = std::max(a.items_bought, buyer.items_bought());
          ++read;
          last_read = *bought;
          return true;
        }));
    CRM_RETURN_IF_ERROR(bad_key);
  }
  return alike;
}

absl::Status RecommendationStore::RecentPurchasesOf(
    const std::vector<std::string>& customer_ids,
    absl::FunctionRef<void(size_t customer, absl::string_view sku, absl::Time last_bought)> visit)
    const {
  absl::Status s = store_->MultiGet(
      cf_[kCustomers], OneStringKeys(customer_ids), [&](size_t i, absl::string_view summary) {
        return ForEachRecentPurchase(
            summary, [&](absl::string_view sku, absl::Time bought) { visit(i, sku, bought); });
      });
  if (absl::IsDataLoss(s)) return store::NotParsed(internal::CustomerSummary().GetTypeName());
  return s;
}

absl::Status RecommendationStore::IndexBuyersOnce() {
  CRM_ASSIGN_OR_RETURN(auto indexed, store_->Get(cf_[kBuyers], kBuyersIndexed));
  if (indexed.has_value()) return absl::OkStatus();
  // Item rows come grouped by customer: a customer's rows are written once all of them are read,
  // with the count of the items they bought.
  int64_t written = 0;
  std::string customer;
  std::vector<std::pair<std::string, absl::Time>> bought;
  rocksdb::WriteBatch batch;
  absl::Status failed;
  const auto flush_customer = [&] {
    internal::Buyer buyer;
    buyer.set_items_bought(static_cast<int64_t>(bought.size()));
    const std::string value = buyer.SerializeAsString();
    for (const auto& [sku, when] : bought) {
      batch.Put(cf_[kBuyers], BuyerKey(sku, when, customer), value);
    }
    written += static_cast<int64_t>(bought.size());
    bought.clear();
    if (batch.Count() >= 10000) {
      failed = store_->Write(&batch, store::Durability::kBuffered);
      batch.Clear();
    }
  };
  absl::Status bad_key;
  CRM_RETURN_IF_ERROR(store::ScanPrefixProtos<internal::CustomerItem>(
      *store_, cf_[kCustomerItems], "", [&](absl::string_view k, internal::CustomerItem&& mine) {
        std::optional<std::string> id = store::KeyReader(k).Str();
        if (!id) {
          bad_key = absl::DataLossError("a customer's item row has no customer in its key");
          return false;
        }
        if (*id != customer) {
          flush_customer();
          customer = std::move(*id);
        }
        if (mine.bought() > 0 && mine.has_last_bought() && !mine.returned()) {
          bought.emplace_back(mine.sku(), api::FromTimestamp(mine.last_bought()));
        }
        return failed.ok();
      }));
  CRM_RETURN_IF_ERROR(bad_key);
  CRM_RETURN_IF_ERROR(failed);
  flush_customer();
  CRM_RETURN_IF_ERROR(failed);
  // Synced with the last rows: once marked complete, it is never built again.
  batch.Put(cf_[kBuyers], kBuyersIndexed, "indexed");
  CRM_RETURN_IF_ERROR(store_->Write(&batch, store::Durability::kSynced));
  log::Info("buyers of each item indexed", {{"rows", written}});
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, std::vector<int64_t>>> RecommendationStore::BuyingDays(
    absl::string_view customer_id) const {
  std::map<std::string, std::vector<int64_t>> days;
  int read = 0;
  const std::string prefix = Key().Str(customer_id).Build();
  CRM_RETURN_IF_ERROR(store::ScanPrefixProtos<internal::Basket>(
      *store_, cf_[kBaskets], prefix, [&](absl::string_view, internal::Basket&& basket) {
        const int64_t day = DayOf(api::FromTimestamp(basket.delivered_time()));
        for (const auto& line : basket.lines()) days[line.sku()].push_back(day);
        return ++read < kBasketsRead;
      }));
  for (auto& [sku, d] : days) {
    std::sort(d.begin(), d.end());
    d.erase(std::unique(d.begin(), d.end()), d.end());
  }
  return days;
}

absl::StatusOr<internal::CoCounts> RecommendationStore::Co(absl::string_view a,
                                                           absl::string_view b) const {
  internal::CoCounts co;
  CRM_RETURN_IF_ERROR(store_->GetProto(cf_[kCoCounts], PairKey(a, b), &co));
  store::FloorCounters(co);
  return co;
}

absl::StatusOr<internal::Neighbours> RecommendationStore::NeighboursOf(
    absl::string_view sku) const {
  internal::Neighbours n;
  CRM_RETURN_IF_ERROR(store_->GetProto(cf_[kNeighbours], Key().Str(sku), &n));
  return n;
}

absl::StatusOr<int64_t> RecommendationStore::TotalBaskets() const {
  uint64_t generation;
  {
    absl::MutexLock lock(&stats_mu_);
    if (basket_total_.has_value()) return *basket_total_;
    generation = stats_generation_;
  }
  int64_t total = 0;
  absl::Status s =
      store_->Scan(cf_[kGlobalStats], "", "", [&](absl::string_view, absl::string_view v) {
        internal::GlobalStats g;
        if (g.ParseFromArray(v.data(), static_cast<int>(v.size())))
          total += std::max<int64_t>(0, g.baskets());
        return true;
      });
  if (!s.ok()) return s;
  absl::MutexLock lock(&stats_mu_);
  if (generation == stats_generation_) basket_total_ = total;
  return total;
}

absl::StatusOr<std::map<std::string, internal::Sold>> RecommendationStore::Sales(
    absl::string_view category, absl::Time since, absl::Time until) const {
  std::map<std::string, internal::Sold> sales;
  absl::Status s = store_->Scan(
      cf_[kSales], Key().Str(category).I64(DayOf(since)), Key().Str(category).I64(DayOf(until) + 1),
      [&](absl::string_view key, absl::string_view v) {
        store::KeyReader r(key);
        r.Str();
        r.I64();
        internal::Sold sold;
        if (auto sku = r.Str(); sku && sold.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
          store::FloorCounters(sold);
          // A day whose sales were all taken back (an erased customer's) sold nothing.
          if (sold.units() == 0 && sold.orders() == 0) return true;
          internal::Sold& total = sales[*sku];
          total.set_units(total.units() + sold.units());
          total.set_orders(total.orders() + sold.orders());
        }
        return true;
      });
  if (!s.ok()) return s;
  return sales;
}

}  // namespace crm::recommendation
