#include "libs/text/message_template.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace crm::text {
namespace {

bool IsVariableName(absl::string_view name) {
  if (name.empty() || name.size() > 40) return false;
  for (char c : name) {
    if (!absl::ascii_islower(static_cast<unsigned char>(c)) &&
        !absl::ascii_isdigit(static_cast<unsigned char>(c)) && c != '_')
      return false;
  }
  return true;
}

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

}  // namespace

absl::Status WalkTemplate(absl::string_view field, absl::string_view text,
                          absl::FunctionRef<void(absl::string_view)> literal,
                          absl::FunctionRef<absl::Status(absl::string_view)> variable) {
  size_t i = 0;
  while (i < text.size()) {
    const size_t open = text.find("{{", i);
    if (open == absl::string_view::npos) {
      literal(text.substr(i));
      break;
    }
    literal(text.substr(i, open - i));
    const size_t close = text.find("}}", open + 2);
    if (close == absl::string_view::npos)
      return Invalid(field, absl::StrCat("\"{{\" at character ", open, " is never closed"));
    const absl::string_view name =
        absl::StripAsciiWhitespace(text.substr(open + 2, close - open - 2));
    if (!IsVariableName(name)) {
      return Invalid(field, absl::StrCat("\"{{", text.substr(open + 2, close - open - 2),
                                         "}}\" is not a variable: names are 1-40 characters of "
                                         "a-z, 0-9 and '_'"));
    }
    if (absl::Status s = variable(name); !s.ok()) return s;
    i = close + 2;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> TemplateVariables(absl::string_view field,
                                                           absl::string_view text) {
  std::vector<std::string> names;
  std::set<std::string, std::less<>> seen;
  absl::Status s = WalkTemplate(
      field, text, [](absl::string_view) {},
      [&](absl::string_view name) {
        if (seen.insert(std::string(name)).second) names.emplace_back(name);
        return absl::OkStatus();
      });
  if (!s.ok()) return s;
  return names;
}

}  // namespace crm::text
