// customer-profile's wiring: what the process builds on its store (event producer, store, segment
// rules and churn model, the insights refresher, service, event consumer), its flags, and its
// ServiceSpec for RunService and the tests' ServiceHarness. The RPC handlers are in
// customer_profile_service.h.
//   --segment_rules_file: buyer levels, at-risk threshold, retention window
//   --churn_model_file: the churn model (refitted by crm-churn-fit)
//   --insights_refresh_s (default 300): how often population figures and KPI gauges are recomputed
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "libs/events/data_service.h"
#include "services/customer_profile/customer_profile_service.h"

namespace crm::customer_profile {

class CustomerProfileComponent final : public events::DataServiceComponent {
 public:
  // What RunService and the tests' ServiceHarness run: name, default ports, column families.
  static rpc::ServiceSpec Spec();
  static absl::StatusOr<std::unique_ptr<CustomerProfileComponent>> Create(
      const rpc::ServiceContext& context);
  // Stops the background work before the parts it uses go (the runtime has stopped it already).
  ~CustomerProfileComponent() override { Stop(); }
  CustomerProfileService& service() { return *service_; }

 private:
  using DataServiceComponent::DataServiceComponent;
  void OnStart() override { insights_->Start(refresh_interval_); }
  void OnStop() override { insights_->Stop(); }

  std::unique_ptr<CustomerProfileStore> store_;
  std::unique_ptr<InsightsRefresher> insights_;
  std::unique_ptr<CustomerProfileService> service_;
  absl::Duration refresh_interval_;
};

}  // namespace crm::customer_profile
