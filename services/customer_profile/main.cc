// customer-profile: who the customer is. Wiring only; see customer_profile_service.h.
#include "libs/rpc/service_main.h"
#include "services/customer_profile/customer_profile_service.h"

int main(int argc, char** argv) {
  crm::rpc::ServiceSpec spec;
  spec.name = "customer-profile";
  spec.usage = "customer-profile: profiles, addresses, consent, behaviour and privacy of customers";
  spec.default_listen = "127.0.0.1:50051";
  spec.default_metrics_listen = "127.0.0.1:9151";
  spec.column_families = crm::customer_profile::CustomerProfileStore::ColumnFamilies();
  spec.build = [](crm::rpc::ServiceContext& context)
      -> absl::StatusOr<std::unique_ptr<crm::rpc::Component>> {
    auto component = crm::customer_profile::CustomerProfileComponent::Create(context);
    if (!component.ok()) return component.status();
    return std::unique_ptr<crm::rpc::Component>(std::move(*component));
  };
  return crm::rpc::RunService(argc, argv, spec);
}
