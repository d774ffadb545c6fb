// recommendation: catalog, models learned from purchases and browsing, blended recommendations per
// placement. Wiring only; see recommendation_component.h.
#include "libs/rpc/service_main.h"
#include "services/recommendation/recommendation_component.h"

int main(int argc, char** argv) {
  return crm::rpc::RunService(argc, argv, crm::recommendation::RecommendationComponent::Spec());
}
