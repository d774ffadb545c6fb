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

RulesPlace RulesPlace::Nested(const char* field, int index,
                              const google::protobuf::Message& nested) const {
  const auto* f = message_.GetDescriptor()->FindFieldByName(field);
  const bool repeated = f->is_repeated();
  return RulesPlace(
      what_, text_, nested, tree_ ? tree_->GetTreeForNested(f, repeated ? index : -1) : nullptr,
      repeated ? absl::StrCat(path_, field, "[", index, "].") : absl::StrCat(path_, field, "."),
      LineOf(field, index));
}

absl::Status RulesPlace::Error(const char* field, absl::string_view what) const {
  return Refuse(LineOf(field, 0), absl::StrCat(path_, field, " ", what));
}

absl::Status RulesPlace::ErrorAt(const char* field, int index, absl::string_view what) const {
  return Refuse(LineOf(field, index), absl::StrCat(path_, field, "[", index, "] ", what));
}

absl::Status RulesPlace::ValueError(const char* field, absl::string_view value,
                                    absl::string_view what) const {
  const std::string at = api::LineOf(text_, absl::StrCat("\"", value, "\""));
  return absl::InvalidArgumentError(absl::StrCat(
      what_, ": ", at.empty() ? (line_ > 0 ? absl::StrCat("line ", line_, ": ") : "") : at, path_,
      field, " \"", value, "\" ", what));
}

int RulesPlace::LineOf(const char* field, int index) const {
  const auto* f = message_.GetDescriptor()->FindFieldByName(field);
  if (tree_ != nullptr && f != nullptr) {
    const auto loc = tree_->GetLocation(f, f->is_repeated() ? index : -1);
    if (loc.line >= 0) return loc.line + 1;
  }
  return line_;
}

absl::Status RulesPlace::Refuse(int line, absl::string_view what) const {
  return absl::InvalidArgumentError(
      absl::StrCat(what_, ": ", line > 0 ? absl::StrCat("line ", line, ": ") : "", what));
}

}  // namespace crm::api
