#include "services/recommendation/recommender.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <span>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/behavior/interest.h"
#include "libs/log/log.h"
#include "services/recommendation/customer_summary.h"

namespace crm::recommendation {
namespace {

constexpr int kRankingSize = 100;
// Best sellers come from the last 30 days unless fewer than this many items sold then.
constexpr size_t kMinBestsellers = 10;
constexpr absl::Duration kBestsellerFallbackWindows[] = {
    kBestsellerWindow, absl::Hours(24 * 90), absl::Hours(24 * 365), absl::InfiniteDuration()};
// Every item of the customer's recent history (kRecentItems) may seed item-to-item.
constexpr int kMaxSeeds = 60;
// Seeds weigh by how recently they were bought: what a customer bought lately says most about what
// they buy next (tastes and ranges move within a season).
constexpr absl::Duration kSeedHalfLife = absl::Hours(24 * 60);
constexpr int kAffinityCategories = 3;
// Customers alike ("customers who shop like you"): found through the latest kBuyersPerSeed buyers
// of each item of the customer's recent history (kMaxSeeds items), the kAlikeCustomers most alike
// kept; what they bought weighs by how recently (kAlikeHalfLife), and their best kAlikeCandidates
// items are offered to the blend. On Online Retail's four rolling cut-offs (README, "Recommendation
// quality") 20 seeds lost at one cut-off; with all 60, 50-300 buyers a seed and 50-100 customers
// alike all gained at every cut-off, within about 0.03 of each other: the cheapest is kept (the
// customers' summaries read are most of its cost).
constexpr int kBuyersPerSeed = 50;
constexpr size_t kAlikeCustomers = 50;
// Items named like the customer's purchases: the best this many by name alone are read, then
// weighed by buyers^kNamedLikeDamping, so a family's staple outranks its rarely bought members.
// Chosen on the Online Retail rolling evaluation: 0.3-0.7 gained at every cut-off (1.0 lost two),
// reading 300 did too (100 lost July).
constexpr size_t kNamedLikeRead = 300;
constexpr double kNamedLikeDamping = 0.4;
constexpr absl::Duration kAlikeHalfLife = absl::Hours(24 * 60);
constexpr size_t kAlikeCandidates = 200;
// Bundle rules need at least this many baskets with both items to be believed.
constexpr int64_t kMinBundleBaskets = 2;
constexpr absl::Duration kViewHalfLife = absl::Hours(24 * 14);
// Upgrades look up at most this many items with a successor per request.
constexpr size_t kUpgradeLookups = 256;
// The last basket counts as "what the customer is buying now" for bundles on the home page for this
// long.
constexpr absl::Duration kLastBasketWindow = absl::Hours(24 * 30);

int64_t DayOf(absl::Time t) { return absl::ToUnixSeconds(t) / 86400; }

double Decay(absl::Duration age, absl::Duration half_life) {
  if (age <= absl::ZeroDuration()) return 1.0;
  return std::exp2(-absl::FDivDuration(age, half_life));
}

// How much a view says about wanting an item: a glance little, a long look more.
double DwellFactor(int max_dwell_seconds) {
  if (max_dwell_seconds < 5) return 0.3;
  if (max_dwell_seconds < 30) return 1.0;
  return 1.5;
}

// Placements about the customer, not about a page or a cart: they get "buy again" and what
// customers alike bought.
bool AboutTheCustomer(v1::Placement p) {
  return p == v1::PLACEMENT_HOME || p == v1::PLACEMENT_EMAIL || p == v1::PLACEMENT_PUSH;
}

std::string DayMonth(absl::Time t) { return absl::FormatTime("%d %B %Y", t, absl::UTCTimeZone()); }

std::string Percent(double share) { return absl::StrFormat("%.0f%%", 100 * share); }

std::vector<v1::CategoryAffinity> TopAffinities(const CustomerView& view, absl::Time now,
                                                double min_score) {
  std::vector<v1::CategoryAffinity> out;
  for (const auto& stored : view.affinity) {
    v1::CategoryAffinity a = behavior::AffinityAsOf(stored, now);
    if (a.score() >= min_score) out.push_back(std::move(a));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.score() != b.score() ? a.score() > b.score() : a.category() < b.category();
  });
  if (out.size() > static_cast<size_t>(kAffinityCategories)) out.resize(kAffinityCategories);
  return out;
}

using Ranking = BestsellerCache::Ranking;

// The first `n` best sellers of a ranking (all of them when it is shorter).
std::span<const Ranking::value_type> Leading(const Ranking& ranking, size_t n) {
  return {ranking.data(), std::min(n, ranking.size())};
}

// The orders of a non-empty ranking's best seller (at least 1): what its scores are scaled by.
double MostOrders(const Ranking& ranking) {
  return static_cast<double>(std::max<int64_t>(1, ranking.front().second.orders()));
}

// The catalog item `sku` when it can be offered: null when the catalog lacks it or it is out of
// stock.
absl::StatusOr<std::shared_ptr<const v1::CatalogItem>> InStockItem(const RecommendationStore& store,
                                                                   const std::string& sku) {
  CRM_ASSIGN_OR_RETURN(auto item, store.Item(sku));
  if (item == nullptr || !item->in_stock()) return nullptr;
  return item;
}

// An item of the customer's recent history seeding item-to-item: bought or viewed, weighing by how
// recently (and, for views, how closely).
struct Seed {
  std::string sku;
  double weight;
  bool bought;
};

// The seeds of item-to-item, strongest first (equal weights by SKU), at most kMaxSeeds.
std::vector<Seed> SeedsOf(const CustomerView& view, absl::Time now) {
  std::vector<Seed> seeds;
  for (const auto& recent : view.summary.recent()) {
    double weight = 0;
    bool bought = false;
    if (recent.has_last_bought()) {
      weight = Decay(now - api::FromTimestamp(recent.last_bought()), kSeedHalfLife);
      bought = true;
    }
    if (recent.has_last_viewed()) {
      const double w = 0.3 * DwellFactor(recent.max_dwell_seconds()) *
                       Decay(now - api::FromTimestamp(recent.last_viewed()), kViewHalfLife);
      if (w > weight) {
        weight = w;
        bought = false;
      }
    }
    if (weight > 0.01) seeds.push_back({recent.sku(), weight, bought});
  }
  std::sort(seeds.begin(), seeds.end(), [](const Seed& a, const Seed& b) {
    return a.weight != b.weight ? a.weight > b.weight : a.sku < b.sku;
  });
  if (seeds.size() > static_cast<size_t>(kMaxSeeds)) seeds.resize(kMaxSeeds);
  return seeds;
}

// What the customer's recent history holds as bought (not only viewed), latest purchase first and
// equally late ones by SKU, so the order does not depend on the order purchases were learned in
// (items of one order, orders of one instant). Discovery models leave these out: they are for "buy
// again", and left in they would take discovery slots and set the scale the blend divides a
// model's scores by.
std::vector<std::string> RecentlyBought(const CustomerView& view) {
  std::vector<std::pair<absl::Time, std::string>> latest;
  for (const auto& recent : view.summary.recent()) {
    if (recent.has_last_bought()) {
      latest.emplace_back(api::FromTimestamp(recent.last_bought()), recent.sku());
    }
  }
  std::sort(latest.begin(), latest.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  std::vector<std::string> bought;
  bought.reserve(latest.size());
  for (auto& [when, sku] : latest) bought.push_back(std::move(sku));
  return bought;
}

// The skus neighbour lists nominate (those `keep` accepts), each once in the order first seen,
// with its position: for one batched read of the candidates' own counts.
struct Nominated {
  std::vector<std::string> skus;
  absl::flat_hash_map<std::string, size_t> index;
};

Nominated NominatedBy(const std::vector<internal::Neighbours>& lists,
                      absl::FunctionRef<bool(const internal::Neighbour&)> keep) {
  Nominated out;
  for (const auto& list : lists) {
    for (const auto& n : list.items()) {
      if (!keep(n)) continue;
      if (out.index.try_emplace(n.sku(), out.skus.size()).second) out.skus.push_back(n.sku());
    }
  }
  return out;
}

// A candidate's item-to-item score: the sum over seeds, and the seed contributing most (the
// reason).
struct CfScore {
  double total = 0;
  double best = 0;
  const Seed* because = nullptr;
};

absl::flat_hash_map<std::string, CfScore> ScoreCandidates(
    const std::vector<Seed>& seeds, const std::vector<internal::ItemStats>& seed_stats,
    const std::vector<internal::Neighbours>& lists, const Nominated& nominated,
    const std::vector<internal::ItemStats>& candidate_stats) {
  absl::flat_hash_map<std::string, CfScore> scores;
  for (size_t k = 0; k < seeds.size(); ++k) {
    const Seed& seed = seeds[k];
    for (const auto& n : lists[k].items()) {
      const internal::ItemStats& theirs = candidate_stats[nominated.index.at(n.sku())];
      const double contribution = seed.weight * Affinity(n, seed_stats[k], theirs);
      if (contribution <= 0) continue;
      CfScore& s = scores[n.sku()];
      s.total += contribution;
      if (contribution > s.best) {
        s.best = contribution;
        s.because = &seed;
      }
    }
  }
  return scores;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const BestsellerCache::Ranking>> BestsellerCache::Top(
    const std::string& category, absl::Time now) {
  if (ttl_ <= absl::ZeroDuration()) return Sum(category, now);
  const int64_t day = DayOf(now);
  const auto first_sum = std::make_pair(category, day);
  {
    absl::MutexLock lock(&mu_);
    // Another call is summing this day's first ranking: wait for it rather than sum it too.
    const auto summed = [this, &first_sum]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !first_sums_.contains(first_sum);
    };
    mu_.Await(absl::Condition(&summed));
    if (auto it = entries_.find(category); it != entries_.end() && it->second.day == day) {
      Entry& entry = it->second;
      if (absl::Now() - entry.computed >= ttl_ && !entry.refreshing) {
        entry.refreshing = true;
        refresher_.Submit([this, category, now] { Refresh(category, now); });
      }
      return entry.ranking;
    }
    first_sums_.insert(first_sum);
  }
  absl::StatusOr<std::shared_ptr<const Ranking>> ranking = Sum(category, now);
  absl::MutexLock lock(&mu_);
  first_sums_.erase(first_sum);
  if (!ranking.ok()) return ranking.status();
  entries_[category] = Entry{*ranking, absl::Now(), day};
  return ranking;
}

void BestsellerCache::Refresh(const std::string& category, absl::Time now) {
  absl::StatusOr<std::shared_ptr<const Ranking>> ranking = Sum(category, now);
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(category);
  // Another day's ranking replaced the one this refreshes (the clock moved): it has none pending.
  if (it == entries_.end() || it->second.day != DayOf(now)) return;
  Entry& entry = it->second;
  entry.refreshing = false;
  if (!ranking.ok()) {
    // The stale ranking stays; the next call after the ttl tries again.
    log::Warning("best-seller refresh failed",
                 {{"category", category}, {"error", ranking.status().ToString()}});
    return;
  }
  entry.ranking = *std::move(ranking);
  entry.computed = absl::Now();
}

absl::StatusOr<std::shared_ptr<const BestsellerCache::Ranking>> BestsellerCache::Sum(
    const std::string& category, absl::Time now) const {
  // The last 30 days; when too little sold in them (a quiet shop, a clock after the data), longer
  // windows, then all time, so there are always best sellers once anything was sold.
  std::map<std::string, internal::Sold> sales;
  for (const absl::Duration window : kBestsellerFallbackWindows) {
    CRM_ASSIGN_OR_RETURN(
        auto sold,
        store_->Sales(category,
                      window == absl::InfiniteDuration() ? absl::UnixEpoch() : now - window, now));
    sales = std::move(sold);
    if (sales.size() >= kMinBestsellers) break;
  }
  auto ranking = std::make_shared<Ranking>(sales.begin(), sales.end());
  std::sort(ranking->begin(), ranking->end(), [](const auto& a, const auto& b) {
    if (a.second.orders() != b.second.orders()) return a.second.orders() > b.second.orders();
    if (a.second.units() != b.second.units()) return a.second.units() > b.second.units();
    return a.first < b.first;
  });
  if (ranking->size() > static_cast<size_t>(kRankingSize)) ranking->resize(kRankingSize);
  return std::shared_ptr<const Ranking>(std::move(ranking));
}

Recommender::Recommender(RecommendationStore* store, BestsellerCache* bestsellers, Clock* clock,
                         bool customers_alike)
    : store_(store), bestsellers_(bestsellers), clock_(clock), customers_alike_(customers_alike) {}

absl::Status Recommender::LoadSuccessors() {
  CRM_ASSIGN_OR_RETURN(auto found, store_->ItemsWithSuccessors());
  absl::MutexLock lock(&mu_);
  has_successor_ = absl::flat_hash_set<std::string>(found.begin(), found.end());
  return absl::OkStatus();
}

void Recommender::Catalogued(const std::vector<v1::CatalogItem>& items) {
  absl::MutexLock lock(&mu_);
  for (const auto& item : items) {
    if (!item.successor_of().empty()) has_successor_.insert(item.successor_of());
  }
}

std::string Recommender::NameOf(const std::string& sku) {
  auto item = store_->Item(sku);
  if (item.ok() && *item != nullptr && !(*item)->name().empty()) return (*item)->name();
  return absl::StrCat("item ", sku);
}

absl::Status Recommender::ItemCf(const CustomerView& view, absl::Time now,
                                 std::vector<Candidate>* out) {
  const std::vector<Seed> seeds = SeedsOf(view, now);
  if (seeds.empty()) return absl::OkStatus();
  std::vector<std::string> seed_skus;
  for (const Seed& seed : seeds) seed_skus.push_back(seed.sku);
  CRM_ASSIGN_OR_RETURN(auto seed_stats, store_->StatsOf(seed_skus));
  CRM_ASSIGN_OR_RETURN(auto lists, store_->NeighboursOf(seed_skus));
  for (size_t k = 0; k < lists.size(); ++k) {
    KeepStrongest(seed_stats[k], kNeighboursScoredPerSeed, lists[k]);
  }
  // Pair counts come from the lists (exact); each candidate's own counts are read now, so the score
  // depends only on the history learned, never on when lists were refreshed.
  const Nominated nominated = NominatedBy(lists, [](const internal::Neighbour&) { return true; });
  CRM_ASSIGN_OR_RETURN(auto candidate_stats, store_->StatsOf(nominated.skus));
  // Hashed, not ordered: a heavy buyer's seeds nominate thousands of candidates, and Blend orders
  // the result by score and SKU whatever order they come in.
  const absl::flat_hash_map<std::string, CfScore> scores =
      ScoreCandidates(seeds, seed_stats, lists, nominated, candidate_stats);
  const std::vector<std::string> recently_bought = RecentlyBought(view);
  const absl::flat_hash_set<std::string> bought(recently_bought.begin(), recently_bought.end());
  for (const auto& [sku, s] : scores) {
    if (bought.count(sku)) continue;
    out->push_back({sku, v1::MODEL_ITEM_CF, s.total,
                    s.because->bought ? "customers who bought {item} also bought or viewed this"
                                      : "customers who viewed {item} also bought or viewed this",
                    s.because->sku});
  }
  return absl::OkStatus();
}

absl::Status Recommender::SimilarItems(const CustomerView& view, std::vector<Candidate>* out) {
  // Each of the latest purchases counts the same (a family is bought from for months): weighing
  // them by age, as item-to-item does, scored lower in August and September of the evaluation.
  std::vector<std::string> seeds = RecentlyBought(view);
  if (seeds.empty()) return absl::OkStatus();
  const absl::flat_hash_set<std::string> bought(seeds.begin(), seeds.end());
  if (seeds.size() > static_cast<size_t>(kMaxSeeds)) seeds.resize(kMaxSeeds);
  return NamedLikeCandidates(seeds, bought, "named like {item}, which you bought", out);
}

absl::Status Recommender::NamedLikePage(const std::vector<std::string>& page,
                                        std::vector<Candidate>* out) {
  const absl::flat_hash_set<std::string> on_page(page.begin(), page.end());
  return NamedLikeCandidates(page, on_page, "named like {item}", out);
}

absl::Status Recommender::NamedLikeCandidates(const std::vector<std::string>& seeds,
                                              const absl::flat_hash_set<std::string>& exclude,
                                              const char* reason, std::vector<Candidate>* out) {
  const std::vector<NameIndex::Alike> alike =
      store_->names().NamedLike(seeds, exclude, kNamedLikeRead);
  std::vector<std::string> skus;
  skus.reserve(alike.size());
  for (const auto& a : alike) skus.push_back(a.sku);
  CRM_ASSIGN_OR_RETURN(auto stats, store_->StatsOf(skus));
  for (size_t i = 0; i < alike.size(); ++i) {
    // Never bought: nothing says the family's buyers want it.
    if (stats[i].buyers() <= 0) continue;
    out->push_back(
        {alike[i].sku, v1::MODEL_SIMILAR_ITEMS,
         alike[i].similarity * std::pow(static_cast<double>(stats[i].buyers()), kNamedLikeDamping),
         reason, alike[i].closest_seed});
  }
  return absl::OkStatus();
}

namespace {

// A customer alike, and how alike.
struct AlikeCustomer {
  double similarity;
  absl::Time latest;  // the latest purchase shared
  std::string id;
};

// The `count` customers most alike among `buyers`, and any tied with the last of them. How alike:
// the cosine of the two customers' purchases, as far as the seeds' buyers tell (the asking
// customer's own size is the same for all, so it is left out). Equally alike ones by the latest
// purchase they share, so which are kept depends on the history, not on the ids an import minted
// (the id only orders customers equal in both, who are all kept).
std::vector<AlikeCustomer> MostAlike(
    const absl::flat_hash_map<std::string, RecommendationStore::Alike>& buyers, size_t count) {
  std::vector<AlikeCustomer> alike;
  alike.reserve(buyers.size());
  for (const auto& [id, a] : buyers) {
    const double size = static_cast<double>(std::max<int64_t>(a.items_bought, 1));
    alike.push_back({a.shared / std::sqrt(size), a.latest, id});
  }
  const auto more_alike = [](const AlikeCustomer& x, const AlikeCustomer& y) {
    if (x.similarity != y.similarity) return x.similarity > y.similarity;
    return x.latest != y.latest ? x.latest > y.latest : x.id < y.id;
  };
  size_t kept = std::min(count, alike.size());
  std::partial_sort(alike.begin(), alike.begin() + kept, alike.end(), more_alike);
  if (kept > 0 && kept < alike.size()) {
    // Also every customer as alike and as late as the last kept: the id would decide between them,
    // and ids are minted at random.
    const AlikeCustomer& last = alike[kept - 1];
    const auto tied =
        std::partition(alike.begin() + kept, alike.end(), [&](const AlikeCustomer& a) {
          return a.similarity == last.similarity && a.latest == last.latest;
        });
    kept = static_cast<size_t>(tied - alike.begin());
  }
  alike.resize(kept);
  return alike;
}

// The `count` best scored skus, best first (equal scores by sku).
std::vector<std::pair<double, std::string>> BestScored(
    absl::flat_hash_map<std::string, double> scores, size_t count) {
  std::vector<std::pair<double, std::string>> best;
  best.reserve(scores.size());
  for (auto& [sku, score] : scores) best.emplace_back(score, sku);
  const size_t kept = std::min(count, best.size());
  std::partial_sort(best.begin(), best.begin() + kept, best.end(),
                    [](const auto& x, const auto& y) {
                      return x.first != y.first ? x.first > y.first : x.second < y.second;
                    });
  best.resize(kept);
  return best;
}

}  // namespace

absl::Status Recommender::SimilarCustomers(const std::string& customer_id, const CustomerView& view,
                                           absl::Time now, std::vector<Candidate>* out) {
  // The customer's latest purchases seed it, and are left out of what it offers.
  std::vector<std::string> seeds = RecentlyBought(view);
  if (seeds.empty()) return absl::OkStatus();
  const absl::flat_hash_set<std::string> bought(seeds.begin(), seeds.end());
  if (seeds.size() > static_cast<size_t>(kMaxSeeds)) seeds.resize(kMaxSeeds);
  CRM_ASSIGN_OR_RETURN(auto buyers, store_->BuyersOf(seeds, kBuyersPerSeed, now));
  buyers.erase(customer_id);
  const std::vector<AlikeCustomer> alike = MostAlike(buyers, kAlikeCustomers);
  std::vector<std::string> ids;
  for (const AlikeCustomer& a : alike) ids.push_back(a.id);
  // What they bought and the customer did not, by how alike they are and how lately.
  absl::flat_hash_map<std::string, double> scores;
  CRM_RETURN_IF_ERROR(
      store_->RecentPurchasesOf(ids, [&](size_t i, absl::string_view sku, absl::Time last_bought) {
        const absl::Duration age = now - last_bought;
        if (age < absl::ZeroDuration() || bought.contains(sku)) return;
        scores[sku] += alike[i].similarity * Decay(age, kAlikeHalfLife);
      }));
  for (auto& [score, sku] : BestScored(std::move(scores), kAlikeCandidates)) {
    out->push_back({std::move(sku), v1::MODEL_SIMILAR_CUSTOMERS, score,
                    "customers who shop like you bought this lately"});
  }
  return absl::OkStatus();
}

absl::Status Recommender::Bundles(const std::vector<std::string>& context,
                                  std::vector<Candidate>* out) {
  if (context.empty()) return absl::OkStatus();
  CRM_ASSIGN_OR_RETURN(auto baskets, store_->TotalBaskets());
  // A cart or a wholesale basket names many items: their rows are read in two batches.
  CRM_ASSIGN_OR_RETURN(auto stats, store_->StatsOf(context));
  CRM_ASSIGN_OR_RETURN(auto lists, store_->NeighboursOf(context));
  // Each candidate's own basket count is read now (the list's copy may lag), so the rule depends on
  // the history learned only.
  const Nominated nominated = NominatedBy(
      lists, [](const internal::Neighbour& n) { return n.co_purchases() >= kMinBundleBaskets; });
  CRM_ASSIGN_OR_RETURN(auto candidate_stats, store_->StatsOf(nominated.skus));
  std::map<std::string, Candidate> best;
  for (size_t k = 0; k < context.size(); ++k) {
    const std::string& sku = context[k];
    for (const auto& n : lists[k].items()) {
      if (n.co_purchases() < kMinBundleBaskets) continue;
      const int64_t with_candidate = candidate_stats[nominated.index.at(n.sku())].baskets();
      const Bundle rule = BundleRule(n.co_purchases(), stats[k].baskets(), with_candidate, baskets);
      if (rule.lift <= 1.0) continue;
      Candidate& c = best[n.sku()];
      if (rule.confidence <= c.score) continue;
      c = {n.sku(), v1::MODEL_BUNDLE, rule.confidence,
           absl::StrCat("bought together with {item} in ", Percent(rule.confidence),
                        " of its orders"),
           sku};
    }
  }
  for (auto& [sku, c] : best) out->push_back(std::move(c));
  return absl::OkStatus();
}

absl::Status Recommender::CategoryAffinity(const CustomerView& view, absl::Time now,
                                           std::vector<Candidate>* out) {
  // Interest in a category: recent browsing (decayed over two weeks, looked-at-closely weighing
  // most) plus the habit of buying there (each item bought, decayed over half a year).
  struct Interest {
    double browsing = 0;
    double buying = 0;
    bool closely = false;
  };
  std::map<std::string, Interest> interest;
  for (const auto& stored : view.affinity) {
    const v1::CategoryAffinity a = behavior::AffinityAsOf(stored, now);
    Interest& i = interest[a.category()];
    i.browsing = a.score();
    i.closely = a.engagement() == v1::ENGAGEMENT_LOOKED_CLOSELY;
  }
  for (const auto& c : view.summary.categories()) interest[c.category()].buying = HabitAsOf(c, now);
  std::vector<std::pair<double, std::string>> ranked;
  for (const auto& [category, i] : interest) {
    if (i.browsing + i.buying >= 0.3) ranked.emplace_back(-(i.browsing + i.buying), category);
  }
  std::sort(ranked.begin(), ranked.end());
  if (ranked.size() > static_cast<size_t>(kAffinityCategories)) ranked.resize(kAffinityCategories);
  if (ranked.empty()) return absl::OkStatus();
  const double strongest = -ranked.front().first;
  for (const auto& [negative, category] : ranked) {
    const Interest& i = interest[category];
    CRM_ASSIGN_OR_RETURN(auto ranking, bestsellers_->Top(category, now));
    if (ranking->empty()) continue;
    const double most = MostOrders(*ranking);
    const std::string why = i.browsing >= i.buying ? (i.closely ? ", which you looked at closely"
                                                                : ", which you browse")
                                                   : ", where you often shop";
    for (const auto& [sku, sold] : Leading(*ranking, 20)) {
      out->push_back({sku, v1::MODEL_CATEGORY_AFFINITY,
                      (-negative / strongest) * (sold.orders() / most),
                      absl::StrCat("popular in ", category, why)});
    }
  }
  return absl::OkStatus();
}

absl::Status Recommender::Popular(absl::Time now, std::vector<Candidate>* out) {
  CRM_ASSIGN_OR_RETURN(auto ranking, bestsellers_->Top("", now));
  if (ranking->empty()) return absl::OkStatus();
  const double most = MostOrders(*ranking);
  for (const auto& [sku, sold] : Leading(*ranking, 50)) {
    out->push_back({sku, v1::MODEL_BESTSELLERS, sold.orders() / most, "a best seller lately"});
  }
  return absl::OkStatus();
}

absl::Status Recommender::Occasions(const CustomerView& view, absl::Time now,
                                    std::vector<Candidate>* out) {
  std::vector<Purchase> purchases;
  for (const auto& c : view.summary.categories()) {
    for (const auto& t : c.times()) purchases.push_back({api::FromTimestamp(t), c.category()});
  }
  for (const Occasion& o : OccasionCategories(purchases, now)) {
    CRM_ASSIGN_OR_RETURN(auto ranking, bestsellers_->Top(o.category, now));
    if (ranking->empty()) continue;
    const double most = MostOrders(*ranking);
    for (const auto& [sku, sold] : Leading(*ranking, 10)) {
      // A habit of several years ranks above a single purchase around the date.
      out->push_back({sku, v1::MODEL_OCCASION, o.years + 0.5 * sold.orders() / most,
                      absl::StrCat("you bought in ", o.category, " around this time last year (",
                                   DayMonth(o.last_time), ")")});
    }
  }
  return absl::OkStatus();
}

absl::Status Recommender::Upgrades(const std::string& customer_id, const CustomerView& view,
                                   absl::Time now, std::vector<Candidate>* out) {
  // Items with a successor the customer may own: their recent purchases and, while few items have
  // successors at all, each of those (an old purchase is exactly who an upgrade is for).
  std::set<std::string> maybe_owned;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& recent : view.summary.recent()) {
      if (recent.has_last_bought() && has_successor_.contains(recent.sku()))
        maybe_owned.insert(recent.sku());
    }
    if (has_successor_.size() <= kUpgradeLookups)
      maybe_owned.insert(has_successor_.begin(), has_successor_.end());
  }
  // One batched read: the reminder sweep asks this of every customer.
  const std::vector<std::string> candidates(maybe_owned.begin(), maybe_owned.end());
  CRM_ASSIGN_OR_RETURN(auto rows, store_->Mine(customer_id, candidates));
  std::vector<std::string> owned;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const auto& mine = rows[i];
    if (mine.has_value() && mine->bought() > 0 && !mine->returned()) owned.push_back(candidates[i]);
  }
  for (const auto& sku : owned) {
    CRM_ASSIGN_OR_RETURN(auto successors, store_->Successors(sku));
    for (const auto& next : successors) {
      auto item = store_->Item(next);
      if (!item.ok()) return item.status();
      if (*item == nullptr) continue;
      const v1::CatalogItem& successor = **item;
      const absl::Time launch = successor.has_launch_time()
                                    ? api::FromTimestamp(successor.launch_time())
                                    : api::FromTimestamp(successor.update_time());
      if (launch > now || now - launch > kUpgradeNoticeWindow) continue;
      // The newer the launch, the stronger the notice.
      const double freshness = 1.0 - 0.5 * absl::FDivDuration(now - launch, kUpgradeNoticeWindow);
      out->push_back(
          {next, v1::MODEL_UPGRADE, freshness, "a newer model of {item}, which you bought", sku});
    }
  }
  return absl::OkStatus();
}

