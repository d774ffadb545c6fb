#include "libs/api/text_format.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/tokenizer.h"

namespace crm::api {
namespace {

// Keeps the first error with its line and column (1-based); later ones are usually consequences.
class FirstError : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (message_.empty())
      message_ = absl::StrCat("line ", line + 1, ", column ", column + 1, ": ", message);
  }
  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

}  // namespace

absl::Status ParseTextProto(absl::string_view what, absl::string_view text,
                            google::protobuf::Message* out,
                            google::protobuf::TextFormat::ParseInfoTree* locations) {
  out->Clear();
  google::protobuf::TextFormat::Parser parser;
  FirstError errors;
  parser.RecordErrorsTo(&errors);
  if (locations != nullptr) parser.WriteLocationsTo(locations);
  if (!parser.ParseFromString(std::string(text), out)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", errors.message()));
  }
  return absl::OkStatus();
}

std::string LineOf(absl::string_view text, absl::string_view needle) {
  const size_t at = needle.empty() ? absl::string_view::npos : text.find(needle);
  if (at == absl::string_view::npos) return "";
  return absl::StrCat(
      "line ", std::count(text.begin(), text.begin() + static_cast<long>(at), '\n') + 1, ": ");
}

}  // namespace crm::api
