// The recommendation models as pure functions: item-to-item similarity (cosine over buyers and
// viewers, so best sellers do not win just by being everywhere) and the popularity-damped affinity
// Recommend scores with, association rules for bundles (support, confidence, lift), occasions (a
// category bought around this date in past years), upgrades, repurchase rhythms (buy again), the
// one SKU rule, and the blend per placement with the filters that keep recommendations fit to show.
// No storage, no gRPC.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/internal/recommendation_storage.pb.h"
#include "crm/v1/recommendation.pb.h"
#include "libs/api/validate.h"

namespace crm::recommendation {

inline constexpr int kMaxNeighbours = 40;
// A customer's item-to-item answer scores, of each seed's list, only the strongest this many. Fewer
// but closer neighbours scored higher at every rolling cut-off of Online Retail (deterministic
// runs, lists rebuilt: +0.0006 to +0.0047 NDCG@10 over all 40, +0.0015 to +0.0028 with 20) and on
// the synthetic shop. The lists keep 40 for the product page's related items and the bundles.
inline constexpr int kNeighboursScoredPerSeed = 10;
// Baskets larger than this pair each item with this many others only (wholesale orders of hundreds
// of lines would otherwise cost quadratic time and say little about what goes together). 20 instead
// of 40 halves the pairs learned from Online Retail (2.9 to 1.3 million) with NDCG@10 unchanged at
// every rolling cut-off (within +-0.0015).
inline constexpr int kMaxItemsPaired = 20;
// A first view is paired with at most this many items the customer first viewed in the day before
// it.
inline constexpr int kMaxViewsPaired = 10;
// A first purchase of an item is paired with at most this many items the customer bought for the
// first time before it (at any time: "customers who bought A also bought B").
inline constexpr int kMaxPurchasesPaired = 20;
// A first purchase in a basket of more than this many distinct items (a reseller restocking a
// range) makes the customer a buyer of the item but pairs it with nothing bought before: which
// items a wide restock holds says little about what goes with the customer's earlier purchases.
// On Online Retail's four rolling cut-offs NDCG@10 rose 0.2-2.8% at each (README "Recommendation
// quality"); in an offline replay every limit from 35 to 50 gained at each cut-off, 20 lost at one.
inline constexpr int kWholesaleBasketLines = 40;
inline constexpr absl::Duration kCoViewWindow = absl::Hours(24);
inline constexpr absl::Duration kBestsellerWindow = absl::Hours(24 * 30);
// An item shown this often in a week without a click is not shown again that week.
inline constexpr int kImpressionCap = 5;
// Past buyers hear about a successor for this long after it launches.
inline constexpr absl::Duration kUpgradeNoticeWindow = absl::Hours(24 * 180);
inline constexpr absl::Duration kImpressionWindow = absl::Hours(24 * 7);

// The one rule for SKUs, wherever they come from (catalog, stock, requests, purchase and browsing
// events): 1-128 characters of valid UTF-8, not blank, no control characters. Spaces inside are
// fine ("BANK CHARGES"). INVALID_ARGUMENT naming `field` otherwise.
using api::ValidateSku;
inline bool IsValidSku(absl::string_view sku) { return ValidateSku("sku", sku).ok(); }

// Similarity from n shared baskets or viewers is scaled by n / (n + this).
inline constexpr double kSimilarityShrinkage = 2.0;

// Item-to-item scores a candidate co-buyers / (buyers of the candidate^d × buyers of the
// seed^(1-d)): d = 0.5 is the cosine; a larger d damps popular candidates, which everyone is shown
// anyway (best sellers blend in separately), in favour of the specific companions of what the
// customer bought.
inline constexpr double kPopularityDamping = 0.6;

// How strongly buying (or viewing) `seed` points to its neighbour `n` (whose own counts are
// `candidate`): co-buyers damped by kPopularityDamping, plus 0.3 × the cosine of their viewers, as
// in Similarity().
double Affinity(const internal::Neighbour& n, const internal::ItemStats& seed,
                const internal::ItemStats& candidate);

// Blended similarity of two items: cosine of their buyers plus 0.3 × cosine of their viewers,
// shrunk when few customers support it. (Baskets shared are what bundles measure, with lift.)
double Similarity(const internal::CoCounts& co, const internal::ItemStats& a,
                  const internal::ItemStats& b);

struct Bundle {
  double support = 0;
  double confidence = 0;
  double lift = 0;
};
// Rule "a -> b" over `baskets` baskets.
Bundle BundleRule(int64_t together, int64_t baskets_with_a, int64_t baskets_with_b,
                  int64_t baskets);

// A pair whose counts all fell to zero (its customers erased) is no neighbour.
inline bool SharesNothing(int64_t co_purchases, int64_t co_views, int64_t co_buyers) {
  return co_purchases <= 0 && co_views <= 0 && co_buyers <= 0;
}
// `partner` as a candidate for an item's neighbour list: the pair's counts and its own.
internal::Neighbour AsNeighbour(const std::string& partner, const internal::CoCounts& co,
                                const internal::ItemStats& theirs);
// Similarity of `self` to a neighbour from the counts stored with it (for ranking candidates).
double SimilarityTo(const internal::ItemStats& self, const internal::Neighbour& n);
// Leaves in `list` (the neighbours of the item whose counts are `self`) its `count` strongest by
// SimilarityTo, strongest first (equal ones by sku); a list no longer than that is left as it is.
void KeepStrongest(const internal::ItemStats& self, int count, internal::Neighbours& list);
// Keeps `other` in `self`'s candidate list when it is among the best `kMaxNeighbours` (an existing
// entry for the same item is replaced by the newer counts once they moved materially, or removed
// when they fell to zero). Returns whether the list changed.
bool OfferNeighbour(internal::Neighbours& list, const internal::ItemStats& self,
                    const internal::Neighbour& other);

// Every item's neighbour list from scratch: offered every pair once, it keeps each item's best
// kMaxNeighbours partners by Similarity, ties by sku, so the lists depend on the counts alone, not
// on the order pairs come in. 20 bytes a kept candidate: memory is bounded by items ×
// kMaxNeighbours (40 MB at 50,000 items), whatever the number of pairs. Not thread-safe.
class BestNeighbours {
 public:
  // Items are numbered by their place in `skus` and `stats` (both outlive this).
  BestNeighbours(const std::vector<std::string>& skus,
                 const std::vector<internal::ItemStats>& stats);
  // Items `a` and `b` were seen together `co`: offered to both lists, unless they share nothing
  // (then false).
  bool Offer(uint32_t a, uint32_t b, const internal::CoCounts& co);
  // Item `item`'s list, best first (empty: no partner). Once per item, after every Offer.
  internal::Neighbours TakeList(uint32_t item);