absl::Status Recommender::ColdStart(const CustomerView& view, absl::Time now,
                                    std::vector<Candidate>* out) {
  for (const auto& a : TopAffinities(view, now, 0.1)) {
    CRM_ASSIGN_OR_RETURN(auto ranking, bestsellers_->Top(a.category(), now));
    if (ranking->empty()) continue;
    const double most = MostOrders(*ranking);
    for (const auto& [sku, sold] : Leading(*ranking, 10)) {
      out->push_back({sku, v1::MODEL_COLD_START, 0.5 + 0.5 * sold.orders() / most,
                      absl::StrCat("popular in ", a.category(), ", which you looked at")});
    }
  }
  CRM_ASSIGN_OR_RETURN(auto ranking, bestsellers_->Top("", now));
  if (ranking->empty()) return absl::OkStatus();
  const double most = MostOrders(*ranking);
  for (const auto& [sku, sold] : Leading(*ranking, 30)) {
    out->push_back({sku, v1::MODEL_COLD_START, 0.5 * sold.orders() / most, "popular right now"});
  }
  return absl::OkStatus();
}

absl::Status Recommender::Recommend(const RecommendQuery& q, std::vector<v1::Recommendation>* out,
                                    std::vector<v1::Recommendation>* buy_again) {
  const absl::Time now = clock_->Now();
  CRM_ASSIGN_OR_RETURN(auto view, store_->Customer(q.customer_id));
  return RecommendFor(q, view, now, out, buy_again);
}

