// The gateway's browser front end over HTTP/1.1 (civetweb): gRPC-Web (binary and text) and the Connect
// protocol (unary JSON or binary, and server streams in Connect's envelopes), with CORS. Each request is
// translated to the same admission and backend call as native gRPC; JSON uses protobuf's canonical
// mapping. Also GET /healthz for load balancers that only speak HTTP.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "services/gateway/gateway.h"

struct mg_context;
struct mg_connection;

namespace crm::gateway {

struct HttpOptions {
  std::string listen = "127.0.0.1:8080";  // port 0 picks a free port
  int threads = 32;
  // Origins allowed to call from a browser ("*" allows any).
  std::vector<std::string> allowed_origins;
};

class HttpServer {
 public:
  HttpServer(Gateway* gateway, HttpOptions options);
  ~HttpServer();

  absl::Status Start();
  int port() const { return port_; }
  // Stops accepting and waits for requests in progress (civetweb joins its workers).
  void Stop();

  // Called by civetweb for every request.
  int Handle(mg_connection* conn);

 private:
  bool OriginAllowed(absl::string_view origin) const;

  Gateway* gateway_;
  HttpOptions options_;
  mg_context* ctx_ = nullptr;
  int port_ = 0;
};

}  // namespace crm::gateway
