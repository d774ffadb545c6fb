#include "services/notifications/messages.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/text/message_template.h"

namespace crm::notifications {
namespace {

struct Words {
  const char* what;
  const char* zh_subject;
  const char* zh_body;
  const char* en_subject;
  const char* en_body;
};

constexpr Words kWords[] = {
    {"shipped", "您的订单已发货",
     "{{customer_name}}，您好！订单 {{order_id}} 已交给{{carrier}}，运单号 {{tracking_number}}。",
     "Your order has shipped",
     "Hello {{customer_name}}, order {{order_id}} is on its way with {{carrier}} (tracking "
     "number {{tracking_number}})."},
    {"out_for_delivery", "您的包裹正在派送",
     "{{customer_name}}，您好！订单 {{order_id}} 的包裹正在派送，预计 {{eta}} 送达。",
     "Your parcel is out for delivery",
     "Hello {{customer_name}}, the parcel of order {{order_id}} is out for delivery, expected "
     "{{eta}}."},
    {"delayed", "您的订单可能延迟送达",
     "{{customer_name}}，很抱歉：订单 {{order_id}} 现在预计 {{eta}} 送达，晚于承诺的时间。",
     "Your order is running late",
     "Sorry {{customer_name}}: order {{order_id}} is now expected {{eta}}, later than we "
     "promised."},
    {"delivered", "您的订单已送达", "{{customer_name}}，您好！订单 {{order_id}} 已送达。",
     "Your order was delivered", "Hello {{customer_name}}, order {{order_id}} was delivered."},
    {"occasion", "为您准备的提醒", "{{customer_name}}，{{reason}}：{{item_title}}",
     "A reminder for you", "{{customer_name}}, {{reason}}: {{item_title}}"},
    {"upgrade", "新款上市", "{{customer_name}}，{{reason}}：{{item_title}}",
     "A newer model is here", "{{customer_name}}, {{reason}}: {{item_title}}"},
};

}  // namespace

v1::MessageTemplate BuiltInMessage(absl::string_view what, absl::string_view language) {
  const bool english = absl::StartsWithIgnoreCase(language, "en");
  v1::MessageTemplate m;
  for (const Words& w : kWords) {
    if (what != w.what) continue;
    m.set_subject(english ? w.en_subject : w.zh_subject);
    m.set_body(english ? w.en_body : w.zh_body);
  }
  return m;
}

std::string Render(absl::string_view text, const std::map<std::string, std::string>& values) {
  std::string out;
  // The service's own texts and checked campaign templates always walk.
  text::WalkTemplate(
      "template", text, [&](absl::string_view part) { out.append(part.data(), part.size()); },
      [&](absl::string_view name) {
        if (auto it = values.find(std::string(name)); it != values.end()) out += it->second;
        return absl::OkStatus();
      })
      .IgnoreError();
  return out;
}

absl::Status ValidateCampaignTemplate(const v1::MessageTemplate& message) {
  CRM_RETURN_IF_ERROR(api::RequiredText("template.subject", message.subject(), 200));
  CRM_RETURN_IF_ERROR(api::RequiredText("template.body", message.body(), 10000));
  const std::pair<const char*, const std::string*> parts[] = {
      {"template.subject", &message.subject()}, {"template.body", &message.body()}};
  for (const auto& [field, text] : parts) {
    CRM_ASSIGN_OR_RETURN(auto names, text::TemplateVariables(field, *text));
    for (const std::string& name : names) {
      if (std::find(std::begin(kCampaignVariables), std::end(kCampaignVariables), name) ==
          std::end(kCampaignVariables)) {
        return api::Invalid(field, absl::StrCat("{{", name, "}} is not a variable here; use ",
                                                absl::StrJoin(kCampaignVariables, ", ")));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace crm::notifications