absl::StatusOr<std::optional<v1::Recommendation>> Recommender::Best(const std::string& customer_id,
                                                                    const CustomerView& view,
                                                                    v1::Model model,
                                                                    absl::Time now) {
  RecommendQuery q;
  q.customer_id = customer_id;
  q.placement = v1::PLACEMENT_EMAIL;
  q.count = 1;
  q.model = model;
  std::vector<v1::Recommendation> best;
  CRM_RETURN_IF_ERROR(RecommendFor(q, view, now, &best, nullptr));
  if (best.empty()) return std::nullopt;
  return std::move(best.front());
}

absl::Status Recommender::RecommendFor(const RecommendQuery& q, const CustomerView& view,
                                       absl::Time now, std::vector<v1::Recommendation>* out,
                                       std::vector<v1::Recommendation>* buy_again) {
  const bool blend = q.model == v1::MODEL_BLEND || q.model == v1::MODEL_UNSPECIFIED;
  auto want = [&](v1::Model m) { return blend || q.model == m; };
  const bool cold = !view.known || (view.summary.baskets() == 0 && view.summary.recent().empty());

  std::map<v1::Model, std::vector<Candidate>> by_model;
  if (want(v1::MODEL_ITEM_CF) && !cold) {
    CRM_RETURN_IF_ERROR(ItemCf(view, now, &by_model[v1::MODEL_ITEM_CF]));
  }
  if (want(v1::MODEL_SIMILAR_ITEMS) && !cold && AboutTheCustomer(q.placement)) {
    CRM_RETURN_IF_ERROR(SimilarItems(view, &by_model[v1::MODEL_SIMILAR_ITEMS]));
  }
  if (want(v1::MODEL_SIMILAR_ITEMS) && q.placement == v1::PLACEMENT_PRODUCT_PAGE) {
    CRM_RETURN_IF_ERROR(NamedLikePage(q.context_skus, &by_model[v1::MODEL_SIMILAR_ITEMS]));
  }
  if (customers_alike_ && want(v1::MODEL_SIMILAR_CUSTOMERS) && !cold &&
      AboutTheCustomer(q.placement)) {
    CRM_RETURN_IF_ERROR(
        SimilarCustomers(q.customer_id, view, now, &by_model[v1::MODEL_SIMILAR_CUSTOMERS]));
  }
  if (want(v1::MODEL_BUNDLE)) {
    std::vector<std::string> context = q.context_skus;
    if (context.empty() && view.summary.has_last_basket_time() &&
        now - api::FromTimestamp(view.summary.last_basket_time()) < kLastBasketWindow) {
      // Home, e-mail and push: what goes with the customer's latest order, while it is recent.
      context.assign(view.summary.last_basket_skus().begin(),
                     view.summary.last_basket_skus().end());
    }
    CRM_RETURN_IF_ERROR(Bundles(context, &by_model[v1::MODEL_BUNDLE]));
  }
  if (want(v1::MODEL_CATEGORY_AFFINITY) && view.known) {
    CRM_RETURN_IF_ERROR(CategoryAffinity(view, now, &by_model[v1::MODEL_CATEGORY_AFFINITY]));
  }
  if (want(v1::MODEL_BESTSELLERS)) {
    CRM_RETURN_IF_ERROR(Popular(now, &by_model[v1::MODEL_BESTSELLERS]));
  }
  if (want(v1::MODEL_OCCASION) && view.known) {
    CRM_RETURN_IF_ERROR(Occasions(view, now, &by_model[v1::MODEL_OCCASION]));
  }
  if (want(v1::MODEL_UPGRADE) && view.known) {
    CRM_RETURN_IF_ERROR(Upgrades(q.customer_id, view, now, &by_model[v1::MODEL_UPGRADE]));
  }
  if (want(v1::MODEL_COLD_START) && (cold || !blend)) {
    CRM_RETURN_IF_ERROR(ColdStart(view, now, &by_model[v1::MODEL_COLD_START]));
  }

  const std::vector<Candidate> ranked = Blend(by_model, q.placement, SIZE_MAX);
  CRM_RETURN_IF_ERROR(Showable(q, ranked, now, out));
  if (buy_again != nullptr && AboutTheCustomer(q.placement) && blend && view.known) {
    return BuyAgain(q, now, buy_again);
  }
  return absl::OkStatus();
}

