// absl::Status inside, grpc::Status at the edge. Codes map one to one; the message travels
// unchanged so a frontend developer reads the service's own words ("email: already registered").
//
// Every error also carries a google.rpc.Status (AIP-193) in grpc::Status's binary error details,
// which gRPC sends as the `grpc-status-details-bin` trailer and the gateway turns into Connect's
// JSON `details` and gRPC-Web trailers. Its details, built here once for every service:
// - google.rpc.ErrorInfo, always: reason = the status's WithReason (libs/base/error_reason.h), else
//   the code's name ("INVALID_ARGUMENT") (ReasonOf); domain = kErrorDomain; metadata {"field": ...}
//   when the message names a field first ("email: must contain exactly one '@'").
// - google.rpc.BadRequest for INVALID_ARGUMENT naming a field: [{field, description}].
// - google.rpc.PreconditionFailure for FAILED_PRECONDITION: [{type: reason, subject: field,
//   description}].
// - google.rpc.RetryInfo when the status carries a retry delay (WithRetryDelay).
#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/support/status.h"

namespace crm::rpc {

// The domain of every ErrorInfo this API sends: its reasons are unique within it.
inline constexpr absl::string_view kErrorDomain = "crm.v1";

// `status` with a hint of how long to wait before trying again (google.rpc.RetryInfo). An OK status
// stays OK, without one.
absl::Status WithRetryDelay(absl::Status status, absl::Duration delay);
std::optional<absl::Duration> RetryDelayOf(const absl::Status& status);

// The stable reason ErrorInfo carries: the WithReason payload, else the code's name (also for
// STORAGE_ENGINE, which only means something inside the process that set it).
std::string ReasonOf(const absl::Status& status);

// The field a message names first: "address.city: is required" -> "address.city"; empty when the
// message does not start with a proto field path (lower_snake names joined by '.', each optionally
// indexed, followed by ": "; not "request", "body" or "rocksdb", which are not fields).
absl::string_view FieldOf(absl::string_view message);

// The google.rpc.Status of an error (code, message and the details above); without `describe`, the
// details leave out the descriptions (ToGrpc's fallback when the trailers would grow too large).
google::rpc::Status ErrorModel(const absl::Status& status, bool describe = true);

// The first detail of type `Detail` (e.g. google::rpc::BadRequest) in an error's
// grpc-status-details-bin, as a gRPC client received it.
template <typename Detail>
std::optional<Detail> FindDetail(const grpc::Status& status) {
  google::rpc::Status model;
  if (status.error_details().empty() || !model.ParseFromString(status.error_details())) {
    return std::nullopt;
  }
  for (const auto& any : model.details()) {
    Detail detail;
    if (any.UnpackTo(&detail)) return detail;
  }
  return std::nullopt;
}

grpc::Status ToGrpc(const absl::Status& status);
// Keeps the message, and the reason and retry delay of this domain's details, so that
// ToGrpc(FromGrpc(s)) sends what s did.
absl::Status FromGrpc(const grpc::Status& status);

}  // namespace crm::rpc
