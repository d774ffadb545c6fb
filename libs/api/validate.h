// Request validation with the project's error convention: INVALID_ARGUMENT whose message starts
// with the field path ("address.city: must not be empty"), so a frontend developer knows what to
// fix.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/field_mask.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace crm::api {

absl::Status Invalid(absl::string_view field, absl::string_view problem);

// Text a person typed: valid UTF-8, no control characters, at most `max_chars` characters.
absl::Status OptionalText(absl::string_view field, absl::string_view value, size_t max_chars);
// As OptionalText, and not empty or only spaces.
absl::Status RequiredText(absl::string_view field, absl::string_view value, size_t max_chars);

// An identifier: 1-128 characters of [A-Za-z0-9._:-].
absl::Status RequiredId(absl::string_view field, absl::string_view value);
// The form an email is stored, kept unique and routed by: trimmed and lower case. One function for
// customer-profile (which validates it further) and the gateway (which routes by it), so the shard
// a request reaches is the shard whose bucket the customer's id was minted in.
std::string CanonicalEmail(absl::string_view email);
// A stock-keeping unit, the one rule for catalog items, orders and events: 1-128 characters of text
// without control characters (spaces allowed: "BANK CHARGES" is a real one).
absl::Status ValidateSku(absl::string_view field, absl::string_view sku);
// The client's idempotency key (a UUID, or any 1-128 printable ASCII characters without spaces).
absl::Status RequiredRequestId(absl::string_view value);

// 0 means `default_size`; otherwise 1..max_size.
absl::StatusOr<int> PageSize(absl::string_view field, int32_t value, int default_size,
                             int max_size);

// A timestamp a client sent: well formed (nanos in range, year 1970-9999).
absl::StatusOr<absl::Time> ToTime(absl::string_view field, const google::protobuf::Timestamp& ts);
void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out);
absl::Time FromTimestamp(const google::protobuf::Timestamp& ts);

// The mask's paths, checked to be a non-empty subset of `allowed`.
absl::Status CheckFieldMask(absl::string_view field, const google::protobuf::FieldMask& mask,
                            std::initializer_list<absl::string_view> allowed);

// ISO 4217-shaped currency code: three upper-case letters.
absl::Status CurrencyCode(absl::string_view field, absl::string_view value);

}  // namespace crm::api