struct Recommender::Kept {
  Candidate candidate;
  std::shared_ptr<const v1::CatalogItem> item;  // never null
};

absl::Status Recommender::Showable(const RecommendQuery& q, const std::vector<Candidate>& ranked,
                                   absl::Time now, std::vector<v1::Recommendation>* out) {
  // Best first, keep what may be shown: in the catalog, in stock, new to the customer, not shown
  // too often, not what is already on the page or in the cart. Per-customer rows are read a slice
  // at a time.
  const std::set<std::string> context(q.context_skus.begin(), q.context_skus.end());
  std::vector<Kept> kept;
  const size_t wanted = static_cast<size_t>(q.count);
  constexpr size_t kSlice = 64;
  for (size_t begin = 0; begin < ranked.size() && kept.size() < 3 * wanted; begin += kSlice) {
    const std::span<const Candidate> slice(ranked.data() + begin,
                                           std::min(ranked.size(), begin + kSlice) - begin);
    CRM_RETURN_IF_ERROR(KeepEligible(q.customer_id, context, slice, now, 3 * wanted, &kept));
  }
  CRM_RETURN_IF_ERROR(SinkOftenReturned(kept));
  // Equal scores keep the blend's order (by SKU): the same inputs give the same list.
  std::stable_sort(kept.begin(), kept.end(), [](const Kept& a, const Kept& b) {
    return a.candidate.score > b.candidate.score;
  });
  if (kept.size() > wanted) kept.resize(wanted);
  for (Kept& k : kept) {
    v1::Recommendation r;
    *r.mutable_item() = *k.item;
    r.set_model(k.candidate.model);
    r.set_score(k.candidate.score);
    r.set_reason(
        k.candidate.because.empty()
            ? std::move(k.candidate.reason)
            : absl::StrReplaceAll(k.candidate.reason, {{"{item}", NameOf(k.candidate.because)}}));
    out->push_back(std::move(r));
  }
  return absl::OkStatus();
}

