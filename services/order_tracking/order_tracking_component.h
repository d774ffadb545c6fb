// order-tracking's process: the data-service shape (libs/events/data_service.h) around
// OrderTrackingService. Its wiring (order_tracking_component.cc) builds the return policy, event
// producer, store, service and the erasure consumer, and ends open WatchOrder streams when the
// server shuts down; its flag: --return_policy_file.
#pragma once

#include "libs/events/data_service.h"
#include "services/order_tracking/order_tracking_service.h"

namespace crm::order_tracking {

// What RunService and the tests' ServiceHarness run: name, default ports, column families and the
// wiring.
rpc::ServiceSpec OrderTrackingSpec();
using OrderTrackingComponent = events::DataService<OrderTrackingService, OrderTrackingSpec>;

}  // namespace crm::order_tracking
