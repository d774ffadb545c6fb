// The gateway's native gRPC front end: a generic service that takes every method no registered service
// has (all of crm.v1; health and reflection are the gateway's own), admits the call and forwards the
// request bytes unchanged. Unary calls and server streams (WatchOrder, with flow control). The caller's
// cancellation and deadline propagate to the backend call.
#pragma once

#include "grpcpp/generic/async_generic_service.h"
#include "services/gateway/gateway.h"

namespace crm::gateway {

class GrpcProxy : public grpc::CallbackGenericService {
 public:
  explicit GrpcProxy(Gateway* gateway) : gateway_(gateway) {}

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override;

 private:
  friend class ProxyReactor;
  Gateway* gateway_;
};

// "ipv4:10.0.0.1:5000" / "ipv6:[::1]:5000" -> the address alone.
std::string PeerAddress(absl::string_view peer);

}  // namespace crm::gateway