absl::Status Recommender::KeepEligible(const std::string& customer_id,
                                       const std::set<std::string>& context,
                                       std::span<const Candidate> slice, absl::Time now,
                                       size_t limit, std::vector<Kept>* kept) {
  std::vector<Kept> offered;
  std::vector<std::string> skus;
  for (const Candidate& c : slice) {
    if (context.count(c.sku)) continue;
    // The cheapest checks first: catalog items are cached.
    CRM_ASSIGN_OR_RETURN(auto item, InStockItem(*store_, c.sku));
    if (item == nullptr) continue;
    offered.push_back({c, std::move(item)});
    skus.push_back(c.sku);
  }
  CRM_ASSIGN_OR_RETURN(auto mine, store_->Mine(customer_id, skus));
  CRM_ASSIGN_OR_RETURN(auto shown, store_->ShownTo(customer_id, skus));
  for (size_t i = 0; i < offered.size() && kept->size() < limit; ++i) {
    const auto& m = mine[i];
    const auto& w = shown[i];
    if (Eligible(*offered[i].item, m.has_value() ? &*m : nullptr, w.has_value() ? &*w : nullptr,
                 now)) {
      kept->push_back(std::move(offered[i]));
    }
  }
  return absl::OkStatus();
}

absl::Status Recommender::SinkOftenReturned(std::vector<Kept>& kept) {
  // Items often sent back sink (at most halved), once enough were sold to tell.
  std::vector<std::string> skus;
  for (const Kept& k : kept) skus.push_back(k.candidate.sku);
  CRM_ASSIGN_OR_RETURN(auto stats, store_->StatsOf(skus));
  for (size_t i = 0; i < kept.size(); ++i) {
    const internal::ItemStats& st = stats[i];
    if (st.units() >= 5) {
      const double return_rate =
          static_cast<double>(st.returned_units()) / static_cast<double>(st.units());
      kept[i].candidate.score *= 1.0 - std::min(0.5, return_rate);
    }
  }
  return absl::OkStatus();
}

