// loyalty's process: the data-service shape (libs/events/data_service.h) around LoyaltyService.
// Its wiring (loyalty_component.cc) builds the rules, store, service, event consumer and the
// maintenance run; its flags: --rules_file, --maintenance_interval_s.
#pragma once

#include "libs/events/data_service.h"
#include "services/loyalty/loyalty_service.h"

namespace crm::loyalty {

// What RunService and the tests' ServiceHarness run: name, default ports, column families and the
// wiring.
rpc::ServiceSpec LoyaltySpec();
using LoyaltyComponent = events::DataService<LoyaltyService, LoyaltySpec>;

}  // namespace crm::loyalty
