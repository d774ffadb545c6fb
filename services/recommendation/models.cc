#include "services/recommendation/models.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "libs/api/validate.h"
#include "libs/sharding/hash.h"

namespace crm::recommendation {

double Similarity(const internal::CoCounts& co, const internal::ItemStats& a,
                  const internal::ItemStats& b) {
  double s = 0;
  if (co.buyers() > 0 && a.buyers() > 0 && b.buyers() > 0) {
    s += co.buyers() / std::sqrt(static_cast<double>(a.buyers()) * static_cast<double>(b.buyers()));
  }
  if (co.views() > 0 && a.viewers() > 0 && b.viewers() > 0) {
    s += 0.3 * co.views() /
         std::sqrt(static_cast<double>(a.viewers()) * static_cast<double>(b.viewers()));
  }
  // Two items seen together once are "identical" by cosine; shrink what few customers support.
  const double support = static_cast<double>(co.buyers() + co.views());
  return s * support / (support + kSimilarityShrinkage);
}

Bundle BundleRule(int64_t together, int64_t with_a, int64_t with_b, int64_t baskets) {
  Bundle r;
  if (baskets <= 0 || with_a <= 0 || with_b <= 0) return r;
  r.support = static_cast<double>(together) / static_cast<double>(baskets);
  r.confidence = static_cast<double>(together) / static_cast<double>(with_a);
  r.lift = r.confidence / (static_cast<double>(with_b) / static_cast<double>(baskets));
  return r;
}

double Affinity(const internal::Neighbour& n, const internal::ItemStats& seed,
                const internal::ItemStats& candidate) {
  double a = 0;
  if (n.co_buyers() > 0 && seed.buyers() > 0 && candidate.buyers() > 0) {
    a += n.co_buyers() / (std::pow(static_cast<double>(candidate.buyers()), kPopularityDamping) *
                          std::pow(static_cast<double>(seed.buyers()), 1 - kPopularityDamping));
  }
  if (n.co_views() > 0 && seed.viewers() > 0 && candidate.viewers() > 0) {
    a += 0.3 * n.co_views() /
         std::sqrt(static_cast<double>(seed.viewers()) * static_cast<double>(candidate.viewers()));
  }
  return a;
}

internal::Neighbour AsNeighbour(const std::string& partner, const internal::CoCounts& co,
                                const internal::ItemStats& theirs) {
  internal::Neighbour n;
  n.set_sku(partner);
  n.set_co_purchases(co.purchases());
  n.set_co_views(co.views());
  n.set_co_buyers(co.buyers());
  n.set_baskets(theirs.baskets());
  n.set_viewers(theirs.viewers());
  n.set_buyers(theirs.buyers());
  return n;
}

double SimilarityTo(const internal::ItemStats& self, const internal::Neighbour& n) {
  internal::CoCounts co;
  co.set_buyers(n.co_buyers());
  co.set_views(n.co_views());
  internal::ItemStats other;
  other.set_buyers(n.buyers());
  other.set_viewers(n.viewers());
  return Similarity(co, self, other);
}

void KeepStrongest(const internal::ItemStats& self, int count, internal::Neighbours& list) {
  if (list.items_size() <= count) return;
  std::vector<std::pair<double, const internal::Neighbour*>> ranked;
  ranked.reserve(static_cast<size_t>(list.items_size()));
  for (const internal::Neighbour& n : list.items()) ranked.emplace_back(SimilarityTo(self, n), &n);
  std::partial_sort(
      ranked.begin(), ranked.begin() + count, ranked.end(), [](const auto& x, const auto& y) {
        return x.first != y.first ? x.first > y.first : x.second->sku() < y.second->sku();
      });
  internal::Neighbours strongest;
  for (int i = 0; i < count; ++i) *strongest.add_items() = *ranked[static_cast<size_t>(i)].second;
  list = std::move(strongest);
}

namespace {

// Whether a stored count is still good enough to rank by: equal, or within an eighth once it is
// large.
bool Close(int64_t stored, int64_t now) {
  if (stored == now) return true;
  const int64_t larger = std::max(stored, now);
  return larger >= 16 && std::abs(stored - now) * 8 < larger;
}

}  // namespace

bool OfferNeighbour(internal::Neighbours& list, const internal::ItemStats& self,
                    const internal::Neighbour& other) {
  auto* items = list.mutable_items();
  const bool gone = SharesNothing(other.co_purchases(), other.co_views(), other.co_buyers());
  for (int i = 0; i < items->size(); ++i) {
    const internal::Neighbour& n = items->Get(i);
    if (n.sku() != other.sku()) continue;
    if (gone) {
      items->DeleteSubrange(i, 1);
      return true;
    }
    // Pair counts are kept exact (they change only when the pair is seen again, and Recommend
    // scores with them, so the same history gives the same answers whenever refreshes ran). The
    // neighbour's own counts move on every sale of it and only rank candidates here, so they are
    // rewritten when they moved materially.
    if (n.co_purchases() == other.co_purchases() && n.co_buyers() == other.co_buyers() &&
        n.co_views() == other.co_views() && Close(n.baskets(), other.baskets()) &&
        Close(n.buyers(), other.buyers()) && Close(n.viewers(), other.viewers())) {
      return false;
    }
    *items->Mutable(i) = other;
    return true;
  }
  if (gone) return false;
  if (items->size() < kMaxNeighbours) {
    *items->Add() = other;
    return true;
  }
  // Replace the weakest candidate when the newcomer is stronger.
  int weakest = -1;
  double weakest_score = SimilarityTo(self, other);
  for (int i = 0; i < items->size(); ++i) {
    const double s = SimilarityTo(self, items->Get(i));
    if (s < weakest_score) {
      weakest_score = s;
      weakest = i;
    }
  }
  if (weakest < 0) return false;
  *items->Mutable(weakest) = other;
  return true;
}

BestNeighbours::BestNeighbours(const std::vector<std::string>& skus,
                               const std::vector<internal::ItemStats>& stats)
    : skus_(skus), stats_(stats), best_(skus.size()) {}

bool BestNeighbours::Better(const Candidate& x, const Candidate& y) const {
  return x.score != y.score ? x.score > y.score : skus_[x.partner] < skus_[y.partner];
}

bool BestNeighbours::Offer(uint32_t a, uint32_t b, const internal::CoCounts& co) {
  if (SharesNothing(co.purchases(), co.views(), co.buyers())) return false;
  OfferTo(a, b, co);
  OfferTo(b, a, co);
  return true;
}

void BestNeighbours::OfferTo(uint32_t item, uint32_t partner, const internal::CoCounts& co) {
  // Similarity reads the same counts SimilarityTo would take from the stored neighbour.
  const Candidate c{static_cast<float>(Similarity(co, stats_[item], stats_[partner])), partner,
                    static_cast<int32_t>(co.purchases()), static_cast<int32_t>(co.views()),
                    static_cast<int32_t>(co.buyers())};
  const auto better = [this](const Candidate& x, const Candidate& y) { return Better(x, y); };
  std::vector<Candidate>& heap = best_[item];
  if (heap.size() < static_cast<size_t>(kMaxNeighbours)) {
    heap.push_back(c);
    std::push_heap(heap.begin(), heap.end(), better);
  } else if (Better(c, heap.front())) {
    std::pop_heap(heap.begin(), heap.end(), better);
    heap.back() = c;
    std::push_heap(heap.begin(), heap.end(), better);
  }
}

internal::Neighbours BestNeighbours::TakeList(uint32_t item) {
  std::vector<Candidate> heap = std::move(best_[item]);
  std::sort_heap(heap.begin(), heap.end(),
                 [this](const Candidate& x, const Candidate& y) { return Better(x, y); });
  internal::Neighbours list;
  for (const Candidate& c : heap) {
    internal::CoCounts co;
    co.set_purchases(c.co_purchases);
    co.set_views(c.co_views);
    co.set_buyers(c.co_buyers);
    *list.add_items() = AsNeighbour(skus_[c.partner], co, stats_[c.partner]);
  }
  return list;
}

std::vector<std::string> ItemsToPair(const internal::Basket& basket) {
  std::vector<std::string> skus;
  skus.reserve(basket.lines_size());
  for (const auto& line : basket.lines()) skus.push_back(line.sku());
  std::sort(skus.begin(), skus.end());
  skus.erase(std::unique(skus.begin(), skus.end()), skus.end());
  if (skus.size() <= static_cast<size_t>(kMaxItemsPaired)) return skus;
  const std::string draw = basket.paired_by_content()
                               ? absl::StrCat(sharding::StableHash64(absl::StrJoin(skus, "\n")))
                               : basket.order_id();
  std::vector<std::pair<uint64_t, std::string>> ranked;
  ranked.reserve(skus.size());
  for (auto& sku : skus)
    ranked.emplace_back(sharding::StableHash64(absl::StrCat(draw, "/", sku)), std::move(sku));
  std::sort(ranked.begin(), ranked.end());
  ranked.resize(kMaxItemsPaired);
  std::vector<std::string> out;
  for (auto& [hash, sku] : ranked) out.push_back(std::move(sku));
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<Occasion> OccasionCategories(const std::vector<Purchase>& purchases, absl::Time now) {
  const absl::TimeZone utc = absl::UTCTimeZone();
  const absl::CivilDay today = absl::ToCivilDay(now, utc);
  std::map<std::string, bool> recent;
  std::map<std::string, Occasion> occasion;
  std::map<std::string, std::set<int64_t>> years;
  for (const auto& p : purchases) {
    if (p.category.empty()) continue;
    if (now - p.time < absl::Hours(24 * 60)) recent[p.category] = true;
    const absl::CivilDay day = absl::ToCivilDay(p.time, utc);
    if (day.year() >= today.year()) continue;
    // The same date this year (29 February becomes 1 March).
    const absl::CivilDay this_year(today.year(), day.month(), day.day());
    const int64_t ahead = this_year - today;
    if (ahead < -15 || ahead > 30) continue;
    auto [it, inserted] = occasion.try_emplace(p.category, Occasion{p.category, p.time, 0});
    if (!inserted && p.time > it->second.last_time) it->second.last_time = p.time;
    years[p.category].insert(day.year());
  }
  std::vector<Occasion> out;
  for (auto& [category, o] : occasion) {
    if (recent.count(category)) continue;
    o.years = static_cast<int>(years[category].size());
    out.push_back(o);
  }
  return out;
}

bool Eligible(const v1::CatalogItem& item, const internal::CustomerItem* mine,
              const internal::Shown* shown, absl::Time now) {
  if (!item.in_stock()) return false;
  if (item.has_launch_time() && api::FromTimestamp(item.launch_time()) > now) return false;
  // Discovery is for items new to the customer: what they bought before belongs to "buy again".
  if (mine != nullptr && (mine->returned() || mine->bought() > 0)) return false;
  if (shown != nullptr && shown->clicks() == 0 && shown->impressions() >= kImpressionCap &&
      now - api::FromTimestamp(shown->window_start()) < kImpressionWindow) {
    return false;
  }
  return true;
}

std::optional<Rhythm> RepurchaseRhythm(const std::vector<int64_t>& days, int64_t today) {
  if (days.size() < 2) return std::nullopt;
  std::vector<int64_t> gaps;
  for (size_t i = 1; i < days.size(); ++i) gaps.push_back(days[i] - days[i - 1]);
  std::sort(gaps.begin(), gaps.end());
  const int64_t gap = std::max<int64_t>(1, gaps[gaps.size() / 2]);
  const double since = static_cast<double>(today - days.back()) / static_cast<double>(gap);
  if (since < 0.75 || since > 3.0) return std::nullopt;
  const double n = static_cast<double>(days.size());
  // Right on time (up to half a gap late) counts fully, fading to 0.3 at three gaps.
  const double timing = since <= 1.5 ? 1.0 : 1.0 - 0.7 * (since - 1.5) / 1.5;
  Rhythm r;
  r.score = (n - 1) / (n + 1) * timing;
  r.every_days = static_cast<int>(gap);
  r.last_day = days.back();
  return r;
}

namespace {

// One model's weight in one placement.
struct WeightRow {
  v1::Placement placement;
  v1::Model model;
  double weight;
};

// Each placement's rows: the models it favours or plays down, then MODEL_UNSPECIFIED for every
// other model.
constexpr WeightRow kPlacementWeights[] = {
    {v1::PLACEMENT_PRODUCT_PAGE, v1::MODEL_ITEM_CF, 2.0},
    {v1::PLACEMENT_PRODUCT_PAGE, v1::MODEL_BUNDLE, 1.5},
    // Items named like the one on the page: 0.5-2.0 lifted every cut-off of crm-reco-eval's product
    // pages (wholesale baskets hold a family's prints together), 1.0 the middle.
    {v1::PLACEMENT_PRODUCT_PAGE, v1::MODEL_SIMILAR_ITEMS, 1.0},
    {v1::PLACEMENT_PRODUCT_PAGE, v1::MODEL_CATEGORY_AFFINITY, 0.4},
    {v1::PLACEMENT_PRODUCT_PAGE, v1::MODEL_BESTSELLERS, 0.2},
    {v1::PLACEMENT_PRODUCT_PAGE, v1::MODEL_COLD_START, 0.2},
    {v1::PLACEMENT_PRODUCT_PAGE, v1::MODEL_UNSPECIFIED, 0.5},

    {v1::PLACEMENT_CART, v1::MODEL_BUNDLE, 3.0},
    {v1::PLACEMENT_CART, v1::MODEL_ITEM_CF, 1.0},
    {v1::PLACEMENT_CART, v1::MODEL_BESTSELLERS, 0.2},
    {v1::PLACEMENT_CART, v1::MODEL_COLD_START, 0.2},
    {v1::PLACEMENT_CART, v1::MODEL_UNSPECIFIED, 0.4},

    {v1::PLACEMENT_EMAIL, v1::MODEL_UPGRADE, 3.0},
    {v1::PLACEMENT_EMAIL, v1::MODEL_OCCASION, 3.0},
    {v1::PLACEMENT_EMAIL, v1::MODEL_ITEM_CF, 1.5},
    {v1::PLACEMENT_EMAIL, v1::MODEL_SIMILAR_CUSTOMERS, 1.5},
    {v1::PLACEMENT_EMAIL, v1::MODEL_SIMILAR_ITEMS, 0.6},
    {v1::PLACEMENT_EMAIL, v1::MODEL_CATEGORY_AFFINITY, 0.8},
    {v1::PLACEMENT_EMAIL, v1::MODEL_UNSPECIFIED, 0.3},

    {v1::PLACEMENT_HOME, v1::MODEL_UPGRADE, 3.0},
    {v1::PLACEMENT_HOME, v1::MODEL_OCCASION, 2.5},
    {v1::PLACEMENT_HOME, v1::MODEL_ITEM_CF, 2.0},
    {v1::PLACEMENT_HOME, v1::MODEL_SIMILAR_CUSTOMERS, 2.0},
    {v1::PLACEMENT_HOME, v1::MODEL_BUNDLE, 1.0},
    // 0.4-1.0 gained at every cut-off of the Online Retail rolling evaluation (1.2 left one level).
    {v1::PLACEMENT_HOME, v1::MODEL_SIMILAR_ITEMS, 0.8},
    {v1::PLACEMENT_HOME, v1::MODEL_CATEGORY_AFFINITY, 1.0},
    {v1::PLACEMENT_HOME, v1::MODEL_COLD_START, 0.5},
    {v1::PLACEMENT_HOME, v1::MODEL_UNSPECIFIED, 0.3},
};

}  // namespace

double PlacementWeight(v1::Placement placement, v1::Model model) {
  // Placements without rows of their own (push) weigh as home.
  if (placement != v1::PLACEMENT_PRODUCT_PAGE && placement != v1::PLACEMENT_CART &&
      placement != v1::PLACEMENT_EMAIL) {
    placement = v1::PLACEMENT_HOME;
  }
  double others = 0;
  for (const WeightRow& row : kPlacementWeights) {
    if (row.placement != placement) continue;
    if (row.model == model) return row.weight;
    if (row.model == v1::MODEL_UNSPECIFIED) others = row.weight;
  }
  return others;
}

namespace {

// A SKU's blended score, and the candidate contributing most to it (its model and reason), which
// is copied once, into the result.
struct Mix {
  double total = 0;
  double best = -std::numeric_limits<double>::infinity();
  const Candidate* top = nullptr;  // set by the SKU's first candidate
};

// The mixes best first (score, then SKU), at most `count`. A heavy buyer's blend ranks thousands
// of SKUs: the sort moves pointers, not candidates.
std::vector<const Mix*> Ranked(const absl::flat_hash_map<absl::string_view, Mix>& mixed,
                               size_t count) {
  std::vector<const Mix*> ranked;
  ranked.reserve(mixed.size());
  for (const auto& [sku, m] : mixed) ranked.push_back(&m);
  const auto before = [](const Mix* a, const Mix* b) {
    return a->total != b->total ? a->total > b->total : a->top->sku < b->top->sku;
  };
  std::sort(ranked.begin(), ranked.end(), before);
  if (ranked.size() > count) ranked.resize(count);
  return ranked;
}

}  // namespace

std::vector<Candidate> Blend(const std::map<v1::Model, std::vector<Candidate>>& by_model,
                             v1::Placement placement, size_t count) {
  size_t offered = 0;
  for (const auto& [model, candidates] : by_model) offered += candidates.size();
  // Keyed by views of `by_model`'s SKUs; the order of the result is set by Ranked.
  absl::flat_hash_map<absl::string_view, Mix> mixed;
  mixed.reserve(offered);
  for (const auto& [model, candidates] : by_model) {
    double max = 0;
    for (const auto& c : candidates) max = std::max(max, c.score);
    if (max <= 0) continue;
    const double weight = PlacementWeight(placement, model);
    for (const Candidate& c : candidates) {
      const double contribution = weight * c.score / max;
      Mix& m = mixed[c.sku];
      m.total += contribution;
      if (contribution > m.best) {
        m.best = contribution;
        m.top = &c;
      }
    }
  }
  std::vector<Candidate> out;
  out.reserve(std::min(count, mixed.size()));
  for (const Mix* m : Ranked(mixed, count)) {
    out.push_back(*m->top);
    out.back().score = m->total;
  }
  return out;
}

std::string ModelName(v1::Model model) {
  const std::string n = v1::Model_Name(model);
  return absl::AsciiStrToLower(n.rfind("MODEL_", 0) == 0 ? n.substr(6) : n);
}

}  // namespace crm::recommendation
