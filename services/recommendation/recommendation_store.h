// Persistence of the recommendation service: the only code that knows its column families and keys.
//
//   items            sku                             -> crm.v1.CatalogItem
//   successors       predecessor sku, successor sku  -> "" (who gets an upgrade notice)
//   item_stats       sku                             -> ItemStats (baskets, units, buyers, viewers,
//                                                       returns)
//   co_counts        sku a, sku b (a < b)            -> CoCounts (baskets with both, customers
//                                                       buying both, customers viewing both)
//   neighbours       sku                             -> Neighbours (best kMaxNeighbours candidates)
//   sales            category ("" = all), day, sku   -> Sold (units, orders; best sellers sum 30
//                                                       days)
//   global_stats     stripe                          -> GlobalStats (all baskets, in 16 stripes)
//   customers        customer_id                     -> CustomerSummary
//   customer_items   customer_id, sku                -> CustomerItem (bought, returned, viewed)
//   baskets          customer_id, order_id           -> Basket (delivered orders, for occasions and
//                                                       undo)
//   first_views      customer_id, sequence           -> FirstTouch (order of distinct items viewed)
//   first_purchases  customer_id, sequence           -> FirstTouch (order of distinct items bought)
//   affinity         customer_id, category           -> crm.v1.CategoryAffinity (decayed interest)
//   shown            customer_id, sku                -> Shown (impressions and clicks this week)
//   requests         customer_id, method, request_id -> idempotency records (e-mail, feedback)
//   reminders        customer_id, kind               -> ReminderSent (the day and item of the
//   latest
//                                                       scheduled reminder of that kind)
//   buyers           sku, last bought (newest first), customer_id
//                                                    -> Buyer (an item's buyers, for customers
//                                                       alike; not returned items)
//   consumed_events  occur time, event id            -> events already applied
//
// Learning happens in the event consumer's transaction: per-customer rows are read and locked; the
// shared item rows (stats, pairs, sales, basket counts) are counters the transaction adds its
// deltas to without reading or locking them (store::CounterSum), so concurrent deliveries never
// wait for one another or deadlock, and every count is exact. A count that falls to zero keeps its
// row (zeros read as no row). Each committed pair change is noted in memory;
// RefreshNeighbours folds the notes into the neighbour lists once per item per batch (rewriting a
// list on every sale of a popular item would cost more than all the rest). The lists only nominate
// candidates, so a note lost in a crash costs a little freshness until the pair is seen again,
// never a wrong count. RebuildNeighbours writes every list afresh from the counts (after an
// import), so the lists depend on the history alone. Erasing a customer replays their baskets and
// views with the sign reversed, and drops the reminders about them still in the outbox.
// Thread-safe.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "crm/internal/recommendation_storage.pb.h"
#include "crm/v1/customer_profile.pb.h"
#include "crm/v1/events.pb.h"
#include "crm/v1/recommendation.pb.h"
#include "libs/events/outbox.h"
#include "libs/store/families.h"
#include "libs/store/store.h"
#include "services/recommendation/name_index.h"

namespace crm::recommendation {

// What a recommendation reads about a customer up front (bounded); item-level facts are read per
// candidate.
struct CustomerView {
  bool known = false;
  internal::CustomerSummary summary;
  std::vector<v1::CategoryAffinity> affinity;  // as stored (not yet decayed to now)
};

class RecommendationStore {
 public:
  static std::vector<std::string> ColumnFamilies();
  // The merge operators of the counter families (item stats, pair counts, sales, basket counts),
  // to open the store with.
  static std::map<std::string, std::shared_ptr<rocksdb::MergeOperator>> MergeOperators();
  // `outbox`: where the reminder sweep's events go (erasure drops a customer's pending ones).
  RecommendationStore(store::Store* store, events::Outbox* outbox);

  // Catalog. Upsert keeps an existing item's stock state when `in_stock` is unset; new items are in
  // stock.
  absl::Status UpsertItems(const std::vector<v1::CatalogItem>& items, absl::Time now);
  // The catalog item, shared with the cache (null when the catalog lacks it): read often, copied
  // only into answers.
  absl::StatusOr<std::shared_ptr<const v1::CatalogItem>> Item(absl::string_view sku) const;
  // Applies stock changes; returns the SKUs the catalog does not have (nothing else is written for
  // them).
  absl::StatusOr<std::vector<std::string>> SetStock(const std::vector<v1::StockChange>& changes,
                                                    absl::Time now);
  absl::StatusOr<std::vector<std::string>> Successors(absl::string_view sku) const;
  // Reads every catalog item's name into names(), before serving begins (log line "catalog names
  // indexed"); catalog writes keep it current after that. Without it names() stays empty.
  absl::Status LoadNameIndex();
  // Which catalog items are named alike (name_index.h).
  const NameIndex& names() const { return names_; }
  // Every item some other item upgrades.
  absl::StatusOr<std::vector<std::string>> ItemsWithSuccessors() const;

