// gateway: the one front door for web and mobile frontends. Native gRPC on --listen, gRPC-Web and
// Connect on --http_listen, /metrics on --metrics_listen; every call is authenticated (JWT),
// authorized from the proto's policy option, rate limited and forwarded to the owning service.
// Wiring only; see gateway_component.h.
#include "libs/rpc/service_main.h"
#include "services/gateway/gateway_component.h"

int main(int argc, char** argv) {
  return crm::rpc::RunService(argc, argv, crm::gateway::GatewaySpec());
}