absl::Status Recommender::BuyAgain(const RecommendQuery& q, absl::Time now,
                                   std::vector<v1::Recommendation>* out) {
  CRM_ASSIGN_OR_RETURN(auto days, store_->BuyingDays(q.customer_id));
  std::vector<std::string> repeated;
  for (const auto& [sku, bought_on] : days) {
    if (bought_on.size() >= 2) repeated.push_back(sku);
  }
  // The basket read is bounded; each item's own row knows its latest purchase exactly.
  auto rows = store_->Mine(q.customer_id, repeated);
  if (!rows.ok()) return rows.status();
  const int64_t today = DayOf(now);
  struct Due {
    Rhythm rhythm;
    std::string sku;
    bool returned;
  };
  std::vector<Due> due;
  for (size_t i = 0; i < repeated.size(); ++i) {
    std::vector<int64_t>& bought_on = (days)[repeated[i]];
    const auto& row = (*rows)[i];
    if (row.has_value() && row->has_last_bought()) {
      const int64_t last = DayOf(api::FromTimestamp(row->last_bought()));
      if (last > bought_on.back()) bought_on.push_back(last);
    }
    const std::optional<Rhythm> rhythm = RepurchaseRhythm(bought_on, today);
    if (rhythm.has_value())
      due.push_back({*rhythm, repeated[i], row.has_value() && row->returned()});
  }
  std::sort(due.begin(), due.end(), [](const Due& a, const Due& b) {
    return a.rhythm.score != b.rhythm.score ? a.rhythm.score > b.rhythm.score : a.sku < b.sku;
  });
  const std::set<std::string> context(q.context_skus.begin(), q.context_skus.end());
  for (size_t i = 0; i < due.size() && out->size() < static_cast<size_t>(q.count); ++i) {
    const auto& [rhythm, sku, returned] = due[i];
    if (context.count(sku) || returned) continue;
    CRM_ASSIGN_OR_RETURN(auto item, InStockItem(*store_, sku));
    if (item == nullptr) continue;
    v1::Recommendation r;
    *r.mutable_item() = *item;
    r.set_model(v1::MODEL_BUY_AGAIN);
    r.set_score(rhythm.score);
    r.set_reason(absl::StrCat("you buy this about every ", rhythm.every_days, " days; last on ",
                              DayMonth(absl::FromUnixSeconds(rhythm.last_day * 86400))));
    out->push_back(std::move(r));
  }
  return absl::OkStatus();
}

