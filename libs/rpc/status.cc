#include "libs/rpc/status.h"

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"
#include "libs/base/error_reason.h"

namespace crm::rpc {
namespace {

constexpr absl::string_view kRetryDelayPayloadUrl = "type.googleapis.com/crm.RetryDelayMs";

// grpc-status-details-bin travels in HTTP/2 trailers beside grpc-message, and many gRPC clients
// refuse more than 8 KiB of metadata: past this budget the details lose their descriptions, then
// go, so that the code and message always arrive.
constexpr size_t kMaxTrailerBytes = 6 << 10;

// Words the messages put first that are not request fields: the request or body as a whole, the
// storage engine.
bool IsNotAField(absl::string_view word) {
  return word == "request" || word == "body" || word == "rocksdb";
}

// Codes whose message, by the API's convention, starts with the request's field at fault. Others
// (UNAVAILABLE "customer-profile: ...", UNAUTHENTICATED "authorization: ...") start with something
// that is not a field; so do the storage engine's own errors.
bool NamesField(const absl::Status& status) {
  if (HasReason(status, kReasonStorageEngine)) return false;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kPermissionDenied: return true;
    default: return false;
  }
}

// What the message says after its field ("email: must ..." -> "must ..."), or all of it.
absl::string_view DescriptionOf(absl::string_view message, absl::string_view field) {
  return field.empty() ? message : message.substr(field.size() + 2);
}

}  // namespace

absl::Status WithRetryDelay(absl::Status status, absl::Duration delay) {
  if (!status.ok()) {
    status.SetPayload(kRetryDelayPayloadUrl,
                      absl::Cord(absl::StrCat(absl::ToInt64Milliseconds(delay))));
  }
  return status;
}

std::optional<absl::Duration> RetryDelayOf(const absl::Status& status) {
  const auto payload = status.GetPayload(kRetryDelayPayloadUrl);
  int64_t ms = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &ms)) return std::nullopt;
  return absl::Milliseconds(ms);
}

std::string ReasonOf(const absl::Status& status) {
  const auto payload = status.GetPayload(kReasonPayloadUrl);
  // STORAGE_ENGINE says the status came from this process's RocksDB (a commit may be retried on
  // it): another process must not take it for its own, and it is no part of the API.
  if (payload.has_value() && *payload != kReasonStorageEngine) return std::string(*payload);
  return absl::StatusCodeToString(status.code());
}

absl::string_view FieldOf(absl::string_view message) {
  const size_t colon = message.find(": ");
  if (colon == 0 || colon == absl::string_view::npos) return "";
  const absl::string_view field = message.substr(0, colon);
  // A proto field path: lower_snake names joined by '.', each optionally indexed (items[0].sku).
  // Headers (x-request-id), file paths and service names are not.
  bool at_name_start = true;
  for (size_t i = 0; i < field.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(field[i]);
    if (at_name_start) {
      if (!absl::ascii_islower(c) && c != '_') return "";
      at_name_start = false;
    } else if (c == '.') {
      at_name_start = true;
    } else if (c == '[') {
      const size_t close = field.find(']', i);
      if (close == absl::string_view::npos || close == i + 1) return "";
      for (size_t j = i + 1; j < close; ++j) {
        if (!absl::ascii_isdigit(static_cast<unsigned char>(field[j]))) return "";
      }
      i = close;
      if (i + 1 < field.size() && field[i + 1] != '.') return "";
    } else if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '_') {
      return "";
    }
  }
  if (at_name_start || IsNotAField(field)) return "";
  return field;
}

google::rpc::Status ErrorModel(const absl::Status& status, bool describe) {
  google::rpc::Status model;
  if (status.ok()) return model;
  model.set_code(static_cast<int>(status.code()));
  model.set_message(std::string(status.message()));
  const std::string reason = ReasonOf(status);
  const absl::string_view field = NamesField(status) ? FieldOf(status.message()) : "";
  const absl::string_view description = describe ? DescriptionOf(status.message(), field) : "";

  google::rpc::ErrorInfo info;
  info.set_reason(reason);
  info.set_domain(std::string(kErrorDomain));
  if (!field.empty()) (*info.mutable_metadata())["field"] = std::string(field);
  model.add_details()->PackFrom(info);

  if (status.code() == absl::StatusCode::kInvalidArgument && !field.empty()) {
    google::rpc::BadRequest bad;
    auto* violation = bad.add_field_violations();
    violation->set_field(std::string(field));
    violation->set_description(std::string(description));
    model.add_details()->PackFrom(bad);
  }
  if (status.code() == absl::StatusCode::kFailedPrecondition) {
    google::rpc::PreconditionFailure failure;
    auto* violation = failure.add_violations();
    violation->set_type(reason);
    violation->set_subject(std::string(field));
    violation->set_description(std::string(description));
    model.add_details()->PackFrom(failure);
  }
  if (const auto delay = RetryDelayOf(status)) {
    google::rpc::RetryInfo retry;
    const int64_t ms = absl::ToInt64Milliseconds(*delay);
    retry.mutable_retry_delay()->set_seconds(ms / 1000);
    retry.mutable_retry_delay()->set_nanos(static_cast<int32_t>(ms % 1000) * 1000000);
    model.add_details()->PackFrom(retry);
  }
  return model;
}

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // grpc-message is percent-encoded, the details base64: what the two take in the trailers.
  size_t text = 0;
  for (unsigned char c : status.message()) text += (c >= 0x20 && c <= 0x7E && c != '%') ? 1 : 3;
  const auto fits = [&](const std::string& d) {
    return text + (d.size() + 2) / 3 * 4 <= kMaxTrailerBytes;
  };
  std::string details = ErrorModel(status, /*describe=*/true).SerializeAsString();
  if (!fits(details)) details = ErrorModel(status, /*describe=*/false).SerializeAsString();
  if (!fits(details)) details.clear();
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()),
                      std::move(details));
}

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  const auto info = FindDetail<google::rpc::ErrorInfo>(status);
  // STORAGE_ENGINE is only ever this process's own (ReasonOf never sends it): never taken from
  // another, where it would make Store::Transact retry on a peer's error.
  if (info.has_value() && info->domain() == kErrorDomain &&
      info->reason() != kReasonStorageEngine &&
      info->reason() != absl::StatusCodeToString(out.code())) {
    out = WithReason(std::move(out), info->reason());
  }
  if (const auto retry = FindDetail<google::rpc::RetryInfo>(status)) {
    out = WithRetryDelay(std::move(out), absl::Seconds(retry->retry_delay().seconds()) +
                                             absl::Nanoseconds(retry->retry_delay().nanos()));
  }
  return out;
}

}  // namespace crm::rpc
