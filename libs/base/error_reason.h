// A status's reason: a stable, machine-readable name (UPPER_SNAKE_CASE, the form
// google.rpc.ErrorInfo.reason takes) carried beside the message as a payload, so that code decides
// on the reason and never on the message text, which is for people and may be reworded. Clients
// read it too: rpc::ToGrpc (libs/rpc/status.h) sends it as the error's ErrorInfo.reason (the code's
// name when none is set), and rpc::FromGrpc restores it from a service's answer.
// Header-only; the functions are pure.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/string_view.h"

namespace crm {

inline constexpr absl::string_view kReasonPayloadUrl = "type.googleapis.com/crm.ErrorReason";

// Reasons code acts on.
// The status came from RocksDB (libs/store FromRocksDb): a commit may be retried on it. Local to
// the process: clients see the code's name as the reason instead.
inline constexpr absl::string_view kReasonStorageEngine = "STORAGE_ENGINE";
// A return was asked for after the item's return window ended.
inline constexpr absl::string_view kReasonReturnWindowClosed = "RETURN_WINDOW_CLOSED";
// The gateway's rate limit refused the call; RetryInfo says when to try again.
inline constexpr absl::string_view kReasonRateLimited = "RATE_LIMITED";

// `status` with `reason` attached (an OK status stays OK, without one).
inline absl::Status WithReason(absl::Status status, absl::string_view reason) {
  if (!status.ok()) status.SetPayload(kReasonPayloadUrl, absl::Cord(reason));
  return status;
}

inline bool HasReason(const absl::Status& status, absl::string_view reason) {
  const auto payload = status.GetPayload(kReasonPayloadUrl);
  return payload.has_value() && *payload == reason;
}

}  // namespace crm
