// The recommendation models as pure functions: similarity that does not just echo best sellers,
// bundle rules, neighbour lists, basket pairing, occasions, the filters and the blend.
#include <algorithm>
#include <cmath>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "catch2/catch.hpp"
#include "libs/api/validate.h"
#include "services/recommendation/customer_summary.h"
#include "services/recommendation/models.h"

namespace crm::recommendation {
namespace {

const absl::Time kNow =
    absl::FromCivil(absl::CivilSecond(2026, 10, 1, 12, 0, 0), absl::UTCTimeZone());

internal::ItemStats Stats(int64_t buyers, int64_t viewers = 0) {
  internal::ItemStats s;
  s.set_buyers(buyers);
  s.set_viewers(viewers);
  return s;
}

internal::CoCounts Co(int64_t buyers, int64_t views = 0) {
  internal::CoCounts c;
  c.set_buyers(buyers);
  c.set_views(views);
  return c;
}

internal::Neighbour N(const std::string& sku, int64_t co, int64_t buyers) {
  internal::Neighbour n;
  n.set_sku(sku);
  n.set_co_buyers(co);
  n.set_buyers(buyers);
  return n;
}

v1::CatalogItem Item(const std::string& sku, bool in_stock = true) {
  v1::CatalogItem i;
  i.set_sku(sku);
  i.set_in_stock(in_stock);
  return i;
}

TEST_CASE("similarity favours a niche companion over a best seller bought with everything") {
  // Phone: 100 buyers. Its case: 40 buyers, 30 of them bought the phone. Best-selling charger: 1000
  // buyers, 40 of them bought the phone. Raw co-counts would pick the charger; cosine picks the
  // case.
  const double with_case = Similarity(Co(30), Stats(100), Stats(40));
  const double with_charger = Similarity(Co(40), Stats(100), Stats(1000));
  CHECK(with_case > 2 * with_charger);
}

TEST_CASE(
    "similarity: symmetric, zero without overlap, co-views add a little, few customers are "
    "shrunk") {
  CHECK(Similarity(Co(5), Stats(10), Stats(20)) == Approx(Similarity(Co(5), Stats(20), Stats(10))));
  CHECK(Similarity(Co(0), Stats(10), Stats(20)) == 0);
  CHECK(Similarity(Co(5, 5), Stats(10, 10), Stats(10, 10)) >
        Similarity(Co(5), Stats(10, 10), Stats(10, 10)));
  // One shared buyer of two one-off items is cosine 1 but worth only a third after shrinkage.
  CHECK(Similarity(Co(1), Stats(1), Stats(1)) == Approx(1.0 / 3));
  CHECK(Similarity(Co(50), Stats(50), Stats(50)) == Approx(50.0 / 52));
}

TEST_CASE("bundle rule: support, confidence and lift") {
  // 1000 baskets; A in 100, B in 50, both in 20.
  const Bundle r = BundleRule(20, 100, 50, 1000);
  CHECK(r.support == Approx(0.02));
  CHECK(r.confidence == Approx(0.2));
  CHECK(r.lift == Approx(4.0));
  // Independent items have lift 1.
  CHECK(BundleRule(5, 100, 50, 1000).lift == Approx(1.0));
  CHECK(BundleRule(5, 0, 50, 1000).lift == 0);
}

TEST_CASE(
    "neighbour list keeps the strongest candidates, refreshes counts and drops emptied pairs") {
  internal::Neighbours list;
  const internal::ItemStats self = Stats(100);
  for (int i = 0; i < kMaxNeighbours; ++i)
    OfferNeighbour(list, self, N("n" + std::to_string(i), 1 + i % 3, 50));
  REQUIRE(list.items_size() == kMaxNeighbours);
  // A weaker newcomer is not kept; a stronger one replaces the weakest.
  OfferNeighbour(list, self, N("weak", 1, 5000));
  CHECK(list.items_size() == kMaxNeighbours);
  bool has_weak = false;
  for (const auto& n : list.items()) has_weak |= n.sku() == "weak";
  CHECK_FALSE(has_weak);
  OfferNeighbour(list, self, N("strong", 30, 40));
  bool has_strong = false;
  for (const auto& n : list.items()) has_strong |= n.sku() == "strong";
  CHECK(has_strong);
  CHECK(list.items_size() == kMaxNeighbours);
  // Pair counts are kept exact (answers score with them); the neighbour's own counts are rewritten
  // once they moved materially; zero counts remove the entry.
  CHECK(OfferNeighbour(list, self, N("strong", 31, 40)));
  CHECK_FALSE(OfferNeighbour(list, self, N("strong", 31, 41)));
  CHECK(OfferNeighbour(list, self, N("strong", 40, 40)));
  int strong = 0;
  for (const auto& n : list.items()) {
    if (n.sku() == "strong") {
      ++strong;
      CHECK(n.co_buyers() == 40);
    }
  }
  CHECK(strong == 1);
  CHECK(OfferNeighbour(list, self, N("n1", 3, 50)));  // small counts are always kept exact
  OfferNeighbour(list, self, N("strong", 0, 40));
  for (const auto& n : list.items()) CHECK(n.sku() != "strong");
  CHECK(list.items_size() == kMaxNeighbours - 1);
}

TEST_CASE("basket pairing: distinct items, all of a normal basket, a fixed subset of a huge one") {
  auto basket = [](const std::string& order_id, const std::vector<std::string>& skus,
                   bool by_content = true) {
    internal::Basket b;
    b.set_order_id(order_id);
    b.set_paired_by_content(by_content);
    for (const auto& sku : skus) b.add_lines()->set_sku(sku);
    return b;
  };
  CHECK(ItemsToPair(basket("o1", {"b", "a", "b", "c"})) == std::vector<std::string>{"a", "b", "c"});
  std::vector<std::string> wholesale;
  for (int i = 0; i < 300; ++i) wholesale.push_back("sku" + std::to_string(i));
  const auto picked = ItemsToPair(basket("o2", wholesale));
  CHECK(picked.size() == static_cast<size_t>(kMaxItemsPaired));
  // The same items whatever id the order was minted, so the same history gives the same counts,
  // and erasure takes back exactly these.
  std::vector<std::string> shuffled(wholesale.rbegin(), wholesale.rend());
  CHECK(picked == ItemsToPair(basket("o3", shuffled)));
  // But not the same items for every big basket.
  std::vector<std::string> other = wholesale;
  other.back() = "sku-extra";
  CHECK(picked != ItemsToPair(basket("o2", other)));
  // A basket learned before this rule drew by its order id, and is taken back the same way.
  const auto legacy = ItemsToPair(basket("o2", wholesale, /*by_content=*/false));
  CHECK(legacy.size() == static_cast<size_t>(kMaxItemsPaired));
  CHECK(legacy == ItemsToPair(basket("o2", wholesale, false)));
  CHECK(legacy != ItemsToPair(basket("o3", wholesale, false)));
}

TEST_CASE("occasions: a category bought around this date in an earlier year, not bought lately") {
  auto at = [](int y, int m, int d) {
    return absl::FromCivil(absl::CivilDay(y, m, d), absl::UTCTimeZone());
  };
  const std::vector<Purchase> purchases = {
      {at(2025, 10, 12), "toys"},  // 11 days ahead this year: an occasion
      {at(2024, 10, 20), "toys"},  // also October
      {at(2025, 3, 2), "garden"},  // months away
      {at(2025, 9, 20), "wine"},   // 11 days ago: still within the band...
      {at(2026, 9, 1), "wine"},    // ...but bought a month ago, so no reminder
      {at(2026, 10, 5), "books"},  // this year only
  };
  const auto occasions = OccasionCategories(purchases, kNow);
  REQUIRE(occasions.size() == 1);
  CHECK(occasions[0].category == "toys");
  CHECK(occasions[0].last_time == at(2025, 10, 12));
  CHECK(occasions[0].years == 2);
}

TEST_CASE("filters: out of stock, already bought, returned, not yet launched, shown too often") {
  CHECK(Eligible(Item("a"), nullptr, nullptr, kNow));
  CHECK_FALSE(Eligible(Item("a", false), nullptr, nullptr, kNow));

  internal::CustomerItem bought;
  bought.set_bought(1);
  api::SetTimestamp(kNow - absl::Hours(24 * 30), bought.mutable_last_bought());
  CHECK_FALSE(Eligible(Item("a"), &bought, nullptr, kNow));
  api::SetTimestamp(kNow - absl::Hours(24 * 200), bought.mutable_last_bought());
  CHECK_FALSE(Eligible(Item("a"), &bought, nullptr, kNow));  // buying again is its own section
  internal::CustomerItem viewed;
  viewed.set_views(3);
  CHECK(Eligible(Item("a"), &viewed, nullptr, kNow));
  bought.set_returned(true);
  CHECK_FALSE(Eligible(Item("a"), &bought, nullptr, kNow));  // never again after a return

  v1::CatalogItem future = Item("b");
  api::SetTimestamp(kNow + absl::Hours(1), future.mutable_launch_time());
  CHECK_FALSE(Eligible(future, nullptr, nullptr, kNow));

  internal::Shown shown;
  shown.set_impressions(kImpressionCap);
  api::SetTimestamp(kNow - absl::Hours(24), shown.mutable_window_start());
  CHECK_FALSE(Eligible(Item("a"), nullptr, &shown, kNow));
  shown.set_clicks(1);  // clicked: the customer is interested, keep showing it
  CHECK(Eligible(Item("a"), nullptr, &shown, kNow));
  shown.set_clicks(0);
  api::SetTimestamp(kNow - kImpressionWindow - absl::Hours(1), shown.mutable_window_start());
  CHECK(Eligible(Item("a"), nullptr, &shown, kNow));  // a new week
}

TEST_CASE("damped affinity ranks a specific companion above a best seller bought with everything") {
  const internal::ItemStats seed = Stats(10);
  // 5 of the seed's 10 buyers bought a niche item (20 buyers) and a best seller (1000 buyers) each.
  const double niche = Affinity(N("niche", 5, 20), seed, Stats(20));
  const double best_seller = Affinity(N("best", 5, 1000), seed, Stats(1000));
  CHECK(niche > best_seller);
  CHECK(niche ==
        Approx(5 / (std::pow(20.0, kPopularityDamping) * std::pow(10.0, 1 - kPopularityDamping))));
  CHECK(Affinity(N("none", 0, 20), seed, Stats(20)) == 0);
}

TEST_CASE(
    "buy again: a rhythm of at least two buying days, due from 3/4 of the usual gap until three "
    "gaps") {
  const int64_t today = 20000;
  CHECK_FALSE(RepurchaseRhythm({}, today).has_value());
  CHECK_FALSE(RepurchaseRhythm({today - 30}, today).has_value());  // bought once: no rhythm
  // Every 14 days (gaps 14, 20, 14: the median is 14), last bought 12 days ago: due.
  auto r = RepurchaseRhythm({today - 60, today - 46, today - 26, today - 12}, today);
  REQUIRE(r.has_value());
  CHECK(r->every_days == 14);
  CHECK(r->last_day == today - 12);
  CHECK(r->score == Approx(3.0 / 5));
  CHECK_FALSE(RepurchaseRhythm({today - 24, today - 10}, today).has_value());  // not due yet
  CHECK_FALSE(RepurchaseRhythm({today - 60, today - 50}, today).has_value());  // given up
  // Fewer buying days and lateness rank lower.
  auto two = RepurchaseRhythm({today - 26, today - 12}, today);
  auto late = RepurchaseRhythm({today - 70, today - 56, today - 42, today - 28}, today);
  REQUIRE(two.has_value());
  REQUIRE(late.has_value());
  CHECK(two->score < r->score);
  CHECK(late->score < r->score);
}

TEST_CASE(
    "one SKU rule: any text of 1-128 characters without control characters, spaces inside "
    "allowed") {
  CHECK(IsValidSku("85123A"));
  CHECK(IsValidSku("BANK CHARGES"));
  CHECK(IsValidSku("gift_0001_10"));
  CHECK(IsValidSku("Käse-1"));
  CHECK_FALSE(IsValidSku(""));
  CHECK_FALSE(IsValidSku("   "));
  CHECK_FALSE(IsValidSku("a\tb"));
  CHECK_FALSE(IsValidSku("a\nb"));
  CHECK_FALSE(IsValidSku(std::string(129, 'x')));
  CHECK(IsValidSku(std::string(128, 'x')));
  const absl::Status s = ValidateSku("items[3].sku", "a\x01");
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(s.message()).rfind("items[3].sku: ", 0) == 0);
}

TEST_CASE(
    "blend: scores scaled per model, weighted per placement, summed per item, reason of the top "
    "model") {
  std::map<v1::Model, std::vector<Candidate>> by_model;
  by_model[v1::MODEL_ITEM_CF] = {{"x", v1::MODEL_ITEM_CF, 10, "cf"},
                                 {"y", v1::MODEL_ITEM_CF, 5, "cf"}};
  by_model[v1::MODEL_BESTSELLERS] = {{"z", v1::MODEL_BESTSELLERS, 1000, "top"},
                                     {"y", v1::MODEL_BESTSELLERS, 900, "top"}};
  by_model[v1::MODEL_BUNDLE] = {{"w", v1::MODEL_BUNDLE, 0.5, "bundle"}};

  const auto home = Blend(by_model, v1::PLACEMENT_HOME, 10);
  REQUIRE(home.size() == 4);
  CHECK(home[0].sku == "x");  // item-CF outweighs raw best-seller volume on the home page
  CHECK(home[0].reason == "cf");
  const auto y =
      std::find_if(home.begin(), home.end(), [](const Candidate& c) { return c.sku == "y"; });
  CHECK(y->score == Approx(PlacementWeight(v1::PLACEMENT_HOME, v1::MODEL_ITEM_CF) * 0.5 +
                           PlacementWeight(v1::PLACEMENT_HOME, v1::MODEL_BESTSELLERS) * 0.9));

  const auto cart = Blend(by_model, v1::PLACEMENT_CART, 2);
  REQUIRE(cart.size() == 2);
  CHECK(cart[0].sku == "w");  // the cart is for bundles
  CHECK(ModelName(v1::MODEL_CATEGORY_AFFINITY) == "category_affinity");
}

// What the parsed summary says was bought: (sku, last bought) of each recent item with a purchase.
std::vector<std::pair<std::string, absl::Time>> BoughtByParsing(
    const internal::CustomerSummary& s) {
  std::vector<std::pair<std::string, absl::Time>> out;
  for (const auto& item : s.recent()) {
    if (item.has_last_bought())
      out.emplace_back(item.sku(), api::FromTimestamp(item.last_bought()));
  }
  return out;
}

// The same read from the bytes, or nullopt when ForEachRecentPurchase refuses them.
std::optional<std::vector<std::pair<std::string, absl::Time>>> BoughtFromBytes(
    absl::string_view bytes) {
  std::vector<std::pair<std::string, absl::Time>> out;
  if (!ForEachRecentPurchase(bytes, [&](absl::string_view sku, absl::Time when) {
        out.emplace_back(std::string(sku), when);
      })) {
    return std::nullopt;
  }
  return out;
}

TEST_CASE(
    "a summary's recent purchases read from its bytes are what parsing it gives (the same items "
    "or the same refusal) for every prefix of the bytes",
    "[recommendation]") {
  internal::CustomerSummary s;
  s.set_baskets(7);
  NoteBought(s, "MUG-1", "kitchen", kNow - absl::Hours(30));
  NoteViewed(s, "LAMP-2", "home", kNow - absl::Hours(2), 40);  // viewed only: not a purchase
  NoteBought(s, "茶杯-3", "kitchen", kNow - absl::Seconds(1) + absl::Nanoseconds(250));
  NoteBought(s, "", "misc", absl::UnixEpoch());  // an empty sku and the epoch are still present
  NoteViewed(s, "MUG-1", "kitchen", kNow, 5);    // bought before, viewed since: still bought
  NotePurchaseIn(s, "kitchen", kNow - absl::Hours(30));
  s.add_last_basket_skus("MUG-1");
  const std::string bytes = s.SerializeAsString();

  const auto read = BoughtFromBytes(bytes);
  REQUIRE(read.has_value());
  CHECK(*read == BoughtByParsing(s));
  CHECK(read->size() == 3);

  // A field this build does not know (a newer build's) is skipped, as parsing does.
  std::string with_unknown = bytes;
  with_unknown += std::string("\xb8\x06\x2a", 3);  // field 103, varint 42
  REQUIRE(BoughtFromBytes(with_unknown).has_value());
  CHECK(*BoughtFromBytes(with_unknown) == BoughtByParsing(s));

  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    const absl::string_view prefix(bytes.data(), cut);
    internal::CustomerSummary parsed;
    const bool parses = parsed.ParseFromArray(prefix.data(), static_cast<int>(prefix.size()));
    const auto from_bytes = BoughtFromBytes(prefix);
    INFO("the first " << cut << " of " << bytes.size() << " bytes");
    REQUIRE(from_bytes.has_value() == parses);
    if (parses) CHECK(*from_bytes == BoughtByParsing(parsed));
  }
  CHECK_FALSE(BoughtFromBytes(std::string("\x2a\x05\x0a\x01", 4)).has_value());
  CHECK_FALSE(BoughtFromBytes("not a summary").has_value());
}

