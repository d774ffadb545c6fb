// loyalty's wiring: what the process builds on its store (store, event producer and consumer,
// executors, background work), its flags, and its ServiceSpec for RunService and the tests'
// ServiceHarness. The RPC handlers are in loyalty_service.h.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "libs/rpc/service_runtime.h"
#include "services/loyalty/loyalty_service.h"

namespace crm::loyalty {

class LoyaltyComponent final : public rpc::Component {
 public:
  // What RunService and the tests\' ServiceHarness run: name, default ports, column families.
  static rpc::ServiceSpec Spec();
  static absl::StatusOr<std::unique_ptr<LoyaltyComponent>> Create(
      const rpc::ServiceContext& context);
  ~LoyaltyComponent() override;
  void Register(rpc::Server& server) override;
  void Start() override;
  void Stop() override;
  LoyaltyService& service() { return *service_; }

 private:
  LoyaltyComponent() = default;
  std::unique_ptr<RulesHolder> rules_;
  std::unique_ptr<LoyaltyStore> store_;
  std::unique_ptr<rpc::Executor> writes_;
  std::unique_ptr<LoyaltyService> service_;
  std::unique_ptr<events::EventConsumer> consumer_;
  absl::Duration maintenance_interval_;
  rpc::PeriodicTask maintenance_;
};

}  // namespace crm::loyalty
