#include "services/recommendation/recommendation_component.h"

#include "absl/flags/flag.h"
#include "absl/functional/bind_front.h"
#include "absl/strings/str_cat.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"

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
  auto c = std::unique_ptr<RecommendationComponent>(new RecommendationComponent());
  c->store_ = std::make_unique<RecommendationStore>(context.store);
  c->bestsellers_ = std::make_unique<BestsellerCache>(
      c->store_.get(), absl::Seconds(absl::GetFlag(FLAGS_bestseller_cache_s)));
  c->recommender_ =
      std::make_unique<Recommender>(c->store_.get(), c->bestsellers_.get(), context.clock);
  CRM_RETURN_IF_ERROR(c->recommender_->LoadSuccessors());
  c->writes_ = std::make_unique<rpc::Executor>("recommendation-writes", 16);
  c->service_ = std::make_unique<RecommendationService>(
      c->store_.get(), c->recommender_.get(), context.clock, c->writes_.get(), context.backends,
      context.metrics->registry());
  RecommendationService* service = c->service_.get();
  c->consumer_ = std::make_unique<events::EventConsumer>(
      context.store, absl::bind_front(&RecommendationService::HandleEvent, service),
      c->writes_.get(), context.metrics->registry());
  // Learning a basket is CPU-bound (hundreds of pair counts): a delivered batch is learned on two
  // threads, each customer's events on one.
  c->consumer_->ApplyOnThreads(2);
  // What a batch of events taught is in the neighbour lists before the batch is acknowledged.
  c->consumer_->OnBatchApplied([service] { service->RefreshNeighbours(); });
  return c;
}

RecommendationComponent::~RecommendationComponent() { Stop(); }

void RecommendationComponent::Register(rpc::Server& server) {
  server.AddService(service_.get(), v1::RecommendationService::service_full_name());
  server.AddService(consumer_.get(), v1::EventSink::service_full_name());
}

void RecommendationComponent::Start() {
  // Also every second, for notes left by a crash between a batch and its refresh.
  refresher_.Start(absl::Seconds(1), [this] { service_->RefreshNeighbours(); });
}

void RecommendationComponent::Stop() { refresher_.Stop(); }

}  // namespace crm::recommendation
