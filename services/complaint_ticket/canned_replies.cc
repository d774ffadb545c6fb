#include "services/complaint_ticket/canned_replies.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/text/message_template.h"

namespace crm::complaint_ticket {

using api::Invalid;
using text::TemplateVariables;
using text::WalkTemplate;

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
  CRM_RETURN_IF_ERROR(WalkTemplate(
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
