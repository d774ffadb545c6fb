#include "services/recommendation/recommendation_component.h"

#include "absl/flags/flag.h"
#include "absl/functional/bind_front.h"
#include "libs/base/status_macros.h"

ABSL_FLAG(int, bestseller_cache_s, 5,
          "how long best-seller rankings are reused before the sales window is summed again (0: "
          "every call)");

namespace crm::recommendation {

rpc::ServiceSpec RecommendationComponent::Spec() {
  return rpc::ServiceSpec::Of<RecommendationComponent>("recommendation",
                                                       RecommendationStore::ColumnFamilies());
}

absl::StatusOr<std::unique_ptr<RecommendationComponent>> RecommendationComponent::Create(
    const rpc::ServiceContext& context) {
  auto c = std::unique_ptr<RecommendationComponent>(new RecommendationComponent(context));
  c->store_ = std::make_unique<RecommendationStore>(context.store);
  c->bestsellers_ = std::make_unique<BestsellerCache>(
      c->store_.get(), absl::Seconds(absl::GetFlag(FLAGS_bestseller_cache_s)));
  c->recommender_ =
      std::make_unique<Recommender>(c->store_.get(), c->bestsellers_.get(), context.clock);
  CRM_RETURN_IF_ERROR(c->recommender_->LoadSuccessors());
  c->service_ = std::make_unique<RecommendationService>(
      c->store_.get(), c->recommender_.get(), context.clock, c->writes("recommendation-writes", 16),
      context.backends, context.metrics->registry());
  RecommendationService* service = c->service_.get();
  c->Serve(service);
  events::EventConsumer& consumer =
      c->ConsumeEvents(RecommendationService::EventsHandled(),
                       absl::bind_front(&RecommendationService::HandleEvent, service));
  // Learning a basket is CPU-bound (hundreds of pair counts): a delivered batch is learned on two
  // threads, each customer's events on one.
  consumer.ApplyOnThreads(2);
  // What a batch of events taught is in the neighbour lists before the batch is acknowledged.
  consumer.OnBatchApplied([service] { service->RefreshNeighbours(); });
  // Also every second, for notes left by a crash between a batch and its refresh.
  c->RunEvery(
      absl::Seconds(1), [service] { service->RefreshNeighbours(); },
      rpc::PeriodicTask::FirstRun::kNow);
  return c;
}

}  // namespace crm::recommendation
