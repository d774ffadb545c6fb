// One unary gRPC call relayed over an event loop's UpstreamPool, for the calls the gateway makes
// itself (the 360° view's sections): the request message framed as gRPC does, the answer's message
// and status handed back on the loop. Unlike gRPC C++'s client it needs no completion-queue
// threads and no hop back to the loop, which made each section cost as much as a whole call.
//
// Runs on the pool's loop: start it there; `done` is called there once.
#pragma once

#include <functional>
#include <string>

#include "grpcpp/support/status.h"
#include "services/gateway/upstream.h"

namespace crm::gateway {

// Calls `path` at `address` with `message` (a serialized request); `headers` are what the call
// carries besides the protocol's own (:method, :path, content-type, te): grpc-timeout,
// x-request-id, traceparent, the caller assertion. `done` gets the status and, when it is OK, the
// serialized answer.
void CallUpstreamUnary(UpstreamPool& pool, const std::string& address, const std::string& path,
                       Headers headers, const std::string& message,
                       std::function<void(grpc::Status, std::string)> done);

}  // namespace crm::gateway
