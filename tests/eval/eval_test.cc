// Recommendation quality as a test: on the synthetic shop (right answers known) the blend must beat
// the most-popular baseline on NDCG@10 by a clear margin and find the planted structure; on a
// sample of the real Online Retail transactions, scored by rolling origin, it must beat
// popular-recent, most-popular and item-kNN at every cut-off, and the same history imported twice
// must give the same recommendations once the neighbour lists are rebuilt.
#include <iostream>

#include "absl/time/time.h"
#include "catch2/catch.hpp"
#include "tests/eval/evaluate.h"

namespace crm::eval {
namespace {

// The shipped Online Retail file, customers sampled at 30% (a stable choice by id hash).
Dataset OnlineRetailSample() {
  auto data = OnlineRetail(
      CRM_SOURCE_ROOT "/tests/data/online-retail/transactions-2010-12-to-2011-09.csv.gz", 30);
  REQUIRE(data.ok());
  return *std::move(data);
}

TEST_CASE(
    "synthetic shop: the blend beats most-popular clearly, planted pairs, occasions and upgrades "
    "are found") {
  SyntheticOptions options;
  options.customers = 1500;
  const Report report = Evaluate(Synthetic(options), {});
  std::cout << report.Markdown() << std::endl;
  const Scores* blend = report.Row("blend");
  const Scores* popular = report.Row("most-popular baseline");
  REQUIRE(blend != nullptr);
  REQUIRE(popular != nullptr);
  CHECK(report.customers_evaluated > 200);
  CHECK(blend->ndcg >= 2.5 * popular->ndcg);
  CHECK(blend->hit_rate > popular->hit_rate);
  CHECK(report.Row("random baseline")->ndcg < popular->ndcg);
  // Every planted complementary pair is the first bundle rule of its anchor.
  CHECK(report.planted.pairs_found == report.planted.pairs);
  // A few gift buyers also bought a toy within the last 60 days: no reminder for them, by design.
  CHECK(report.planted.occasions_found >= 0.9 * report.planted.gift_buyers);
  CHECK(report.planted.upgrades_found == report.planted.upgrade_owners);
  CHECK(report.planted.upgrade_owners > 0);
}

TEST_CASE(
    "online retail, rolling origin on a sample: the project beats every baseline at every "
    "cut-off, on the home page, product pages and carts") {
  const Dataset data = OnlineRetailSample();
  CHECK(data.orders.size() > 2000);
  CHECK_FALSE(data.returns.empty());
  RollingOptions options;
  options.cutoffs = MonthlyCutoffs(data, 4, options.horizon);
  const RollingReport report = EvaluateRollingOrigin(data, options);
  std::cout << report.Markdown() << std::endl;
  REQUIRE(report.rows.size() == 4);
  for (const CutoffScores& row : report.rows) {
    INFO(absl::FormatTime("%Y-%m-%d", row.cutoff, absl::UTCTimeZone()));
    CHECK(row.customers > 150);
    CHECK(row.project_ndcg > row.popular_recent_ndcg);
    CHECK(row.project_ndcg > row.most_popular_ndcg);
    CHECK(row.project_ndcg > row.item_knn_ndcg);
    // Product pages and carts too, against what their items alone give.
    const CutoffScores::ContextScores& page = row.product_page;
    CHECK(page.pages > 150);
    CHECK(page.project_ndcg > page.item_knn_ndcg);
    CHECK(page.project_ndcg > page.bought_with_ndcg);
    CHECK(page.project_ndcg > page.popular_recent_ndcg);
    const CutoffScores::ContextScores& cart = row.cart;
    CHECK(cart.pages > 150);
    CHECK(cart.project_ndcg > cart.item_knn_ndcg);
    CHECK(cart.project_ndcg > cart.bought_with_ndcg);
    CHECK(cart.project_ndcg > cart.popular_recent_ndcg);
    // Discovery never spends a slot on something the customer already bought.
    CHECK(row.project_already_bought_share == 0);
    // The bands by history size hold every scored customer once, and their averages make up the
    // cut-off's.
    int banded = 0;
    double project = 0, item_knn = 0;
    for (const CutoffScores::HistoryBand& band : row.by_history) {
      banded += band.customers;
      project += band.project_ndcg * band.customers;
      item_knn += band.item_knn_ndcg * band.customers;
    }
    CHECK(banded == row.customers);
    CHECK(project / row.customers == Approx(row.project_ndcg));
    CHECK(item_knn / row.customers == Approx(row.item_knn_ndcg));
  }
}

TEST_CASE(
    "online retail, the same history imported twice gives the same recommendations at every "
    "cut-off, the service having rebuilt its neighbour lists by itself once the deliveries "
    "ended") {
  const Dataset data = OnlineRetailSample();
  RollingOptions options;
  options.cutoffs = MonthlyCutoffs(data, 4, options.horizon);
  // Two fresh services: new customer and order ids, deliveries batched as they happen to come.
  const RollingReport first = EvaluateRollingOrigin(data, options);
  const RollingReport second = EvaluateRollingOrigin(data, options);
  REQUIRE(first.rows.size() == 4);
  REQUIRE(second.rows.size() == 4);
  for (size_t i = 0; i < first.rows.size(); ++i) {
    INFO(absl::FormatTime("%Y-%m-%d", first.rows[i].cutoff, absl::UTCTimeZone()));
    CHECK(first.rows[i].customers > 150);
    CHECK(first.rows[i].lists_fingerprint == second.rows[i].lists_fingerprint);
    CHECK(first.rows[i].project_ndcg == second.rows[i].project_ndcg);
  }
}

TEST_CASE("online retail categories come from description keywords") {
  CHECK(CategoryOfDescription("WHITE HANGING HEART T-LIGHT HOLDER") == "candles-and-lights");
  CHECK(CategoryOfDescription("JUMBO BAG RED RETROSPOT") == "bags");
  CHECK(CategoryOfDescription("SET OF 3 CAKE TINS PANTRY DESIGN") == "kitchen");
  CHECK(CategoryOfDescription("PAPER CHAIN KIT 50'S CHRISTMAS") == "christmas");
  CHECK(CategoryOfDescription("SPRING") == "other");  // "RING" is matched as a word only
}

}  // namespace
}  // namespace crm::eval
