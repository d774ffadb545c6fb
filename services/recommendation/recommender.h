// Answers the read questions of the recommendation service from what the store has learned: a
// customer's recommendations for a placement (every model's candidates, blended, then filtered
// until `count` items new to the customer remain, plus a separate "buy again" section), related
// items, bundle rules and best sellers. Equal scores break by SKU, so the same history and clock
// give the same lists. No gRPC; inputs are already validated. Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "libs/clock/clock.h"
#include "libs/rpc/executor.h"
#include "services/recommendation/models.h"
#include "services/recommendation/recommendation_store.h"

namespace crm::recommendation {

// Best sellers per category over the sliding window (longer windows, then all time, when too little
// sold in it), summed again at most every `ttl` (the window moves by days; sales of the last
// seconds change little) so a busy home page does not rescan sales on every call.
//
// A call never waits for a ranking of the current day to be summed again: one older than `ttl` is
// still answered while a single refresh runs on the cache's own thread (summing a month of a
// 50k-item shop's sales took a call 10-20 ms, and every call that found the ranking expired used to
// spend them at once, every `ttl`). Only the first ranking of a category for a day (at start, after
// midnight, after the clock moved) is summed by a caller, and by one: calls asking for it meanwhile
// wait for that sum. With `ttl` zero (or less) every call sums and nothing is kept (tests that
// must see a sale at once).
// Thread-safe; `store` must outlive the cache (its destructor finishes the refreshes queued).
class BestsellerCache {
 public:
  using Ranking =
      std::vector<std::pair<std::string, internal::Sold>>;  // sku, sales; most orders first
  BestsellerCache(const RecommendationStore* store, absl::Duration ttl)
      : store_(store), ttl_(ttl) {}
  // The top 100 of `category` ("" = everything) in the window ending at `now`.
  absl::StatusOr<std::shared_ptr<const Ranking>> Top(const std::string& category, absl::Time now);

 private:
  struct Entry {
    std::shared_ptr<const Ranking> ranking;
    absl::Time computed;  // wall time
    int64_t day = 0;      // the window's last day
    bool refreshing = false;
  };
  // `category`'s ranking in the window ending at `now`, summed from the store's sales rows.
  absl::StatusOr<std::shared_ptr<const Ranking>> Sum(const std::string& category,
                                                     absl::Time now) const;
  // Sums `category` again as of `now` and keeps it, unless another day's ranking replaced it.
  void Refresh(const std::string& category, absl::Time now);

  const RecommendationStore* const store_;
  const absl::Duration ttl_;
  absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  // The (category, day) rankings a caller is summing for the first time.
  std::set<std::pair<std::string, int64_t>> first_sums_ ABSL_GUARDED_BY(mu_);
  // Last: destroyed first, finishing a refresh while what it uses is still there.
  rpc::Executor refresher_{"bestsellers", 1};
};

struct RecommendQuery {
  std::string customer_id;
  v1::Placement placement = v1::PLACEMENT_HOME;
  int count = 10;
  std::vector<std::string> context_skus;
  v1::Model model = v1::MODEL_BLEND;
};

class Recommender {
 public:
  // `customers_alike`: whether home, e-mail and push blend in what customers alike bought (it takes
  // a home call up to about twice the CPU; docs/benchmarks.md).
  Recommender(RecommendationStore* store, BestsellerCache* bestsellers, Clock* clock,
              bool customers_alike = true);

  // Loads which items have a successor (at start; UpsertCatalogItems keeps it current through
  // Catalogued).
  absl::Status LoadSuccessors();
  void Catalogued(const std::vector<v1::CatalogItem>& items);

