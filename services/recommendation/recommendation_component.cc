#include "services/recommendation/recommendation_component.h"

#include "absl/flags/flag.h"
#include "libs/base/status_macros.h"

ABSL_FLAG(int, bestseller_cache_s, 5,
          "how long best-seller rankings are reused before the sales window is summed again (0: "
          "every call)");

namespace crm::recommendation {

namespace {

absl::Status Wire(RecommendationComponent& c, const rpc::ServiceContext& context) {
  auto* store = c.Make<RecommendationStore>(context.store);
  auto* bestsellers =
      c.Make<BestsellerCache>(store, absl::Seconds(absl::GetFlag(FLAGS_bestseller_cache_s)));
  auto* recommender = c.Make<Recommender>(store, bestsellers, context.clock);
  CRM_RETURN_IF_ERROR(recommender->LoadSuccessors());
  RecommendationService* service = c.Serve(std::make_unique<RecommendationService>(
      store, recommender, context.clock, c.writes("recommendation-writes", 16), context.backends,
      context.metrics->registry()));
  events::EventConsumer& consumer = c.ConsumeEvents();
  // Learning a basket is CPU-bound (hundreds of pair counts): a delivered batch is learned on two
  // threads, each customer's events on one.
  consumer.ApplyOnThreads(2);
  // What a batch of events taught is in the neighbour lists before the batch is acknowledged.
  consumer.OnBatchApplied([service] { service->RefreshNeighbours(); });
  // Also every second, for notes left by a crash between a batch and its refresh.
  c.RunEvery(
      absl::Seconds(1), [service] { service->RefreshNeighbours(); },
      rpc::PeriodicTask::FirstRun::kNow);
  return absl::OkStatus();
}

}  // namespace

rpc::ServiceSpec RecommendationSpec() {
  rpc::ServiceSpec spec = RecommendationComponent::SpecOf(
      "recommendation", RecommendationStore::ColumnFamilies(), &Wire);
  spec.merge_operators = RecommendationStore::MergeOperators();
  return spec;
}

}  // namespace crm::recommendation
