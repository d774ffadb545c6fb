// Bearer tokens (JSON Web Tokens, RFC 7519) as the gateway accepts them: who the caller is and in
// which role. The gateway trusts nothing else from a client as identity.
//
// Accepted: HS256 (shared secret), RS256 (RSA public key, 2048 bits or more) and ES256 (P-256
// public key). Keys come as one secret, one PEM public key, or a JWK Set (RFC 7517: "kty" RSA, EC
// P-256 or oct, with "kid"), the form identity providers such as Keycloak publish; a token's "kid"
// header picks the key. The verifier only accepts the algorithm its key is for, so a token cannot
// pick a weaker check ("alg": "none", or HS256 signed with the public key). A JWK Set file is
// re-read when it changes (ReloadIfChanged), so keys rotate without a restart.
//
// Claims: `sub` (required), `role` ("customer", "agent", "admin", "service"), `customer_id` (a
// customer's own id; defaults to `sub`), `exp` (required), `nbf`, `iat`, `iss`, `aud`. Times must
// be numbers of seconds between 1970 and 9999; a token not yet valid, issued in the future,
// expired, or living longer than `max_lifetime` is refused. A header with "crit" is refused (no
// extension is understood).
//
// Why our own verifier rather than a library: Debian 12's libjwt 1.10 and cpp-jwt 1.4 have no JWK
// Set support, and the project already needs OpenSSL for nothing else; the attack cases are tested
// in tests/integration/gateway_test.cc and tests/unit/jwt_test.cc.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "crm/v1/options.pb.h"
#include "libs/text/file.h"

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
  // Exactly one key source: an HMAC secret, a PEM public key (RSA for RS256, EC P-256 for ES256),
  // or a JWK Set (its JSON text, or a file that is re-read when it changes).
  std::string hmac_secret;
  std::string public_key_pem;
  std::string jwks_json;
  std::string jwks_file;
  // Required `iss` and `aud` when not empty.
  std::string issuer;
  std::string audience;
  // Tolerated clock difference for exp, nbf and iat.
  absl::Duration clock_skew = absl::Seconds(30);
  // The longest a token may live (exp minus iat, or minus now without iat): a stolen long-lived
  // token is refused however well it is signed.
  absl::Duration max_lifetime = absl::Hours(24);
};

class Verifier {
 public:
  static absl::StatusOr<std::unique_ptr<Verifier>> Create(VerifierOptions options);
  ~Verifier();

  // The principal of a valid token; UNAUTHENTICATED naming what is wrong otherwise. Thread-safe.
  absl::StatusOr<Principal> Verify(absl::string_view token, absl::Time now) const;

  // With a JWK Set file: re-reads it when its modification time or size changed. A file that does
  // not parse keeps the keys in use (the error is returned to log). Returns whether the keys
  // changed. Thread-safe.
  absl::StatusOr<bool> ReloadIfChanged();
  // Entries of the JWK Set in use that were skipped because they cannot verify here, each with why
  // (for a log line).
  std::vector<std::string> skipped_keys() const;
  // Bumped whenever the keys change, so a cache of verified tokens knows to verify again.
  uint64_t generation() const;

  struct Key;
  struct KeySet;

 private:
  Verifier(VerifierOptions options, std::shared_ptr<const KeySet> keys);
  std::shared_ptr<const KeySet> keys() const;

  VerifierOptions options_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const KeySet> keys_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 1;
  text::FileStamp file_stamp_ ABSL_GUARDED_BY(mu_);
};

// Signs `claims_json` (a JSON object) as a compact JWT. `alg` is "HS256" (key = the secret),
// "RS256" or "ES256" (key = a PEM private key). For tools and tests that mint tokens; the gateway
// never signs. `kid`, when not empty, goes into the header (the key id a JWK Set verifier looks the
// key up by).
absl::StatusOr<std::string> Sign(absl::string_view alg, absl::string_view key,
                                 absl::string_view claims_json, absl::string_view kid = "");

}  // namespace crm::auth
