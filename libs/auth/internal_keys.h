// The deployment's internal secret: what every process of one deployment shares and nobody outside
// holds. From it, keys are derived per purpose (HMAC-SHA256(secret, purpose)), so one Secret serves
// every use and a MAC made for one purpose never verifies for another:
//   - caller assertions: who a call is for, signed by the gateway or the calling service
//   (libs/auth/caller.h);
//   - page tokens: the resume position of a listing, so a client cannot forge one
//   (libs/api/paging.h).
//
// The file holds one secret per line (at least 32 bytes each, base64 or raw). The first line signs;
// every line verifies. It is read at start-up, so a key rotates without downtime in three rolling
// restarts: add the new key as the second line (everyone verifies it), then make it the first
// (everyone signs with it), then, an hour later (page tokens live that long), drop the old one.
// deploy/local/run.sh creates the file; Kubernetes mounts it from a Secret (deploy/README.md).
//
// One set per process, installed at start-up (RunService, tests) and read by everything after:
// immutable once installed, so thread-safe without locks on the hot path.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace crm::auth {

// Purposes keys are derived for.
inline constexpr absl::string_view kCallerAssertionPurpose = "crm caller assertion v1";
inline constexpr absl::string_view kPageTokenPurpose = "crm page token v1";

class InternalKeys {
 public:
  // Secrets one per line; INVALID_ARGUMENT when there is none or one is shorter than 32 bytes.
  static absl::StatusOr<std::shared_ptr<const InternalKeys>> FromText(absl::string_view text);
  static absl::StatusOr<std::shared_ptr<const InternalKeys>> FromFile(const std::string& path);
  // A random secret: for tests and for a process that only talks to itself.
  static std::shared_ptr<const InternalKeys> Random();

  // HMAC-SHA256 of `data` under the signing key of `purpose` (32 bytes).
  std::string Mac(absl::string_view purpose, absl::string_view data) const;
  // Whether `mac` is the MAC of `data` under any of the keys of `purpose`, compared in constant
  // time. `mac` may be truncated to its first 16 bytes or more.
  bool Verify(absl::string_view purpose, absl::string_view data, absl::string_view mac) const;

  // The process-wide set (a random one until Install is called).
  static std::shared_ptr<const InternalKeys> Current();
  static void Install(std::shared_ptr<const InternalKeys> keys);

 private:
  explicit InternalKeys(std::vector<std::string> secrets);
  // The derived keys of `purpose`, signing key first.
  std::vector<std::string> Derive(absl::string_view purpose) const;
  const std::vector<std::string>* Known(absl::string_view purpose) const;

  std::vector<std::string> secrets_;
  // Derived once for the known purposes: a MAC is then one HMAC, not two.
  std::vector<std::string> caller_keys_, page_token_keys_;
};

// HMAC-SHA256 (32 bytes).
std::string HmacSha256(absl::string_view key, absl::string_view data);

}  // namespace crm::auth
