// recommendation's wiring: what the process builds on its store (store, event producer and
// consumer, executors, background work), its flags, and its ServiceSpec for RunService and the
// tests' ServiceHarness. The RPC handlers are in recommendation_service.h.
#pragma once

#include <memory>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "libs/rpc/service_runtime.h"
#include "services/recommendation/recommendation_service.h"

// How long the best-seller lists are cached (tests set 0).
ABSL_DECLARE_FLAG(int, bestseller_cache_s);

namespace crm::recommendation {

class RecommendationComponent final : public rpc::Component {
 public:
  // What RunService and the tests\' ServiceHarness run: name, default ports, column families.
  static rpc::ServiceSpec Spec();
  static absl::StatusOr<std::unique_ptr<RecommendationComponent>> Create(
      const rpc::ServiceContext& context);
  ~RecommendationComponent() override;
  void Register(rpc::Server& server) override;
  void Start() override;
  void Stop() override;
  RecommendationService& service() { return *service_; }

 private:
  RecommendationComponent() = default;
  rpc::PeriodicTask refresher_;
  std::unique_ptr<RecommendationStore> store_;
  std::unique_ptr<BestsellerCache> bestsellers_;
  std::unique_ptr<Recommender> recommender_;
  std::unique_ptr<rpc::Executor> writes_;
  std::unique_ptr<RecommendationService> service_;
  std::unique_ptr<events::EventConsumer> consumer_;
};

}  // namespace crm::recommendation