  // Learning, inside the event consumer's transaction.
  absl::Status LearnDelivery(store::Transaction& txn, absl::string_view customer_id,
                             const v1::OrderDelivered& order, absl::Time when);
  absl::Status LearnRefund(store::Transaction& txn, absl::string_view customer_id,
                           const v1::OrderRefunded& refund);
  absl::Status LearnBrowsing(store::Transaction& txn, absl::string_view customer_id,
                             const v1::BehaviorRecorded& b, absl::Time when);
  // Takes back everything the customer contributed and deletes every row about them.
  absl::Status Forget(store::Transaction& txn, absl::string_view customer_id);

  // Updates the neighbour lists of items whose pairs changed; returns how many pairs changed.
  // Run after each batch of events and periodically; safe to run concurrently with learning, one at
  // a time. On a store error the changed pairs stay noted for the next refresh (or rebuild).
  absl::StatusOr<int64_t> RefreshNeighbours();
  // Writes every item's neighbour list afresh from all pair counts: the best kMaxNeighbours by
  // similarity, ties by sku, so the lists depend on the counts alone, not on how refreshes were
  // batched. One scan of item stats and one of pairs; memory bounded by items × kMaxNeighbours.
  // Not concurrently with RefreshNeighbours. On a store error what was noted stays noted.
  struct Rebuilt {
    int items = 0;
    int64_t pairs = 0;
  };
  absl::StatusOr<Rebuilt> RebuildNeighbours();

  // The reminder sweep's pages: of up to `limit` customer rows after the key `after` ("" = from the
  // first), the ids of the customers with a delivered order; `last_key` is where the next page
  // starts, empty after the last page.
  absl::Status CustomersWithPurchases(absl::string_view after, int limit,
                                      std::vector<std::string>* ids, std::string* last_key) const;
  // Inside the transaction writing a scheduled reminder of `kind` for `sku` on `day` (a Unix day
  // number, UTC): records it and returns true, or returns false, writing nothing, when the customer
  // already has one of that kind that day (or a later one) or is no longer known (erased).
  // The day (Unix day number) of the customer's latest scheduled reminder of `kind`; 0 when none.
  absl::StatusOr<int64_t> LastReminderDay(absl::string_view customer_id,
                                          v1::ReminderKind kind) const;
  absl::StatusOr<bool> NoteReminder(store::Transaction& txn, absl::string_view customer_id,
                                    v1::ReminderKind kind, int64_t day, absl::string_view sku);

  // Impressions and clicks of recommendations, inside a request's transaction.
  absl::Status RecordShown(store::Transaction& txn, absl::string_view customer_id,
                           absl::string_view sku, int impressions, int clicks, absl::Time now);