absl::Status Recommender::RelatedItems(const std::string& sku, int count,
                                       v1::RelatedItemsResponse* out) {
  CRM_ASSIGN_OR_RETURN(auto self, store_->Stats(sku));
  auto list = store_->NeighboursOf(sku);
  if (!list.ok()) return list.status();
  struct Scored {
    std::string sku;
    internal::CoCounts co;
    double similarity;
  };
  std::vector<Scored> scored;
  for (const auto& n : list->items()) {
    // The stored list only nominates; the score is computed from the current counts.
    auto co = store_->Co(sku, n.sku());
    if (!co.ok()) return co.status();
    auto other = store_->Stats(n.sku());
    if (!other.ok()) return other.status();
    const double s = Similarity(*co, self, *other);
    if (s > 0) scored.push_back({n.sku(), *co, s});
  }
  std::sort(scored.begin(), scored.end(), [](const Scored& a, const Scored& b) {
    return a.similarity != b.similarity ? a.similarity > b.similarity : a.sku < b.sku;
  });
  for (const Scored& s : scored) {
    if (out->items_size() >= count) break;
    CRM_ASSIGN_OR_RETURN(auto item, InStockItem(*store_, s.sku));
    if (item == nullptr) continue;
    v1::RelatedItem* r = out->add_items();
    *r->mutable_item() = *item;
    r->set_similarity(s.similarity);
    r->set_co_purchases(s.co.buyers());
    r->set_co_views(s.co.views());
  }
  return absl::OkStatus();
}

