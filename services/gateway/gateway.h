// The gateway's core, shared by its two front ends (native gRPC over HTTP/2, and gRPC-Web/Connect
// over HTTP/1.1): admits a call (route, request id, rate limits, token, authorization from the
// proto's policy option), forwards it to the owning service over gRPC, and records metrics and one
// access-log line. Front ends only translate wire formats. Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/client_callback.h"
#include "libs/auth/caller.h"
#include "libs/auth/jwt.h"
#include "libs/metrics/metrics.h"
#include "libs/rpc/backends.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "services/gateway/rate_limiter.h"
#include "services/gateway/routes.h"

namespace crm::gateway {

class UpstreamPool;

class CustomerViewComposer;

enum class Protocol { kGrpc, kGrpcWeb, kGrpcWebText, kConnect };
absl::string_view ProtocolName(Protocol protocol);

struct GatewayOptions {
  // Shared with whoever reloads its keys (a JWK Set file that changed).
  std::shared_ptr<auth::Verifier> verifier;
  // Requests per second (burst: twice that) per principal, by role, and per client IP before the
  // token is even looked at. 0 = unlimited.
  double customer_rps = 20;
  double agent_rps = 100;
  double admin_rps = 50;
  double service_rps = 5000;
  double ip_rps = 500;
  // Deadlines: a call without one gets the default; a client's own is capped at the maximum.
  absl::Duration default_timeout = absl::Seconds(5);
  absl::Duration max_timeout = absl::Seconds(30);
  // Server streams (WatchOrder) live long: their default and cap.
  absl::Duration stream_max_timeout = absl::Hours(1);
  size_t max_request_bytes = 1 << 20;
  // The 360° view: how long each section's service may take before the view answers without it.
  absl::Duration view_section_timeout = absl::Milliseconds(800);
  bool access_log = true;
};

// What a front end knows about a call before forwarding it.
struct CallInfo {
  Protocol protocol = Protocol::kGrpc;
  std::string path;           // "/crm.v1.CustomerProfileService/GetCustomer"
  std::string authorization;  // the Authorization header / metadata value
  std::string peer_ip;
  std::string request_id_header;  // x-request-id as sent, may be empty
  std::optional<absl::Duration> client_timeout;
};

// A call on its way through.
struct Admission {
  const Route* route = nullptr;
  auth::Principal principal;
  // The signed caller assertion the services believe (libs/auth/caller.h): who this call is for.
  std::string caller_assertion;
  std::string request_id;
  absl::Duration timeout;
  // Where the call goes: one channel, or one per shard for a fan-out call, and the addresses of
  // those channels (the front door speaks HTTP/2 to a single target directly).
  std::vector<std::shared_ptr<grpc::Channel>> targets;
  std::vector<std::string> target_addresses;
  // With RESOURCE_EXHAUSTED from a rate limit: when to try again.
  absl::Duration retry_after;
  absl::Time started;
};

class Gateway {
 public:
  Gateway(GatewayOptions options, rpc::Backends* backends, metrics::Metrics* metrics);
  ~Gateway();

  const GatewayOptions& options() const { return options_; }

  // Before the body: the route, the request id, rate limits and the token. Fills `a`.
  absl::Status Admit(const CallInfo& info, Admission& a);
  // With the parsed request: the route's policy for this principal, then the backend channel(s).
  absl::Status Authorize(const google::protobuf::Message& request, Admission& a);
  // Parses `request` as the route's request type (INVALID_ARGUMENT when it does not parse), then
  // Authorize.
  absl::Status AuthorizeBytes(absl::string_view request, Admission& a);

  // Request id, caller and deadline for a backend call.
  void PrepareContext(const Admission& a, grpc::ClientContext& ctx) const;

  // Calls the admitted unary method on every target (or, for a local route, composes the answer)
  // and hands the (merged) response to `done`, on a gRPC thread. `make_context` builds each backend
  // call's context (e.g. one that propagates the caller's cancellation); PrepareContext is applied
  // to it. With `pool` (a front-door loop's connections, called on that loop) a local route's own
  // backend calls are relayed over it and `done` runs on the loop.
  using ContextFactory = std::function<std::unique_ptr<grpc::ClientContext>()>;
  void CallUnary(const Admission& a, const grpc::ByteBuffer& request, ContextFactory make_context,
                 std::function<void(grpc::Status, grpc::ByteBuffer)> done,
                 UpstreamPool* pool = nullptr);
  // The client metrics of the route's backend calls (streams record through this too).
  metrics::RpcMetrics::Method& BackendMetrics(const Route& route) {
    return *backend_metrics_[route.index];
  }

  // In-flight gauge, then metrics and the access-log line when the call ends. `a.route` may be
  // null.
  void CallStarted(Protocol protocol);
  void CallEnded(const CallInfo& info, const Admission& a, const grpc::Status& status);