  // Reads (no locks).
  absl::StatusOr<CustomerView> Customer(absl::string_view customer_id) const;
  // How often one item was shown to the customer; nullopt when never.
  absl::StatusOr<std::optional<internal::Shown>> ShownTo(absl::string_view customer_id,
                                                         absl::string_view sku) const;
  absl::StatusOr<internal::ItemStats> Stats(absl::string_view sku) const;
  // Batch point reads (one RocksDB MultiGet each), in the order of `skus`: what Recommend reads per
  // seed and per candidate.
  absl::StatusOr<std::vector<internal::ItemStats>> StatsOf(
      const std::vector<std::string>& skus) const;
  absl::StatusOr<std::vector<internal::Neighbours>> NeighboursOf(
      const std::vector<std::string>& skus) const;
  absl::StatusOr<std::vector<std::optional<internal::CustomerItem>>> Mine(
      absl::string_view customer_id, const std::vector<std::string>& skus) const;
  absl::StatusOr<std::vector<std::optional<internal::Shown>>> ShownTo(
      absl::string_view customer_id, const std::vector<std::string>& skus) const;
  // One page of the items shown to the customer, in sku order (the shape rpc::ReadCustomerPage
  // takes): after `after` (a previous page's last key), up to `limit`.
  absl::Status ListShown(absl::string_view customer_id, absl::string_view after, int limit,
                         std::vector<v1::ShownItem>* out, std::string* last_key, bool* more) const;
  // The distinct days (Unix day numbers, ascending) on which the customer bought each item, from
  // their delivered orders (at most kBasketsRead of them, so a wholesale buyer's read stays
  // bounded; the latest purchase of each item is exact in its customer_items row).
  static constexpr int kBasketsRead = 200;
  absl::StatusOr<std::map<std::string, std::vector<int64_t>>> BuyingDays(
      absl::string_view customer_id) const;
  absl::StatusOr<internal::CoCounts> Co(absl::string_view a, absl::string_view b) const;
  // The customers alike to one who bought `skus`: of each item, its latest `per_item` buyers and
  // any of the same instant as the last of them, up to 4 * `per_item` (those who bought it after
  // `now` are passed over), with how many of `skus` each bought, the latest of those purchases, and
  // their distinct items bought (as of the index's row).
  struct Alike {
    int shared = 0;
    absl::Time latest = absl::InfinitePast();
    int64_t items_bought = 0;
  };
  absl::StatusOr<absl::flat_hash_map<std::string, Alike>> BuyersOf(
      const std::vector<std::string>& skus, int per_item, absl::Time now) const;
  // What the customers bought among their recent items (one MultiGet, the summaries read as stored
  // bytes: ForEachRecentPurchase): visit(index in `customer_ids`, sku, last bought) for each; a
  // customer unknown (erased) has none. DATA_LOSS when a summary does not parse.
  absl::Status RecentPurchasesOf(
      const std::vector<std::string>& customer_ids,
      absl::FunctionRef<void(size_t customer, absl::string_view sku, absl::Time last_bought)> visit)
      const;
  // Fills the buyers family from the customers' item rows, once: a store written by a build without
  // the family gets it at its first start (before learning and serving begin; log line "buyers of
  // each item indexed"). A build without it would refuse to open the store afterwards (RocksDB: a
  // column family not opened), so it cannot fall behind the rows it indexes.
  absl::Status IndexBuyersOnce();
  absl::StatusOr<internal::Neighbours> NeighboursOf(absl::string_view sku) const;
  absl::StatusOr<int64_t> TotalBaskets() const;
  // Units and orders per sku in `category` ("" = everything) on days [since, until].
  absl::StatusOr<std::map<std::string, internal::Sold>> Sales(absl::string_view category,
                                                              absl::Time since,
                                                              absl::Time until) const;

  store::Store& raw() { return *store_; }
  rocksdb::ColumnFamilyHandle* requests() const;
  static std::string RequestKey(absl::string_view customer_id, absl::string_view method,
                                absl::string_view request_id);

 private:
  struct GraphDelta;
  absl::Status Apply(store::Transaction& txn, const GraphDelta& delta);
  // Apply's step for the pair counts: adds them and notes the pairs changed.
  absl::Status ApplyPairCounts(store::Transaction& txn, const GraphDelta& delta);
  // LearnDelivery's steps: the basket's lines (one per valid sku, with the catalog's category);
  // what the customer bought (their item rows, summary and first purchases); their interest in the
  // basket's categories.
  absl::Status AddBasketLines(store::Transaction& txn, const v1::OrderDelivered& order,
                              internal::Basket& basket) const;
  absl::Status NoteBoughtItems(store::Transaction& txn, absl::string_view customer_id,
                               const internal::Basket& basket, absl::Time when,
                               internal::CustomerSummary& summary, GraphDelta& delta);
  absl::Status AccumulatePurchases(store::Transaction& txn, absl::string_view customer_id,
                                   const internal::Basket& basket, absl::Time when);
  // LearnRefund's steps: the customer's item row marked returned; the units returned taken back
  // from the basket's line, the item's stats and the day's sales.
  absl::Status MarkReturned(store::Transaction& txn, absl::string_view customer_id,
                            const v1::EventItem& item);
  // Moves the customer's row in `sku`'s buyers from the purchase at `before` (none: no row yet) to
  // the one at `after` (none: no longer a buyer, the item returned).
  absl::Status MoveBuyer(store::Transaction& txn, absl::string_view customer_id,
                         absl::string_view sku, std::optional<absl::Time> before,
                         std::optional<absl::Time> after, int64_t items_bought);
  static void TakeBackReturned(const v1::EventItem& item, internal::Basket& basket,
                               GraphDelta& delta);
  // LearnBrowsing's step for a view of (or adding to the cart) an item: the customer's item row
  // and summary, and the first view's pairs.
  absl::Status NoteViewedItem(store::Transaction& txn, absl::string_view customer_id,
                              const v1::BehaviorSignal& signal, absl::Time t,
                              internal::CustomerSummary& summary, GraphDelta& delta);
  // RebuildNeighbours' step: every item with a stats row, in key order, and its counts.
  absl::Status AllItemStats(std::vector<std::string>& skus,
                            std::vector<internal::ItemStats>& stats) const;
  // RefreshNeighbours' step: the counts of every changed pair (noted both ways, read once), by
  // PairKey, floored at zero.
  absl::StatusOr<absl::flat_hash_map<std::string, internal::CoCounts>> ReadPairCounts(
      const absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>>& changed) const;
  // Adds (sign +1) or takes back (-1) what a basket contributes to the shared rows.
  void BasketDelta(const internal::Basket& basket, int sign, GraphDelta& delta) const;
  // The pairs of the customer's `sequence`-th first view (or purchase) `touch` with the ones before
  // it.
  enum class Touch { kView, kPurchase };
  absl::Status TouchPairs(store::Transaction& txn, Touch kind, absl::string_view customer_id,
                          int64_t sequence, const internal::FirstTouch& touch, int sign,
                          GraphDelta& delta) const;
  // Records a first view or purchase and adds its pairs (none when `unpaired`: a first purchase in
  // a wholesale basket).
  absl::Status FirstTouch(store::Transaction& txn, Touch kind, absl::string_view customer_id,
                          int64_t sequence, absl::string_view sku, absl::Time when, bool unpaired,
                          GraphDelta& delta);
  // Takes back every pair and count the customer's first views or purchases added.
  absl::Status UndoTouches(store::Transaction& txn, Touch kind, absl::string_view customer_id,
                           GraphDelta& delta) const;

