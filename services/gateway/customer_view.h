// The customer 360° view (crm.v1.CustomerViewService/GetCustomerView), the one call the gateway
// answers itself: it asks each service for its section in parallel, each with a deadline of its
// own, through the gateway's ordinary forwarding (same shard routing, caller identity and
// grpc_client_* metrics), and assembles what came back. A section that fails or is late is listed
// in `unavailable` with its code and reason; only the profile's NOT_FOUND (no such customer, or
// erased) fails the whole view.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "crm/v1/customer_view.pb.h"
#include "grpcpp/support/byte_buffer.h"
#include "libs/trace/trace.h"
#include "services/gateway/gateway.h"
#include "services/gateway/upstream.h"

namespace crm::gateway {

// The calls the gateway makes to the services while answering a call of its own (a section of the
// 360° view, a part of a customer's export): each is forwarded like a call of its own, admitted
// with the outer call's caller (routing, shards, caller assertion, request id, trace, grpc_client_*
// metrics), within `timeout` capped by what is left of the outer call's deadline; relayed over
// `pool` (the front-door loop's connections; calls must then start on that loop) or through gRPC
// C++'s client with `make_context`. Copyable; `gateway` and `pool` must outlive the calls.
struct ServiceCalls {
  Gateway* gateway = nullptr;
  Admission outer;
  absl::Duration timeout;
  Gateway::ContextFactory make_context;
  UpstreamPool* pool = nullptr;
  // The outer call's trace: a call made later, from another call's answer, is still in it.
  std::optional<trace::TraceContext> trace;

  // Calls `path` with `request`; `done` gets the status and, when OK, the serialized answer. With
  // `assertion` the call carries it instead of the outer caller's.
  void Call(const char* path, const google::protobuf::Message& request,
            std::function<void(grpc::Status, std::string)> done,
            const std::string& assertion = "") const;
};

class CustomerViewComposer {
 public:
  // `section_timeout`: how long one section may take (capped by the caller's own deadline).
  CustomerViewComposer(Gateway* gateway, absl::Duration section_timeout)
      : gateway_(gateway), section_timeout_(section_timeout) {}

  // `a` is an admitted call of crm.v1.CustomerViewService: GetCustomerView, or
  // ExportCustomerDataBundle (customer_export.h); `done` receives the serialized answer or an
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
