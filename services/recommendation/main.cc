// recommendation: catalog, models learned from purchases and browsing, blended recommendations per
// placement. Wiring only; see recommendation_service.h.
#include "libs/rpc/service_main.h"
#include "services/recommendation/recommendation_service.h"

int main(int argc, char** argv) {
  crm::rpc::ServiceSpec spec;
  spec.name = "recommendation";
  spec.usage = "recommendation: item-to-item, bundles, category affinity, best sellers, occasions and upgrades";
  spec.default_listen = "127.0.0.1:50055";
  spec.default_metrics_listen = "127.0.0.1:9155";
  spec.column_families = crm::recommendation::RecommendationStore::ColumnFamilies();
  spec.build = [](crm::rpc::ServiceContext& context) -> absl::StatusOr<std::unique_ptr<crm::rpc::Component>> {
    auto component = crm::recommendation::RecommendationComponent::Create(context);
    if (!component.ok()) return component.status();
    return std::unique_ptr<crm::rpc::Component>(std::move(*component));
  };
  return crm::rpc::RunService(argc, argv, spec);
}
