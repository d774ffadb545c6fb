// Offline evaluation of the recommendation service: replays a data set's history before the split, in time
// order, into the real service (catalog through UpsertCatalogItems, purchases, returns and browsing through
// its EventSink, exactly as the other services deliver them), then asks Recommend for each customer who
// bought something new after the split and scores the top 10 against what they bought, for every model,
// the blend, a most-popular baseline and a random one.
#pragma once

#include <string>
#include <vector>

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
  int pairs = 0, pairs_found = 0;              // BoughtTogether(anchor) ranks the companion first
  int gift_buyers = 0, occasions_found = 0;    // an occasion reminder in the gift category before October
  int upgrade_owners = 0, upgrades_found = 0;  // the successor is recommended to its predecessor's buyers
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

}  // namespace crm::eval
