// Caller assertions: who a call between the project's processes is for, signed so the receiving
// service can believe it. The gateway turns a verified JWT into one ("customer c_42, via gateway");
// a service acting on its own signs one for itself ("service order-tracking, internal"). Services
// take identity from it, never from a request body. Carried as `x-crm-caller` metadata:
// "v1.<base64url payload>.<base64url HMAC>", the HMAC under the deployment's internal key
// (libs/auth/internal_keys.h), with an expiry of minutes.
//
// With TLS between processes the receiving server also checks that the signer (`via`) is the peer
// that presented the client certificate (libs/rpc/caller_auth.h). Pure functions; thread-safe.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/options.pb.h"

namespace crm::auth {

inline constexpr char kCallerMetadata[] = "x-crm-caller";
// What the gateway signs as: an end user's or integration's assertion must come from it.
inline constexpr char kGatewayName[] = "gateway";

struct Caller {
  v1::Role role = v1::ROLE_UNSPECIFIED;
  std::string subject;
  // A customer caller's own customer id.
  std::string customer_id;
  std::string via;
  // A process of this system acting on its own.
  bool internal = false;
  absl::Time expires = absl::InfinitePast();

  // "customer:c_42", "agent:a-7", "service:order-tracking": who did it, for records and audit
  // lines.
  std::string Name() const;
  // The namespace of the caller's request ids: another caller's request id never answers for this
  // one.
  std::string RequestScope() const;
};

// Signs `caller` under the current internal key, valid for `ttl` from `now`.
std::string SignCaller(const Caller& caller, absl::Time now,
                       absl::Duration ttl = absl::Minutes(10));
// The caller of a valid, unexpired assertion; UNAUTHENTICATED naming what is wrong otherwise.
absl::StatusOr<Caller> VerifyCaller(absl::string_view assertion, absl::Time now);

// This process's own internal assertion ("service <name>, internal"), signed once and re-signed
// before it expires. `SetProcessName` names the process (RunService does); thread-safe.
void SetProcessName(absl::string_view name);
std::string ProcessName();
std::string SelfAssertion();

}  // namespace crm::auth
