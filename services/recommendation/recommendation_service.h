// crm.v1.RecommendationService over gRPC's callback API, and what recommendation learns from events
// (delivered orders, refunds, browsing; erasure takes a customer's contribution back out). Handlers
// validate, ask the Recommender (recommender.h) and, for e-mail and push, ask customer-profile
// whether the customer may be contacted before anything is sent, once per request id. A catalog
// batch is judged item by item (a bad item is listed in the response's errors, the rest upserted);
// every SKU, from requests or events, follows ValidateSku (models.h). Writes run on the write
// executor. The neighbour lists are refreshed after every batch of events and rebuilt whole once
// enough item pairs changed (RebuildNeighboursWhenDue).
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "crm/v1/recommendation.grpc.pb.h"
#include "libs/clock/clock.h"
#include "libs/events/consumer.h"
#include "libs/events/subscription.h"
#include "libs/rpc/backends.h"
#include "libs/rpc/early_refresh.h"
#include "libs/rpc/executor.h"
#include "libs/rpc/periodic.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/registry.h"
#include "services/recommendation/recommendation_store.h"
#include "services/recommendation/recommender.h"
#include "services/recommendation/reminder_sweep.h"

namespace crm::recommendation {

struct RecommendationMetrics {
  explicit RecommendationMetrics(prometheus::Registry& registry);
  prometheus::Family<prometheus::Counter>& served;            // {placement}
  prometheus::Family<prometheus::Counter>& items;             // {model}
  prometheus::Family<prometheus::Counter>& withheld;          // {reason}
  prometheus::Family<prometheus::Counter>& impressions;       // {model}
  prometheus::Family<prometheus::Counter>& clicks;            // {model}
  prometheus::Family<prometheus::Counter>& learned;           // {kind}
  prometheus::Family<prometheus::Counter>& rebuilds;          // {trigger}
  prometheus::Family<prometheus::Counter>& rebuild_failures;  // {trigger}
};

// Request limits: the items one answer holds (count); the catalog items or stock changes of one
// batch; the context items of a product page or cart; the impressions, and the clicks, of one
// feedback call.
inline constexpr int kMaxCount = 50;
inline constexpr int kMaxBatch = 1000;
inline constexpr int kMaxContextSkus = 50;
inline constexpr int kMaxFeedbackItems = 100;

class RecommendationService final : public v1::RecommendationService::CallbackService {
 public:
  RecommendationService(RecommendationStore* store, Recommender* recommender,
                        ReminderSweep* reminders, Clock* clock, rpc::Executor* writes,
                        rpc::Backends* backends, prometheus::Registry& registry);

  using Ctx = grpc::CallbackServerContext;
  using Reactor = grpc::ServerUnaryReactor;
  Reactor* UpsertCatalogItems(Ctx*, const v1::UpsertCatalogItemsRequest*,
                              v1::UpsertCatalogItemsResponse*) override;
  Reactor* GetCatalogItem(Ctx*, const v1::GetCatalogItemRequest*, v1::CatalogItem*) override;
  Reactor* SetStock(Ctx*, const v1::SetStockRequest*, v1::SetStockResponse*) override;
  Reactor* Recommend(Ctx*, const v1::RecommendRequest*, v1::RecommendResponse*) override;
  Reactor* RelatedItems(Ctx*, const v1::RelatedItemsRequest*, v1::RelatedItemsResponse*) override;
  Reactor* RebuildItemNeighbours(Ctx*, const v1::RebuildItemNeighboursRequest*,
                                 v1::RebuildItemNeighboursResponse*) override;
  Reactor* BoughtTogether(Ctx*, const v1::BoughtTogetherRequest*,
                          v1::BoughtTogetherResponse*) override;
  Reactor* BestSellers(Ctx*, const v1::BestSellersRequest*, v1::BestSellersResponse*) override;
  Reactor* RecordFeedback(Ctx*, const v1::RecordFeedbackRequest*,
                          v1::RecordFeedbackResponse*) override;
  Reactor* ListShownItems(Ctx*, const v1::ListShownItemsRequest*,
                          v1::ListShownItemsResponse*) override;

