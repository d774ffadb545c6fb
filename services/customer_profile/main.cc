// customer-profile: who the customer is. Wiring only; see customer_profile_component.h.
#include "libs/rpc/service_main.h"
#include "services/customer_profile/customer_profile_component.h"

int main(int argc, char** argv) {
  return crm::rpc::RunService(argc, argv, crm::customer_profile::CustomerProfileComponent::Spec());
}