absl::Status Recommender::BoughtTogether(const std::string& sku, int count, int64_t min_baskets,
                                         v1::BoughtTogetherResponse* out) {
  CRM_ASSIGN_OR_RETURN(auto self, store_->Stats(sku));
  auto baskets = store_->TotalBaskets();
  if (!baskets.ok()) return baskets.status();
  auto list = store_->NeighboursOf(sku);
  if (!list.ok()) return list.status();
  struct Rule {
    std::string sku;
    int64_t together;
    Bundle bundle;
  };
  std::vector<Rule> rules;
  for (const auto& n : list->items()) {
    auto co = store_->Co(sku, n.sku());
    if (!co.ok()) return co.status();
    if (co->purchases() < min_baskets) continue;
    auto other = store_->Stats(n.sku());
    if (!other.ok()) return other.status();
    const Bundle b = BundleRule(co->purchases(), self.baskets(), other->baskets(), *baskets);
    if (b.lift > 1.0) rules.push_back({n.sku(), co->purchases(), b});
  }
  std::sort(rules.begin(), rules.end(), [](const Rule& a, const Rule& b) {
    if (a.bundle.lift != b.bundle.lift) return a.bundle.lift > b.bundle.lift;
    if (a.bundle.confidence != b.bundle.confidence)
      return a.bundle.confidence > b.bundle.confidence;
    return a.sku < b.sku;
  });
  for (const Rule& r : rules) {
    if (out->rules_size() >= count) break;
    CRM_ASSIGN_OR_RETURN(auto item, InStockItem(*store_, r.sku));
    if (item == nullptr) continue;
    v1::BundleRule* rule = out->add_rules();
    *rule->mutable_item() = *item;
    rule->set_support(r.bundle.support);
    rule->set_confidence(r.bundle.confidence);
    rule->set_lift(r.bundle.lift);
    rule->set_baskets_together(r.together);
  }
  return absl::OkStatus();
}

absl::Status Recommender::BestSellers(const std::string& category, int count,
                                      v1::BestSellersResponse* out) {
  CRM_ASSIGN_OR_RETURN(auto ranking, bestsellers_->Top(category, clock_->Now()));
  for (const auto& [sku, sold] : *ranking) {
    if (out->items_size() >= count) break;
    CRM_ASSIGN_OR_RETURN(auto item, InStockItem(*store_, sku));
    if (item == nullptr) continue;
    v1::BestSeller* b = out->add_items();
    *b->mutable_item() = *item;
    b->set_units(sold.units());
    b->set_orders(sold.orders());
  }
  return absl::OkStatus();
}

}  // namespace crm::recommendation
