// customer-profile's process: the data-service shape (libs/events/data_service.h) around
// CustomerProfileService. Its wiring (customer_profile_component.cc) builds the event producer,
// store, segment rules and churn model, the insights refresher, service and event consumer; its
// flags:
//   --segment_rules_file: buyer levels, at-risk threshold, retention window
//   --churn_model_file: the churn model (refitted by crm-churn-fit)
//   --insights_refresh_s (default 300): how often population figures and KPI gauges are recomputed
#pragma once

#include "libs/events/data_service.h"
#include "services/customer_profile/customer_profile_service.h"

namespace crm::customer_profile {

// What RunService and the tests' ServiceHarness run: name, default ports, column families and the
// wiring.
rpc::ServiceSpec CustomerProfileSpec();
using CustomerProfileComponent = events::DataService<CustomerProfileService, CustomerProfileSpec>;

}  // namespace crm::customer_profile
