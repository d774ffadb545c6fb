// Bearer tokens (JSON Web Tokens, RFC 7519) as the gateway accepts them: who the caller is and in which
// role. The gateway trusts nothing else from a client as identity.
//
// Accepted: HS256 (shared secret), RS256 (RSA public key) and ES256 (P-256 public key, PEM). The verifier
// only accepts the algorithm its key is for, so a token cannot pick a weaker check ("alg": "none", or HS256
// signed with the public key). Claims: `sub` (required), `role` ("customer", "agent", "admin", "service"),
// `customer_id` (a customer's own id; defaults to `sub`), `exp` (required), `nbf`, `iss`, `aud`.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/options.pb.h"

namespace crm::auth {

struct Principal {
  std::string subject;
  v1::Role role = v1::ROLE_UNSPECIFIED;
  // The customer a customer-role caller is; empty for staff and services.
  std::string customer_id;
  absl::Time expires;
};

// "customer" -> ROLE_CUSTOMER; ROLE_UNSPECIFIED for anything else.
v1::Role ParseRole(absl::string_view name);
// ROLE_CUSTOMER -> "customer".
absl::string_view RoleName(v1::Role role);

struct VerifierOptions {
  // Exactly one key source: an HMAC secret, or a PEM public key (RSA for RS256, EC P-256 for ES256).
  std::string hmac_secret;
  std::string public_key_pem;
  // Required `iss` and `aud` when not empty.
  std::string issuer;
  std::string audience;
  // Tolerated clock difference for exp and nbf.
  absl::Duration clock_skew = absl::Seconds(30);
};

class Verifier {
 public:
  static absl::StatusOr<std::unique_ptr<Verifier>> Create(VerifierOptions options);
  ~Verifier();

  // The principal of a valid token; UNAUTHENTICATED naming what is wrong otherwise. Thread-safe.
  absl::StatusOr<Principal> Verify(absl::string_view token, absl::Time now) const;

 private:
  struct Key;
  Verifier(VerifierOptions options, std::unique_ptr<Key> key);
  VerifierOptions options_;
  std::unique_ptr<Key> key_;
};

// Signs `claims_json` (a JSON object) as a compact JWT. `alg` is "HS256" (key = the secret), "RS256" or
// "ES256" (key = a PEM private key). For tools and tests that mint tokens; the gateway never signs.
absl::StatusOr<std::string> Sign(absl::string_view alg, absl::string_view key, absl::string_view claims_json);

}  // namespace crm::auth
