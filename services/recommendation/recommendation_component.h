// recommendation's wiring: what the process builds on its store (store, best-seller cache,
// recommender, service, event consumer, the neighbour refresh), its flags, and its ServiceSpec for
// RunService and the tests' ServiceHarness. The RPC handlers are in recommendation_service.h.
#pragma once

#include <memory>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "libs/events/data_service.h"
#include "services/recommendation/recommendation_service.h"

// How long the best-seller lists are cached (tests set 0).
ABSL_DECLARE_FLAG(int, bestseller_cache_s);

namespace crm::recommendation {

class RecommendationComponent final : public events::DataServiceComponent {
 public:
  // What RunService and the tests' ServiceHarness run: name, default ports, column families.
  static rpc::ServiceSpec Spec();
  static absl::StatusOr<std::unique_ptr<RecommendationComponent>> Create(
      const rpc::ServiceContext& context);
  // Stops the background work before the parts it uses go (the runtime has stopped it already).
  ~RecommendationComponent() override { Stop(); }
  RecommendationService& service() { return *service_; }

 private:
  using DataServiceComponent::DataServiceComponent;
  std::unique_ptr<RecommendationStore> store_;
  std::unique_ptr<BestsellerCache> bestsellers_;
  std::unique_ptr<Recommender> recommender_;
  std::unique_ptr<RecommendationService> service_;
};

}  // namespace crm::recommendation