  store::Store* const store_;
  events::Outbox* const outbox_;
  // The handles of the column families, indexed by the .cc's Family.
  store::Families cf_;
  // Catalog items read recently. This process is the catalog's only writer, so writes update it
  // after commit; it is dropped whole when it reaches kCachedItemBytes, a fixed part of the
  // process's memory overhead whatever the catalog's size (a 200,000-item cap let it grow past the
  // block cache).
  static constexpr size_t kCachedItemBytes = 8 << 20;
  // The cached copy of `item`.
  std::shared_ptr<const v1::CatalogItem> Cache(const v1::CatalogItem& item, bool written) const;
  mutable absl::Mutex items_mu_;
  mutable absl::flat_hash_map<std::string, std::shared_ptr<const v1::CatalogItem>> item_cache_
      ABSL_GUARDED_BY(items_mu_);
  mutable size_t item_cache_bytes_ ABSL_GUARDED_BY(items_mu_) = 0;
  // The catalog's names, updated after each catalog write commits once loaded (set before serving).
  NameIndex names_;
  std::atomic<bool> names_loaded_ = false;
  // Item stats read recently, and the shop's basket total (striped rows, the denominator of every
  // bundle's lift). They are counter rows (merge operands until compaction folds them), several
  // block reads each, and Recommend reads them for every candidate: kept here once read and dropped
  // when a committed delta changes them. A read caches what it found only if no delta committed
  // since it began (`stats_generation_`), so a cached value is never older than the store's. The
  // stats are dropped whole at kCachedStatsBytes.
  static constexpr size_t kCachedStatsBytes = 16 << 20;
  void ForgetStats(const std::vector<std::string>& skus, bool basket_total) const;
  mutable absl::Mutex stats_mu_;
  mutable absl::flat_hash_map<std::string, internal::ItemStats> stats_cache_
      ABSL_GUARDED_BY(stats_mu_);
  mutable size_t stats_cache_bytes_ ABSL_GUARDED_BY(stats_mu_) = 0;
  mutable uint64_t stats_generation_ ABSL_GUARDED_BY(stats_mu_) = 0;
  mutable std::optional<int64_t> basket_total_ ABSL_GUARDED_BY(stats_mu_);
  // Item -> partners whose pair counts changed since its list was last refreshed (each pair noted
  // under both items).
  using ChangedPairs = absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>>;
  ChangedPairs TakeChangedPairs();
  // Puts back what a refresh or rebuild that failed took, so the next one covers it.
  void NoteAgain(ChangedPairs taken);
  absl::StatusOr<int64_t> FoldChangedPairs(ChangedPairs& changed);
  absl::StatusOr<Rebuilt> RebuildFromCounts();

  absl::Mutex changed_mu_;
  ChangedPairs changed_pairs_ ABSL_GUARDED_BY(changed_mu_);
};

}  // namespace crm::recommendation
