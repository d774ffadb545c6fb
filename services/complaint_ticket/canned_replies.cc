#include "services/complaint_ticket/canned_replies.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"

namespace crm::complaint_ticket {
namespace {

using api::Invalid;

bool IsVariableName(absl::string_view name) {
  if (name.empty() || name.size() > 40) return false;
  for (char c : name) {
    if (!absl::ascii_islower(static_cast<unsigned char>(c)) &&
        !absl::ascii_isdigit(static_cast<unsigned char>(c)) && c != '_')
      return false;
  }
  return true;
}

// Calls `literal(text)` and `variable(name)` for the template's parts in order.
template <typename Literal, typename Variable>
absl::Status Walk(absl::string_view field, absl::string_view text, Literal literal,
                  Variable variable) {
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
    CRM_RETURN_IF_ERROR(variable(name));
    i = close + 2;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> TemplateVariables(absl::string_view field,
                                                           absl::string_view text) {
  std::vector<std::string> names;
  std::set<std::string> seen;
  CRM_RETURN_IF_ERROR(Walk(
      field, text, [](absl::string_view) {},
      [&](absl::string_view name) {
        if (seen.insert(std::string(name)).second) names.emplace_back(name);
        return absl::OkStatus();
      }));
  return names;
}

absl::Status ValidateCannedReply(absl::string_view field, const v1::CannedReply& reply) {
  CRM_RETURN_IF_ERROR(
      api::RequiredId(absl::StrCat(field, ".canned_reply_id"), reply.canned_reply_id()));
  CRM_RETURN_IF_ERROR(api::RequiredText(absl::StrCat(field, ".title"), reply.title(), 200));
  CRM_RETURN_IF_ERROR(api::RequiredText(absl::StrCat(field, ".text"), reply.text(), 5000));
  return TemplateVariables(absl::StrCat(field, ".text"), reply.text()).status();
}

absl::StatusOr<std::string> RenderCannedReply(
    const v1::CannedReply& reply, const google::protobuf::Map<std::string, std::string>& given,
    const std::map<std::string, std::string>& from_ticket) {
  CRM_ASSIGN_OR_RETURN(const std::vector<std::string> names,
                       TemplateVariables("canned_reply_id", reply.text()));
  const std::set<std::string> used(names.begin(), names.end());
  for (const auto& [name, value] : given) {
    if (!used.contains(name)) {
      return Invalid(
          absl::StrCat("variables.", name),
          absl::StrCat("canned reply \"", reply.canned_reply_id(), "\" has no such variable"));
    }
    CRM_RETURN_IF_ERROR(api::OptionalText(absl::StrCat("variables.", name), value, 500));
  }
  std::string out;
  CRM_RETURN_IF_ERROR(Walk(
      "canned_reply_id", reply.text(),
      [&](absl::string_view text) { out.append(text.data(), text.size()); },
      [&](absl::string_view name) -> absl::Status {
        const std::string key(name);
        if (auto it = given.find(key); it != given.end()) {
          out += it->second;
          return absl::OkStatus();
        }
        if (auto it = from_ticket.find(key); it != from_ticket.end() && !it->second.empty()) {
          out += it->second;
          return absl::OkStatus();
        }
        return Invalid(absl::StrCat("variables.", key),
                       absl::StrCat("canned reply \"", reply.canned_reply_id(), "\" needs it",
                                    from_ticket.contains(key) ? " (the ticket has none)" : ""));
      }));
  return out;
}

}  // namespace crm::complaint_ticket
