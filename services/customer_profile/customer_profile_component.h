// customer-profile's wiring: what the process builds on its store (store, event producer and
// consumer, executors, background work), its flags, and its ServiceSpec for RunService and the
// tests' ServiceHarness. The RPC handlers are in customer_profile_service.h.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "libs/rpc/service_runtime.h"
#include "services/customer_profile/customer_profile_service.h"

namespace crm::customer_profile {

// The whole customer-profile process on an open store: outbox, store, executor, service, the event
// consumer and the insights refresher. main.cc and the tests build it the same way.
//   --segment_rules_file (env CRM_SEGMENT_RULES_FILE): buyer levels, at-risk threshold, retention
//   window
//   --insights_refresh_s (default 300): how often population figures and KPI gauges are recomputed
class CustomerProfileComponent final : public rpc::Component {
 public:
  // What RunService and the tests\' ServiceHarness run: name, default ports, column families.
  static rpc::ServiceSpec Spec();
  static absl::StatusOr<std::unique_ptr<CustomerProfileComponent>> Create(
      const rpc::ServiceContext& context);
  void Register(rpc::Server& server) override;
  void Start() override;
  void Stop() override;
  CustomerProfileService& service() { return *service_; }
  events::EventProducer& events() { return *events_; }

 private:
  CustomerProfileComponent() = default;
  std::unique_ptr<events::EventProducer> events_;
  std::unique_ptr<CustomerProfileStore> store_;
  std::unique_ptr<rpc::Executor> writes_;
  std::unique_ptr<InsightsRefresher> insights_;
  std::unique_ptr<CustomerProfileService> service_;
  std::unique_ptr<events::EventConsumer> consumer_;
  absl::Duration refresh_interval_;
};

}  // namespace crm::customer_profile