  absl::Status HandleEvent(store::Transaction& txn, const v1::Event& event);
  // The events HandleEvent acts on; producers send this service no others.
  static events::Subscription EventsHandled() {
    using E = events::Subscription::EventType;
    return {E::kOrderDelivered, E::kOrderRefunded, E::kBehaviorRecorded, E::kCustomerErased};
  }
  // Folds changed pairs into the neighbour lists (after each event batch, and every second). One at
  // a time. Once the pairs changed since the last rebuild reach a tenth of those it read, brings
  // the rebuild task forward: to when learning has been quiet for 2 s (the end of an import), at
  // most 5 minutes on; fewer changes, to when learning has been idle for a minute.
  void RefreshNeighbours();
  // Rebuilds every neighbour list if enough pairs changed since the last rebuild: lists kept batch
  // by batch depend a little on how deliveries were batched, rebuilt ones on the history alone.
  // Run by `task` (the component's), which runs only when RefreshNeighbours asks (RunAt), or a
  // failed rebuild after its backoff (10 s, doubling to 5 minutes); set before learning.
  void RebuildNeighboursWhenDue();
  void ScheduleRebuildsOn(rpc::PeriodicTask* task) { rebuild_task_ = task; }
  // Learning that the rebuilt lists do not hold yet: a rebuild is due or running (what an
  // evaluation scoring "as the service runs" waits out).
  bool neighbour_rebuild_pending() const { return early_rebuild_.pending(); }
  // The scheduled reminders (the component runs them every --reminder_sweep_interval_s; tests run
  // a sweep directly).
  ReminderSweep& reminders() { return *reminders_; }

 private:
  // The items of a catalog batch that may be upserted; the others go to resp->errors with why.
  absl::StatusOr<std::vector<v1::CatalogItem>> AcceptCatalogItems(
      const v1::UpsertCatalogItemsRequest& req, v1::UpsertCatalogItemsResponse* resp);
  // NOT_FOUND naming `field` when the catalog has no such item.
  absl::Status CheckSku(const std::string& field, const std::string& sku);
  // RecordFeedback's request: ids, placement, 1-100 impressions and clicks of catalog items, each
  // naming the model that recommended it.
  absl::Status CheckFeedback(const v1::RecordFeedbackRequest& req);
  // Recommend's request: ids, placement, count, model, and the context items a product page or
  // cart must name (each in the catalog).
  absl::Status CheckRecommendRequest(const v1::RecommendRequest& req);
  // Adds the request's impressions and clicks per item to what was shown to the customer, inside
  // `txn`; metrics once committed.
  absl::Status StoreFeedback(store::Transaction& txn, const v1::RecordFeedbackRequest& req,
                             absl::Time now);
  // A retryable write of `req`'s customer, once per request id (`request_id`, scoped; `method`
  // names the call in the request record): `body` runs in a synced transaction unless the request
  // was already answered, which then answers again.
  template <typename Request>
  absl::Status Once(const Request& req, absl::string_view method, const std::string& request_id,
                    absl::Time now, google::protobuf::MessageLite* resp,
                    absl::FunctionRef<absl::Status(store::Transaction&)> body);
  absl::Status DoRecommend(const v1::RecommendRequest& request, v1::RecommendResponse* response);
  // For e-mail and push: asks customer-profile to count one contact; fills withheld_reason when
  // refused. `request_id`: the caller's request id in its own namespace (rpc::ScopedRequestId).
  absl::Status AskToContact(const v1::RecommendRequest& request, const std::string& request_id,
                            v1::RecommendResponse* response);
  void Served(const v1::RecommendRequest& request, const v1::RecommendResponse& response);
  // Every neighbour list afresh; `trigger` ("changes", "request") labels the metric.
  absl::StatusOr<RecommendationStore::Rebuilt> RebuildAllNeighbours(absl::string_view trigger);

  RecommendationStore* const store_;
  Recommender* const recommender_;
  ReminderSweep* const reminders_;
  Clock* const clock_;
  rpc::Executor* const writes_;
  rpc::Backends* const backends_;
  RecommendationMetrics metrics_;
  absl::Mutex refresh_mu_;  // one refresh or rebuild of the neighbour lists at a time
  // Pair changes against the pairs the last rebuild read; a store that just started rebuilds after
  // its first learning (10,000 pairs rebuild in milliseconds). Fewer changes are rebuilt once
  // learning has been idle for a minute, so an import whose deliveries paused (a rebuild in the
  // pause) still ends with lists that depend on its history alone.
  rpc::EarlyRefresh early_rebuild_{{.small_base = 10'000,
                                    .quiet = absl::Seconds(2),
                                    .longest_wait = absl::Minutes(5),
                                    .idle = absl::Minutes(1)}};
  rpc::PeriodicTask* rebuild_task_ = nullptr;
};

}  // namespace crm::recommendation