TEST_CASE(
    "a seed's list is cut to its strongest neighbours by similarity (equal ones by sku), a short "
    "list is left as it is",
    "[recommendation]") {
  const internal::ItemStats seed = Stats(100);
  internal::Neighbours list;
  *list.add_items() = N("weak", 1, 50);
  *list.add_items() = N("strong", 30, 40);
  *list.add_items() = N("twin-b", 10, 40);
  *list.add_items() = N("twin-a", 10, 40);
  *list.add_items() = N("middle", 20, 400);
  REQUIRE(SimilarityTo(seed, list.items(1)) > SimilarityTo(seed, list.items(2)));
  REQUIRE(SimilarityTo(seed, list.items(2)) == SimilarityTo(seed, list.items(3)));

  internal::Neighbours cut = list;
  KeepStrongest(seed, 3, cut);
  std::vector<std::string> kept;
  for (const auto& n : cut.items()) kept.push_back(n.sku());
  std::vector<std::pair<double, std::string>> by_hand;
  for (const auto& n : list.items()) by_hand.emplace_back(-SimilarityTo(seed, n), n.sku());
  std::sort(by_hand.begin(), by_hand.end());
  std::vector<std::string> expected;
  for (int i = 0; i < 3; ++i) expected.push_back(by_hand[static_cast<size_t>(i)].second);
  CHECK(kept == expected);
  CHECK(kept.front() == "strong");
  CHECK(std::find(kept.begin(), kept.end(), "weak") == kept.end());
  // Of the two equally strong, "twin-a" comes first whatever the list's order.
  const auto a = std::find(kept.begin(), kept.end(), "twin-a");
  const auto b = std::find(kept.begin(), kept.end(), "twin-b");
  if (b != kept.end()) CHECK(a < b);

  internal::Neighbours whole = list;
  KeepStrongest(seed, 5, whole);
  CHECK(whole.SerializeAsString() == list.SerializeAsString());
}

}  // namespace
}  // namespace crm::recommendation
