// order-tracking: orders, delivery, returns and reviews. Wiring only; see
// order_tracking_component.h.
#include "libs/rpc/service_main.h"
#include "services/order_tracking/order_tracking_component.h"

int main(int argc, char** argv) {
  return crm::rpc::RunService(argc, argv, crm::order_tracking::OrderTrackingComponent::Spec());
}
