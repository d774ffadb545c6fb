// The customer 360° view (crm.v1.CustomerViewService/GetCustomerView), the one call the gateway
// answers itself: it asks each service for its section in parallel, each with a deadline of its
// own, through the gateway's ordinary forwarding (same shard routing, caller identity and
// grpc_client_* metrics), and assembles what came back. A section that fails or is late is listed
// in `unavailable` with its code and reason; only the profile's NOT_FOUND (no such customer, or
// erased) fails the whole view.
#pragma once

#include <functional>

#include "absl/time/time.h"
#include "crm/v1/customer_view.pb.h"
#include "grpcpp/support/byte_buffer.h"
#include "services/gateway/gateway.h"
#include "services/gateway/upstream.h"

namespace crm::gateway {

class CustomerViewComposer {
 public:
  // `section_timeout`: how long one section may take (capped by the caller's own deadline).
  CustomerViewComposer(Gateway* gateway, absl::Duration section_timeout)
      : gateway_(gateway), section_timeout_(section_timeout) {}

  // `a` is the admitted GetCustomerView call; `done` receives the serialized CustomerView or an
  // error.
  // With `pool` (the front-door loop's connections; the call must be on that loop) the sections
  // are relayed over it; without, they go through gRPC C++'s client with `make_context`.
  void Compose(const Admission& a, const grpc::ByteBuffer& request,
               Gateway::ContextFactory make_context,
               std::function<void(grpc::Status, grpc::ByteBuffer)> done,
               UpstreamPool* pool = nullptr);

 private:
  Gateway* const gateway_;
  const absl::Duration section_timeout_;
};

}  // namespace crm::gateway
