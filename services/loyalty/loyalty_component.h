// loyalty's wiring: what the process builds on its store (rules, store, service, event consumer,
// the maintenance run), its flags, and its ServiceSpec for RunService and the tests'
// ServiceHarness. The RPC handlers are in loyalty_service.h.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "libs/events/data_service.h"
#include "services/loyalty/loyalty_service.h"

namespace crm::loyalty {

class LoyaltyComponent final : public events::DataServiceComponent {
 public:
  // What RunService and the tests' ServiceHarness run: name, default ports, column families.
  static rpc::ServiceSpec Spec();
  static absl::StatusOr<std::unique_ptr<LoyaltyComponent>> Create(
      const rpc::ServiceContext& context);
  // Stops the background work before the parts it uses go (the runtime has stopped it already).
  ~LoyaltyComponent() override { Stop(); }
  LoyaltyService& service() { return *service_; }

 private:
  using DataServiceComponent::DataServiceComponent;
  void OnStart() override { service_->CountMembers(); }
  // Expires points and re-evaluates tiers (also callable as RunMaintenance).
  void Maintain();

  std::unique_ptr<RulesHolder> rules_;
  std::unique_ptr<LoyaltyStore> store_;
  std::unique_ptr<LoyaltyService> service_;
};

}  // namespace crm::loyalty
