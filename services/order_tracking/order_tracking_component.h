// order-tracking's wiring: what the process builds on its store (store, event producer and
// consumer, executors, background work), its flags, and its ServiceSpec for RunService and the
// tests' ServiceHarness. The RPC handlers are in order_tracking_service.h.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "libs/rpc/service_runtime.h"
#include "services/order_tracking/order_tracking_service.h"

namespace crm::order_tracking {

// The whole order-tracking process on an open store; main.cc and the tests build it the same way.
class OrderTrackingComponent final : public rpc::Component {
 public:
  // What RunService and the tests\' ServiceHarness run: name, default ports, column families.
  static rpc::ServiceSpec Spec();
  static absl::StatusOr<std::unique_ptr<OrderTrackingComponent>> Create(
      const rpc::ServiceContext& context);
  void Register(rpc::Server& server) override;
  void Start() override { events_->Start(); }
  void Stop() override { events_->Stop(); }
  OrderTrackingService& service() { return *service_; }
  events::EventProducer& events() { return *events_; }

 private:
  OrderTrackingComponent() = default;
  std::unique_ptr<events::EventProducer> events_;
  std::unique_ptr<OrderTrackingStore> store_;
  std::unique_ptr<rpc::Executor> writes_;
  std::unique_ptr<OrderTrackingService> service_;
  std::unique_ptr<events::EventConsumer> consumer_;
};

}  // namespace crm::order_tracking
