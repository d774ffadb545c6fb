#include "libs/auth/caller.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "crm/internal/caller.pb.h"
#include "libs/auth/internal_keys.h"
#include "libs/auth/jwt.h"

namespace crm::auth {
namespace {

constexpr absl::string_view kVersion = "v1";

absl::Status Refused(absl::string_view why) {
  return absl::UnauthenticatedError(absl::StrCat("x-crm-caller: ", why));
}

struct Self {
  absl::Mutex mu;
  std::string name ABSL_GUARDED_BY(mu) = "unnamed";
  std::string assertion ABSL_GUARDED_BY(mu);
  absl::Time renew_after ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  // The key set the assertion was signed with: a newly installed set re-signs.
  std::shared_ptr<const InternalKeys> signed_with ABSL_GUARDED_BY(mu);
};

Self& TheSelf() {
  static Self* self = new Self();
  return *self;
}

}  // namespace

std::string Caller::Name() const { return absl::StrCat(RoleName(role), ":", subject); }

std::string Caller::RequestScope() const {
  return absl::StrCat(RoleName(role), ":", subject, internal ? ":internal" : "");
}

std::string SignCaller(const Caller& caller, absl::Time now, absl::Duration ttl) {
  internal::CallerAssertion a;
  a.set_role(caller.role);
  a.set_subject(caller.subject);
  a.set_customer_id(caller.customer_id);
  a.set_via(caller.via);
  a.set_internal(caller.internal);
  a.set_expire_unix_seconds(absl::ToUnixSeconds(now + ttl));
  const std::string payload = absl::WebSafeBase64Escape(a.SerializeAsString());
  const std::string signed_part = absl::StrCat(kVersion, ".", payload);
  return absl::StrCat(signed_part, ".",
                      absl::WebSafeBase64Escape(
                          InternalKeys::Current()->Mac(kCallerAssertionPurpose, signed_part)));
}

absl::StatusOr<Caller> VerifyCaller(absl::string_view assertion, absl::Time now) {
  if (assertion.empty())
    return Refused("this service answers only calls from the gateway or another service");
  const size_t last_dot = assertion.rfind('.');
  if (last_dot == absl::string_view::npos ||
      !absl::StartsWith(assertion, absl::StrCat(kVersion, "."))) {
    return Refused("not an assertion of this deployment");
  }
  const absl::string_view signed_part = assertion.substr(0, last_dot);
  std::string mac;
  if (!absl::WebSafeBase64Unescape(assertion.substr(last_dot + 1), &mac) ||
      !InternalKeys::Current()->Verify(kCallerAssertionPurpose, signed_part, mac)) {
    return Refused("signature does not verify");
  }
  std::string bytes;
  internal::CallerAssertion a;
  if (!absl::WebSafeBase64Unescape(signed_part.substr(kVersion.size() + 1), &bytes) ||
      !a.ParseFromString(bytes)) {
    return Refused("payload does not parse");
  }
  if (now >= absl::FromUnixSeconds(a.expire_unix_seconds())) return Refused("has expired");
  if (a.role() == v1::ROLE_UNSPECIFIED || a.subject().empty() || a.via().empty()) {
    return Refused("names no role, subject or signer");
  }
  Caller c;
  c.role = a.role();
  c.subject = a.subject();
  c.customer_id = a.customer_id();
  c.via = a.via();
  c.internal = a.internal();
  c.expires = absl::FromUnixSeconds(a.expire_unix_seconds());
  return c;
}

void SetProcessName(absl::string_view name) {
  Self& self = TheSelf();
  absl::MutexLock lock(&self.mu);
  self.name = std::string(name);
  self.renew_after = absl::InfinitePast();
}

std::string ProcessName() {
  Self& self = TheSelf();
  absl::MutexLock lock(&self.mu);
  return self.name;
}

std::string SelfAssertion() {
  Self& self = TheSelf();
  const absl::Time now = absl::Now();
  const std::shared_ptr<const InternalKeys> keys = InternalKeys::Current();
  absl::MutexLock lock(&self.mu);
  if (now >= self.renew_after || self.signed_with != keys) {
    Caller c;
    c.role = v1::ROLE_SERVICE;
    c.subject = self.name;
    c.via = self.name;
    c.internal = true;
    self.assertion = SignCaller(c, now, absl::Minutes(10));
    self.renew_after = now + absl::Minutes(5);
    self.signed_with = keys;
  }
  return self.assertion;
}

}  // namespace crm::auth
