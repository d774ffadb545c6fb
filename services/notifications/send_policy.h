// When and where a notification may go: quiet hours in the customer's time zone, the channels and
// addresses order updates use, and who a campaign holds out. Pure functions.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/v1/customer_profile.pb.h"
#include "crm/v1/notifications.pb.h"

namespace crm::notifications {

// The service's defaults for customers who set nothing themselves.
struct QuietHoursDefaults {
  // Minutes after midnight; start > end wraps past midnight; start == end: no quiet hours.
  v1::DailyWindow quiet_hours;
  absl::TimeZone zone;
};

// "HH:MM-HH:MM" (e.g. "21:00-08:00") as a window; INVALID_ARGUMENT naming `field` otherwise.
absl::StatusOr<v1::DailyWindow> ParseDailyWindow(absl::string_view field, absl::string_view text);

// INVALID_ARGUMENT naming the field ("preferences.notifications.time_zone") for minutes outside
// 0-1439, an unknown zone or a channel not EMAIL, SMS or PUSH.
absl::Status ValidateNotificationSettings(absl::string_view field,
                                          const v1::NotificationSettings& settings);

// The earliest time at or after `t` outside the customer's quiet hours (their own, else the
// defaults; their zone, else the default one).
absl::Time OutsideQuietHours(const v1::NotificationSettings& settings,
                             const QuietHoursDefaults& defaults, absl::Time t);

// Where `channel` reaches the customer: the e-mail address, the phone number, or the customer id
// for push (the push gateway knows their devices); empty when the customer has none.
std::string AddressOn(const v1::Customer& customer, v1::Channel channel);

// The channels order updates go to: none when turned off; the customer's choice (those with an
// address); else e-mail when they have an address, else SMS when they have a phone.
std::vector<v1::Channel> OrderUpdateChannels(const v1::Customer& customer);

// Whether `campaign` holds the customer out in its control group: a hash of campaign and customer
// against the holdout percent, so the draw is the same on every retry and on every shard.
bool InControlGroup(const v1::Campaign& campaign, absl::string_view customer_id);

}  // namespace crm::notifications