  // Discovery (`out`: items new to the customer) and, for home, e-mail and push with the blend,
  // what is due to be bought again (`buy_again`, may be null).
  absl::Status Recommend(const RecommendQuery& query, std::vector<v1::Recommendation>* out,
                         std::vector<v1::Recommendation>* buy_again = nullptr);
  // The best item `model` (one model, not the blend) has for the customer whose `view` the store
  // read, as of `now`: exactly what Recommend answers with that model for e-mail with a count of 1
  // (so in stock, new to the customer, not shown too often). nullopt when there is none. What the
  // reminder sweep sends for the occasion and upgrade models.
  absl::StatusOr<std::optional<v1::Recommendation>> Best(const std::string& customer_id,
                                                         const CustomerView& view, v1::Model model,
                                                         absl::Time now);
  absl::Status RelatedItems(const std::string& sku, int count, v1::RelatedItemsResponse* out);
  absl::Status BoughtTogether(const std::string& sku, int count, int64_t min_baskets,
                              v1::BoughtTogetherResponse* out);
  absl::Status BestSellers(const std::string& category, int count, v1::BestSellersResponse* out);

 private:
  using Candidates = std::map<v1::Model, std::vector<Candidate>>;
  // Recommend for the customer whose `view` is read, as of `now`.
  absl::Status RecommendFor(const RecommendQuery& query, const CustomerView& view, absl::Time now,
                            std::vector<v1::Recommendation>* out,
                            std::vector<v1::Recommendation>* buy_again);
  // Each model's candidates for the customer (only `only` when it is not the blend).
  absl::Status ItemCf(const CustomerView& view, absl::Time now, std::vector<Candidate>* out);
  // What the customers most alike bought lately (home, e-mail and push).
  absl::Status SimilarCustomers(const std::string& customer_id, const CustomerView& view,
                                absl::Time now, std::vector<Candidate>* out);
  // Items named like what the customer bought (home, e-mail and push).
  absl::Status SimilarItems(const CustomerView& view, std::vector<Candidate>* out);
  // Items named like the one on the page (product page).
  absl::Status NamedLikePage(const std::vector<std::string>& page, std::vector<Candidate>* out);
  // The items most alike by name to `seeds` (not `exclude`), weighed by how many bought them;
  // `reason` names the closest seed as {item}.
  absl::Status NamedLikeCandidates(const std::vector<std::string>& seeds,
                                   const absl::flat_hash_set<std::string>& exclude,
                                   const char* reason, std::vector<Candidate>* out);
  absl::Status Bundles(const std::vector<std::string>& context, std::vector<Candidate>* out);
  absl::Status CategoryAffinity(const CustomerView& view, absl::Time now,
                                std::vector<Candidate>* out);
  absl::Status Occasions(const CustomerView& view, absl::Time now, std::vector<Candidate>* out);
  absl::Status Upgrades(const std::string& customer_id, const CustomerView& view, absl::Time now,
                        std::vector<Candidate>* out);
  absl::Status ColdStart(const CustomerView& view, absl::Time now, std::vector<Candidate>* out);
  absl::Status Popular(absl::Time now, std::vector<Candidate>* out);
  // The blend's candidates that may be shown, best first, at most q.count.
  absl::Status Showable(const RecommendQuery& q, const std::vector<Candidate>& ranked,
                        absl::Time now, std::vector<v1::Recommendation>* out);
  // A candidate that may be shown, with its catalog item.
  struct Kept;
  // Adds to `kept` (up to `limit` in all) the candidates of `slice` that may be shown to the
  // customer: not in `context`, in the catalog and in stock, and Eligible by what the customer did
  // with them and was shown.
  absl::Status KeepEligible(const std::string& customer_id, const std::set<std::string>& context,
                            std::span<const Candidate> slice, absl::Time now, size_t limit,
                            std::vector<Kept>* kept);
  // Lowers the scores of items often sent back.
  absl::Status SinkOftenReturned(std::vector<Kept>& kept);
  absl::Status BuyAgain(const RecommendQuery& q, absl::Time now,
                        std::vector<v1::Recommendation>* out);
  // Name of a catalog item for reasons ("item ABC" when it has none).
  std::string NameOf(const std::string& sku);

  RecommendationStore* const store_;
  BestsellerCache* const bestsellers_;
  Clock* const clock_;
  const bool customers_alike_;
  absl::Mutex mu_;
  absl::flat_hash_set<std::string> has_successor_ ABSL_GUARDED_BY(mu_);
};

}  // namespace crm::recommendation
