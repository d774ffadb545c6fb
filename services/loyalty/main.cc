// loyalty: tiers, growth value, points and credit. Wiring only; see loyalty_service.h.
#include "libs/rpc/service_main.h"
#include "services/loyalty/loyalty_service.h"

int main(int argc, char** argv) {
  crm::rpc::ServiceSpec spec;
  spec.name = "loyalty";
  spec.usage = "loyalty: membership tiers, growth value, points ledger and trade credit";
  spec.default_listen = "127.0.0.1:50053";
  spec.default_metrics_listen = "127.0.0.1:9153";
  spec.column_families = crm::loyalty::LoyaltyStore::ColumnFamilies();
  spec.build = [](crm::rpc::ServiceContext& context) -> absl::StatusOr<std::unique_ptr<crm::rpc::Component>> {
    auto component = crm::loyalty::LoyaltyComponent::Create(context);
    if (!component.ok()) return component.status();
    return std::unique_ptr<crm::rpc::Component>(std::move(*component));
  };
  return crm::rpc::RunService(argc, argv, spec);
}
