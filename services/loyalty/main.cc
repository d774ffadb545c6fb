// loyalty: tiers, growth value, points and credit. Wiring only; see loyalty_component.h.
#include "libs/rpc/service_main.h"
#include "services/loyalty/loyalty_component.h"

int main(int argc, char** argv) {
  return crm::rpc::RunService(argc, argv, crm::loyalty::LoyaltyComponent::Spec());
}
