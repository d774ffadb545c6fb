// Offline evaluation of the recommendation service: replays a data set's history before the split,
// in time order, into the real service (catalog through UpsertCatalogItems, purchases, returns and
// browsing through its EventSink, exactly as the other services deliver them), then asks Recommend
// for each customer who bought something new after the split and scores the top 10 against what
// they bought, for every model, the blend, a most-popular baseline and a random one.
//
// EvaluateRollingOrigin is the protocol that cannot flatter: several cut-offs, each scored on the
// days after it, with one service fed history incrementally (never restarted) through the import
// path an operator uses (ImportCustomer on customer-profile, ImportOrders on order-tracking, whose
// outbox delivers the events) and its clock set to each cut-off in turn; baselines (popular in the
// last 30 days, most popular, item-kNN cosine) are computed by the same tool from the same history
// for the same customers. Only items new to the customer count as hits.
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "tests/eval/datasets.h"

namespace crm::eval {

struct Scores {
  std::string model;
  double precision = 0;  // hits / 10, averaged over customers
  double recall = 0;     // hits / items bought
  double ndcg = 0;       // binary relevance
  double hit_rate = 0;   // share of customers with at least one hit
  double coverage = 0;   // distinct items recommended / catalog items
};

// Whether the structure the synthetic generator planted is found.
struct PlantedChecks {
  int pairs = 0, pairs_found = 0;  // BoughtTogether(anchor) ranks the companion first
  int gift_buyers = 0,
      occasions_found = 0;  // an occasion reminder in the gift category before October
  int upgrade_owners = 0,
      upgrades_found = 0;  // the successor is recommended to its predecessor's buyers
};

struct Report {
  std::string dataset;
  int customers_evaluated = 0;
  int orders_learned = 0;
  int events_learned = 0;
  double load_seconds = 0;
  std::vector<Scores> rows;  // blend first
  PlantedChecks planted;

  const Scores* Row(const std::string& model) const;
  std::string Markdown() const;
};

struct EvalOptions {
  int top_k = 10;
  // Evaluate at most this many customers (a stable choice), 0 for all.
  int max_customers = 0;
};

Report Evaluate(const Dataset& data, const EvalOptions& options);

struct RollingOptions {
  // In increasing order; the service learns everything before each one before it is scored.
  std::vector<absl::Time> cutoffs;
  // Each cut-off is scored on purchases in [cut-off, cut-off + horizon).
  absl::Duration horizon = absl::Hours(24 * 30);
  int top_k = 10;
  // Score at most this many customers per cut-off (a stable choice by id hash), 0 for all.
  int max_customers = 0;
};

// One cut-off's scores (NDCG@k with binary relevance, hit rate = share of customers with a hit).
struct CutoffScores {
  absl::Time cutoff;
  // Bought at least one item new to them within the horizon and something before the cut-off.
  int customers = 0;
  double project_ndcg = 0;
  double project_hit_rate = 0;
  // What the project's discovery list wasted on items the customer had already bought (must be 0).
  double project_already_bought_share = 0;
  double popular_recent_ndcg = 0;  // most buyers in the 30 days before the cut-off, not yet bought
  double most_popular_ndcg = 0;    // most buyers before the cut-off, not yet bought
  double item_knn_ndcg =
      0;  // sum of cosines (customer x item) to the customer's items, not yet bought
  // A hash of every list the project recommended, in order: equal when two runs recommended the
  // same.
  uint64_t lists_fingerprint = 0;
  // The same customers by how many distinct items they had bought before the cut-off: where the
  // project wins or loses against item-kNN (its closest baseline). Every scored customer is in
  // exactly one band; the averages are over the band's customers.
  struct HistoryBand {
    int fewest_items = 0;
    int most_items = 0;  // 0: no upper bound
    int customers = 0;
    double project_ndcg = 0;
    double item_knn_ndcg = 0;
  };
  std::vector<HistoryBand> by_history;
  // Product pages and carts (ContextPagesAfter in evaluate.cc): averages over `pages`.
  struct ContextScores {
    int pages = 0;
    double project_ndcg = 0;
    double item_knn_ndcg = 0;     // summed cosines to the page's or cart's items
    double bought_with_ndcg = 0;  // most customers who bought those items bought it too
    double popular_recent_ndcg = 0;
    void Average() {
      const double n = pages > 0 ? pages : 1;
      project_ndcg /= n;
      item_knn_ndcg /= n;
      bought_with_ndcg /= n;
      popular_recent_ndcg /= n;
    }
  };
  ContextScores product_page;
  ContextScores cart;
  // The project's NDCG over the best of the baselines.
  double RatioToBestBaseline() const;
};

struct RollingReport {
  std::string dataset;
  std::vector<CutoffScores> rows;
  double load_seconds = 0;   // feeding history into the service
  double total_seconds = 0;  // everything, scoring included
  // Latency of the scored Recommend calls (one at a time, in-process gRPC), milliseconds.
  double recommend_p50_ms = 0;
  double recommend_p99_ms = 0;
  std::string Markdown() const;

 private:
  // One table of product pages or carts: `what` introduces it, `unit` heads their count.
  std::string ContextTable(const std::string& what, const std::string& unit,
                           CutoffScores::ContextScores CutoffScores::*scores) const;
};

// Requires options.cutoffs in increasing order and every cut-off + horizon within the data;
// std::invalid_argument naming the first cut-off that is not, before any service starts.
RollingReport EvaluateRollingOrigin(const Dataset& data, const RollingOptions& options);

}  // namespace crm::eval
