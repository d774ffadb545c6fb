// The gateway's wiring: its flags (tokens, CORS, rate limits, deadlines, front door limits), the
// Component that builds the Gateway and its FrontDoor, and its ServiceSpec for RunService.
#pragma once

#include "libs/rpc/service_runtime.h"

namespace crm::gateway {

rpc::ServiceSpec GatewaySpec();

}  // namespace crm::gateway
