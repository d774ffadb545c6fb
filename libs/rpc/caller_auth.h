// Who may call a service's port, decided before any handler runs. Every call must carry a valid
// caller assertion (libs/auth/caller.h): the gateway's for an end user or integration, or the
// calling service's own. With TLS the assertion's signer must be the peer that presented the client
// certificate, and only the gateway may speak for end users. Then the method's access policy
// (crm.v1.policy, the same option the gateway enforces) must admit the caller's role; the system's
// own processes may call any method, since they are the system (events, cross-service checks,
// compensation). Health checks and server reflection need no caller.
//
// Refusals are UNAUTHENTICATED (no or bad assertion, wrong signer) or PERMISSION_DENIED (role),
// answered by gRPC itself, so a refused call never reaches the service. Every call by an admin
// leaves an audit log line.
//
// Handlers read the caller with CallerOf: identity fields (author, agent, actor) come from it,
// never from the body. Thread-safe.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/auth_metadata_processor.h"
#include "grpcpp/server_context.h"
#include "libs/auth/caller.h"

namespace crm::rpc {

class CallerAuthProcessor : public grpc::AuthMetadataProcessor {
 public:
  // `tls`: the connection is mutual TLS, so the peer's certificate names the signer.
  explicit CallerAuthProcessor(bool tls) : tls_(tls) {}
  // Runs inline on gRPC's thread: it only verifies an HMAC and looks up the method's policy.
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata& metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed, OutputMetadata* response) override;

 private:
  bool tls_;
};

// The caller of a call the processor admitted (or any call carrying a valid assertion).
absl::StatusOr<auth::Caller> CallerOf(const grpc::ServerContextBase& ctx);

// The agent a call acts as, for a request field that names one (`field`, e.g. "agent_id"). An agent
// acts only as themself: an empty field means them, another id is PERMISSION_DENIED. A customer
// never acts as an agent. Admins and the system's own processes may name an agent (a supervisor
// acting for one, an automatic step), and an empty field stays empty.
absl::StatusOr<std::string> ActingAgent(const auth::Caller& caller, absl::string_view field,
                                        absl::string_view claimed);

// Who did something, as a record shown beside it: "customer", "agent:a-7", "admin:ops-1",
// "service:loyalty".
std::string Actor(const auth::Caller& caller);

// Whether the caller is an end customer (through the gateway), who may act only as themself.
inline bool IsCustomer(const auth::Caller& caller) {
  return !caller.internal && caller.role == v1::ROLE_CUSTOMER;
}
inline bool IsAgent(const auth::Caller& caller) {
  return !caller.internal && caller.role == v1::ROLE_AGENT;
}

// A client's request id in the caller's own namespace: the same id from another caller is a
// different request. `method` names the call when the store's request key does not already (several
// methods sharing one record).
std::string ScopedRequestId(const auth::Caller& caller, absl::string_view request_id,
                            absl::string_view method = "");

}  // namespace crm::rpc
