// Configuration files in protobuf text format (loyalty rules, the complaint lexicon, the churn
// model): one parser whose errors name the file and the line, so an operator can fix a typo without
// guessing.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "google/protobuf/text_format.h"

namespace crm::api {

// Parses `text` into `out` (cleared first). On a syntax or unknown-field error: INVALID_ARGUMENT
// "<what>: line L, column C: <parser message>" for the first error. `locations`, when given,
// receives where each field was read, for the caller's own checks to name lines too.
absl::Status ParseTextProto(absl::string_view what, absl::string_view text,
                            google::protobuf::Message* out,
                            google::protobuf::TextFormat::ParseInfoTree* locations = nullptr);

// "line N: " for the first line of `text` that contains `needle` (empty when none does): for checks
// after parsing to point at the offending entry.
std::string LineOf(absl::string_view text, absl::string_view needle);

}  // namespace crm::api
