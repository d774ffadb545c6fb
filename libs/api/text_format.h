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

// Where a message of a rules file was read, so a check after parsing names the line and the field
// path at fault: INVALID_ARGUMENT "<what>: line N: surveys[1].questions[0].type must be set".
// Borrows the text, the message and the locations (ParseTextProto's); all must outlive it.
class RulesPlace {
 public:
  // The file's top message: `what` names the file in errors ("sla rules").
  RulesPlace(std::string what, absl::string_view text, const google::protobuf::Message& message,
             const google::protobuf::TextFormat::ParseInfoTree* tree)
      : RulesPlace(std::move(what), text, message, tree, "", 0) {}

  // The place of the `index`th `field` message within this one (index 0 for a singular field).
  RulesPlace Nested(const char* field, int index, const google::protobuf::Message& nested) const;
  // "<path.field> <what>" about a field as a whole (a repeated one at its first occurrence).
  absl::Status Error(const char* field, absl::string_view what) const;
  // The same about the `index`th element of a repeated field: "<path.field>[index] <what>".
  absl::Status ErrorAt(const char* field, int index, absl::string_view what) const;
  // For a value inside a list ("holidays: [...]"), whose elements the parser does not locate one
  // by one: the line where the quoted value is written.
  absl::Status ValueError(const char* field, absl::string_view value, absl::string_view what) const;

 private:
  RulesPlace(std::string what, absl::string_view text, const google::protobuf::Message& message,
             const google::protobuf::TextFormat::ParseInfoTree* tree, std::string path, int line)
      : what_(std::move(what)),
        text_(text),
        message_(message),
        tree_(tree),
        path_(std::move(path)),
        line_(line) {}
  int LineOf(const char* field, int index) const;
  absl::Status Refuse(int line, absl::string_view what) const;

  std::string what_;
  absl::string_view text_;
  const google::protobuf::Message& message_;
  const google::protobuf::TextFormat::ParseInfoTree* tree_;
  std::string path_;  // "surveys[1].questions[0]."
  int line_;          // of the message itself; 0 when unknown
};

}  // namespace crm::api
