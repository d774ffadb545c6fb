// order-tracking's wiring: what the process builds on its store (return policy, event producer,
// store, service, the erasure consumer), its flags, and its ServiceSpec for RunService and the
// tests' ServiceHarness. The RPC handlers are in order_tracking_service.h.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "libs/events/data_service.h"
#include "services/order_tracking/order_tracking_service.h"

namespace crm::order_tracking {

class OrderTrackingComponent final : public events::DataServiceComponent {
 public:
  // What RunService and the tests' ServiceHarness run: name, default ports, column families.
  static rpc::ServiceSpec Spec();
  static absl::StatusOr<std::unique_ptr<OrderTrackingComponent>> Create(
      const rpc::ServiceContext& context);
  // Stops the background work before the parts it uses go (the runtime has stopped it already).
  ~OrderTrackingComponent() override { Stop(); }
  // Also ends open WatchOrder streams when the server shuts down.
  void Register(rpc::Server& server) override;
  OrderTrackingService& service() { return *service_; }

 private:
  using DataServiceComponent::DataServiceComponent;
  std::unique_ptr<OrderTrackingStore> store_;
  std::unique_ptr<OrderTrackingService> service_;
};

}  // namespace crm::order_tracking
