// One call through the front door, whatever its protocol: native gRPC, gRPC-Web (binary or text),
// Connect (unary JSON or binary, GET for methods without side effects, and server streams), or the
// gateway's own health and reflection. It reads the request (one message: the API has no client
// streams), admits it (Gateway::Admit: route, request id, rate limits, token), authorizes it on the
// parsed message (the customer id, the shard), and relays it to the owning service as HTTP/2 frames
// (UpstreamPool), translating the answer into the client's protocol as it arrives: native gRPC
// passes through untouched, gRPC-Web differs only in its trailers, Connect is re-enveloped (and
// transcoded to JSON when asked). Calls that fan out to every shard, and the 360° view the gateway
// composes itself, go through Gateway::CallUnary (gRPC C++ channels) instead.
//
// gzip both ways: compressed requests (grpc-encoding, Content-Encoding, Connect-Content-Encoding,
// GET's compression=gzip) are inflated with a size cap for authorization; native gRPC forwards them
// as they came, and Connect answers are compressed when the client accepts gzip. Errors keep each
// protocol's own shape.
//
// Lives on its exchange's event loop; owned by the exchange.
#pragma once

#include <memory>

#include "services/gateway/front_door.h"

namespace crm::gateway {

struct LoopContext;

class ProxyCallBase : public Exchange::Handler {
 public:
  // The front door is shutting down: a server stream ends with UNAVAILABLE so its client reconnects
  // elsewhere; a unary call finishes (the drain waits for it).
  virtual void OnShutdown() {}
};

// The handler for a new exchange (called once its request headers are in).
std::unique_ptr<Exchange::Handler> MakeHandler(FrontDoor* door, LoopContext* ctx,
                                               Exchange* exchange);

}  // namespace crm::gateway
