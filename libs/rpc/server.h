// Starts a gRPC server the same way in every process and in tests: callback API, health service
// (grpc.health.v1, NOT_SERVING until SetServing(true)), server reflection, the per-RPC metrics
// interceptor, the caller's trace (traceparent) current in unary handlers, message size limit,
// keepalive, a maximum connection age, and a graceful shutdown that drains in-flight calls within a
// bounded grace period. Non-copyable. Start, SetServing and Shutdown may be called from any thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "libs/metrics/metrics.h"

namespace crm::rpc {

struct ServerOptions {
  // host:port; port 0 picks a free port (see Server::port()).
  std::string listen_address = "127.0.0.1:0";
  int max_message_bytes = 4 << 20;
  // How long Shutdown waits for in-flight calls before cancelling them.
  absl::Duration drain_grace = absl::Seconds(10);
  // After this long (gRPC adds +-10% jitter so clients do not reconnect in step) a client
  // connection is told to go away (GOAWAY) and the client opens a new one for its next calls. A
  // per-connection balancer (a Kubernetes ClusterIP Service) then places that connection anew, and
  // a client that resolves a name re-resolves it, so replicas added since get traffic; without it a
  // connection, and all its calls, stays on the replica it first reached. Infinite: never.
  absl::Duration max_connection_age = absl::Minutes(5);
  // How long calls already running on a connection told to go away may still finish on it before
  // it is closed under them. Infinite: until they end.
  absl::Duration max_connection_age_grace = absl::InfiniteDuration();
  // Where per-RPC metrics go; null records none. Not owned.
  metrics::Metrics* metrics = nullptr;
  // The per-call interceptors (trace context, field-naming parse errors, per-RPC metrics). A proxy
  // that forwards raw bytes and records its own per-route metrics turns them off: they cost more
  // than the forwarding.
  bool interceptors = true;
  // A service port: only the system's own processes may call (libs/rpc/caller_auth.h), over mTLS
  // when the process has certificates (libs/rpc/transport.h), else from loopback only. Off for the
  // gateway's public front door and for test doubles.
  bool authenticate_callers = false;
  // A second, plaintext port that serves only grpc.health.v1 (host:port; empty: none), for
  // Kubernetes' gRPC probes, which cannot present a client certificate.
  std::string health_listen;
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Registers a service before Start. `full_name` (e.g. "crm.v1.CustomerProfileService") gets its
  // own health status. Not owned: the service must outlive the server.
  void AddService(grpc::Service* service, std::string full_name);
  // A catch-all handler for methods no registered service has (the gateway's proxy).
  void SetGenericService(grpc::CallbackGenericService* service);
  // Called on Shutdown after NOT_SERVING and before draining: finish long-lived streams here.
  void OnShutdown(std::function<void()> hook);

  absl::Status Start();
  // The bound port, after Start.
  int port() const { return port_; }
  // The health port, after Start (0 without one).
  int health_port() const { return health_port_; }
  // Health for the whole server ("") and every registered service.
  void SetServing(bool serving);
  // NOT_SERVING, shutdown hooks, stop accepting, drain in-flight calls until the grace period ends,
  // then cancel what is left. Idempotent.
  void Shutdown();

 private:
  // Credentials, listening port, message limits, keepalive, services and interceptors.
  void Configure(grpc::ServerBuilder& builder);
  // The plaintext port that answers only grpc.health.v1 (ServerOptions::health_listen).
  absl::Status StartHealthPort();

  ServerOptions options_;
  std::vector<std::pair<grpc::Service*, std::string>> services_;
  grpc::CallbackGenericService* generic_ = nullptr;
  std::vector<std::function<void()>> shutdown_hooks_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  // Serves only health (ServerOptions::health_listen).
  std::unique_ptr<grpc::Server> health_server_;
  std::unique_ptr<grpc::CallbackGenericService> health_only_;
  int health_port_ = 0;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace crm::rpc
