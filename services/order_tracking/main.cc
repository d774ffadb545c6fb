// order-tracking: orders, delivery, returns and reviews. Wiring only; see order_tracking_service.h.
#include "libs/rpc/service_main.h"
#include "services/order_tracking/order_tracking_service.h"

int main(int argc, char** argv) {
  crm::rpc::ServiceSpec spec;
  spec.name = "order-tracking";
  spec.usage = "order-tracking: order lifecycle, split shipments, carrier tracking, returns and reviews";
  spec.default_listen = "127.0.0.1:50052";
  spec.default_metrics_listen = "127.0.0.1:9152";
  spec.column_families = crm::order_tracking::OrderTrackingStore::ColumnFamilies();
  spec.build = [](crm::rpc::ServiceContext& context) -> absl::StatusOr<std::unique_ptr<crm::rpc::Component>> {
    auto component = crm::order_tracking::OrderTrackingComponent::Create(context);
    if (!component.ok()) return component.status();
    return std::unique_ptr<crm::rpc::Component>(std::move(*component));
  };
  return crm::rpc::RunService(argc, argv, spec);
}
