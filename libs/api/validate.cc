#include "libs/api/validate.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/text/utf8.h"

namespace crm::api {

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

absl::Status OptionalText(absl::string_view field, absl::string_view value, size_t max_chars) {
  if (!text::IsValidUtf8(value)) return Invalid(field, "is not valid UTF-8");
  for (unsigned char c : value) {
    if (c < 0x20 && c != '\n' && c != '\t' && c != '\r')
      return Invalid(field, "contains a control character");
    if (c == 0x7F) return Invalid(field, "contains a control character");
  }
  const size_t n = text::CodePointCount(value);
  if (n > max_chars) {
    return Invalid(field, absl::StrCat("is ", n, " characters long; the limit is ", max_chars));
  }
  return absl::OkStatus();
}

absl::Status RequiredText(absl::string_view field, absl::string_view value, size_t max_chars) {
  if (absl::StripAsciiWhitespace(value).empty()) return Invalid(field, "must not be empty");
  return OptionalText(field, value, max_chars);
}

absl::Status RequiredId(absl::string_view field, absl::string_view value) {
  if (value.empty()) return Invalid(field, "must not be empty");
  if (value.size() > 128) return Invalid(field, "is longer than 128 characters");
  for (char c : value) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != ':' &&
        c != '-') {
      return Invalid(field, "may contain only letters, digits, '.', '_', ':' and '-'");
    }
  }
  return absl::OkStatus();
}

std::string CanonicalEmail(absl::string_view email) {
  return absl::AsciiStrToLower(absl::StripAsciiWhitespace(email));
}

absl::Status ValidateSku(absl::string_view field, absl::string_view sku) {
  for (unsigned char c : sku) {
    // Tabs and line breaks are text elsewhere; in an identifier they only hide a copy-paste error.
    if (c < 0x20 || c == 0x7F) return Invalid(field, "contains a control character");
  }
  return RequiredText(field, sku, 128);
}

absl::Status RequiredRequestId(absl::string_view value) {
  if (value.empty())
    return Invalid(
        "request_id",
        "must not be empty: send a unique id per logical request, and the same id on retry");
  if (value.size() > 128) return Invalid("request_id", "is longer than 128 characters");
  for (char c : value) {
    if (c <= 0x20 || c >= 0x7F)
      return Invalid("request_id", "may contain only printable ASCII without spaces");
  }
  return absl::OkStatus();
}

absl::StatusOr<int> PageSize(absl::string_view field, int32_t value, int default_size,
                             int max_size) {
  if (value == 0) return default_size;
  if (value < 0 || value > max_size)
    return Invalid(field, absl::StrCat("must be between 1 and ", max_size));
  return value;
}

absl::StatusOr<absl::Time> ToTime(absl::string_view field, const google::protobuf::Timestamp& ts) {
  // 1970-01-01 to 9999-12-31: what protobuf's JSON mapping accepts, minus times before the epoch.
  if (ts.seconds() < 0 || ts.seconds() > 253402300799 || ts.nanos() < 0 || ts.nanos() > 999999999) {
    return Invalid(field, "is not a valid timestamp between 1970 and 9999");
  }
  return FromTimestamp(ts);
}

void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t micros = absl::ToUnixMicros(t);
  int64_t seconds = micros / 1000000;
  int64_t rem = micros % 1000000;
  if (rem < 0) {
    rem += 1000000;
    --seconds;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(rem * 1000));
}

absl::Time FromTimestamp(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

absl::Status CheckFieldMask(absl::string_view field, const google::protobuf::FieldMask& mask,
                            std::initializer_list<absl::string_view> allowed) {
  if (mask.paths_size() == 0) {
    return Invalid(
        field,
        absl::StrCat("must name at least one field (one of: ", absl::StrJoin(allowed, ", "), ")"));
  }
  for (const std::string& path : mask.paths()) {
    bool ok = false;
    for (absl::string_view a : allowed) ok = ok || a == path;
    if (!ok) {
      return Invalid(
          field, absl::StrCat("\"", path, "\" is not a field that can be updated here (allowed: ",
                              absl::StrJoin(allowed, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CurrencyCode(absl::string_view field, absl::string_view value) {
  if (value.size() != 3 || !absl::ascii_isupper(static_cast<unsigned char>(value[0])) ||
      !absl::ascii_isupper(static_cast<unsigned char>(value[1])) ||
      !absl::ascii_isupper(static_cast<unsigned char>(value[2]))) {
    return Invalid(field, "must be a three-letter ISO 4217 code such as CNY");
  }
  return absl::OkStatus();
}

}  // namespace crm::api