 private:
  // A verified token's principal and the caller assertion made for it, re-signed before it expires.
  struct Verified {
    auth::Principal principal;
    std::string assertion;
    absl::Time renew_after;
    // The verifier's key generation it was verified under: a rotated key set verifies every token
    // again.
    uint64_t key_generation = 0;
  };
  absl::Status Deny(absl::string_view reason, absl::Status status);

  // The steps of Admit, in order; each fills its part of `a` or refuses the call.
  // The client's x-request-id when it is well-formed, else a new one.
  absl::Status AssignRequestId(const std::string& header, Admission& a);
  // The per-address limit, before the token is even looked at.
  absl::Status LimitAddress(const std::string& peer_ip, absl::Time now, Admission& a);
  // The bearer token's principal and the caller assertion made for it.
  absl::Status Identify(absl::string_view authorization, absl::Time now, Admission& a);
  // The per-principal limit of the principal's role.
  absl::Status LimitPrincipal(absl::Time now, Admission& a);
  // The route's policy admits the principal's role.
  absl::Status CheckRole(const Admission& a);
  // The client's deadline capped by the route's maximum, or the route's default.
  absl::Duration CallTimeout(const Route& route,
                             std::optional<absl::Duration> client_timeout) const;
  // Takes one request from `key`'s bucket (`rps`, burst twice that); when the bucket is empty,
  // counts the refusal under `label`, sets a.retry_after and returns how long to wait (else zero).
  absl::Duration Throttle(absl::string_view key, double rps, absl::string_view label,
                          absl::Time now, Admission& a);
  double RoleRps(v1::Role role) const;

  // CallUnary's two ways: the one owning target, or every shard with the answers merged.
  void CallOneTarget(const Admission& a, const grpc::ByteBuffer& request,
                     const ContextFactory& make_context,
                     std::function<void(grpc::Status, grpc::ByteBuffer)> done);
  void CallEveryShard(const Admission& a, const grpc::ByteBuffer& request,
                      const ContextFactory& make_context,
                      std::function<void(grpc::Status, grpc::ByteBuffer)> done);
  // The principal of a token, verified once and then remembered until it expires: signature checks
  // and JSON parsing cost more than the rest of forwarding a call.
  absl::StatusOr<Verified> Authenticate(absl::string_view token, absl::Time now);
  prometheus::Counter& RequestCounter(const Route* route, Protocol protocol, int code);

  GatewayOptions options_;
  std::unique_ptr<CustomerViewComposer> view_;
  rpc::Backends* backends_;
  metrics::Metrics* metrics_;
  RateLimiter limiter_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* latency_;
  prometheus::Family<prometheus::Gauge>* in_flight_;
  prometheus::Family<prometheus::Counter>* rate_limited_;
  prometheus::Family<prometheus::Counter>* denied_;
  // Per route (null unless its policy is fan_out_replicated): calls whose shards answered copies
  // that differ.
  std::vector<prometheus::Counter*> replicated_answers_differ_;
  // Per-call metrics resolved once: label lookups in prometheus-cpp take a lock and build maps.
  static constexpr int kProtocols = 4;
  static constexpr int kCodes = 17;
  std::array<prometheus::Gauge*, kProtocols> in_flight_by_protocol_{};
  std::array<prometheus::Histogram*, kProtocols> latency_by_protocol_{};
  struct RouteCounters {
    std::array<std::array<std::atomic<prometheus::Counter*>, kCodes>, kProtocols> by_code{};
  };
  std::unique_ptr<RouteCounters[]> request_counters_;  // one per route, then one for unknown paths
  // grpc_client_* metrics of the backend calls, per route (the same families the services' channels
  // use).
  std::vector<metrics::RpcMetrics::Method*> backend_metrics_;
  // grpc_server_* metrics of the calls the gateway serves, per route, recorded here rather than by
  // an interceptor (cheaper), so the SLO rules and dashboards treat the gateway like every service.
  std::vector<metrics::RpcMetrics::Method*> server_metrics_;

  struct TokenStripe {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, Verified> verified ABSL_GUARDED_BY(mu);
  };
  // How long a caller assertion made for a token is good for (re-signed at half of it).
  static constexpr absl::Duration kAssertionLifetime = absl::Minutes(5);
  static constexpr size_t kTokenStripes = 16;
  static constexpr size_t kTokensPerStripe = 4096;
  std::array<TokenStripe, kTokenStripes> tokens_;
};

// The bytes of a ByteBuffer, contiguous.
std::string ToBytes(const grpc::ByteBuffer& buffer);
grpc::ByteBuffer FromBytes(absl::string_view bytes);

}  // namespace crm::gateway