 private:
  struct Candidate {
    float score;
    uint32_t partner;
    int32_t co_purchases, co_views, co_buyers;
  };
  // Better first: a higher score, then the smaller sku.
  bool Better(const Candidate& x, const Candidate& y) const;
  void OfferTo(uint32_t item, uint32_t partner, const internal::CoCounts& co);

  const std::vector<std::string>& skus_;
  const std::vector<internal::ItemStats>& stats_;
  // Per item, heaps with the worst kept candidate on top.
  std::vector<std::vector<Candidate>> best_;
};

// The distinct items of a basket that are paired with each other: all of them, or for a basket of
// more than kMaxItemsPaired items a fixed pseudo-random choice of that many. The choice hashes the
// basket's items, so the same history pairs the same items whatever ids its orders were minted
// (at random, on import too), and erasure takes back exactly the pairs that were added.
std::vector<std::string> ItemsToPair(const internal::Basket& basket);

struct Purchase {
  absl::Time time;
  std::string category;
};
struct Occasion {
  std::string category;
  // The past purchase that makes it an occasion (the latest one).
  absl::Time last_time;
  // In how many earlier years (a habit of several years is a stronger reminder than one purchase).
  int years = 0;
};
// Categories the customer bought in around this date in an earlier year: that date falls between 15
// days ago and 30 days ahead this year, and nothing in the category was bought in the last 60 days.
std::vector<Occasion> OccasionCategories(const std::vector<Purchase>& purchases, absl::Time now);

// Whether an item may be recommended to the customer now as a discovery: in stock, launched, never
// bought nor returned by them, and not shown kImpressionCap times this week without a click.
bool Eligible(const v1::CatalogItem& item, const internal::CustomerItem* mine,
              const internal::Shown* shown, absl::Time now);

// A repurchase rhythm: the item was bought on several days, about `every_days` apart.
struct Rhythm {
  double score = 0;  // how due and how regular, 0-1
  int every_days = 0;
  int64_t last_day = 0;
};
// Buy-again for an item bought on `days` (distinct Unix day numbers, ascending) as of `today`:
// nothing when it was bought on fewer than two days, when less than 3/4 of its usual gap (the
// median) has passed since the last time (not due yet), or more than three gaps (a habit given up).
// More buying days and being right on time rank higher.
std::optional<Rhythm> RepurchaseRhythm(const std::vector<int64_t>& days, int64_t today);

struct Candidate {
  std::string sku;
  v1::Model model = v1::MODEL_UNSPECIFIED;
  double score = 0;
  // Shown to the customer; "{item}" stands for the name of `because` (filled in only for what is
  // shown).
  std::string reason;
  std::string because;
};

// Model weights per placement (what each placement is for).
double PlacementWeight(v1::Placement placement, v1::Model model);

// Blends each model's candidates: scores are scaled to the model's best, weighted for the placement
// and summed per item; the item keeps the reason of the model that contributed most. Best first,
// `count` items.
std::vector<Candidate> Blend(const std::map<v1::Model, std::vector<Candidate>>& by_model,
                             v1::Placement placement, size_t count);

std::string ModelName(v1::Model model);

}  // namespace crm::recommendation
