// The words of the notifications the service writes itself (order updates, reminders), in Chinese
// and English, and the rendering of any message template. Pure functions.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crm/v1/events.pb.h"
#include "crm/v1/notifications.pb.h"

namespace crm::notifications {

// The variables a campaign's template may use.
inline constexpr const char* kCampaignVariables[] = {"customer_name", "campaign_name"};

// Subject and body for an order update ("shipped", "out_for_delivery", "delayed", "delivered")
// or a reminder ("occasion", "upgrade"), in the customer's language (BCP 47; Chinese unless it
// starts with "en").
v1::MessageTemplate BuiltInMessage(absl::string_view what, absl::string_view language);

// `text` with every {{variable}} replaced from `values`; a variable without a value becomes "".
std::string Render(absl::string_view text, const std::map<std::string, std::string>& values);

// INVALID_ARGUMENT naming the field ("template.body") when a campaign's template is empty, too
// long or uses a variable other than kCampaignVariables.
absl::Status ValidateCampaignTemplate(const v1::MessageTemplate& message);

}  // namespace crm::notifications
