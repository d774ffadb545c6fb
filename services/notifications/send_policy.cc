#include "services/notifications/send_policy.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/api/validate.h"
#include "libs/sharding/hash.h"

namespace crm::notifications {
namespace {

constexpr int kMinutesPerDay = 24 * 60;

bool Quiet(const v1::DailyWindow& w, int minute) {
  if (w.start_minute() == w.end_minute()) return false;
  if (w.start_minute() < w.end_minute())
    return minute >= w.start_minute() && minute < w.end_minute();
  return minute >= w.start_minute() || minute < w.end_minute();
}

absl::StatusOr<int> MinuteOf(absl::string_view field, absl::string_view hhmm) {
  std::vector<absl::string_view> parts = absl::StrSplit(hhmm, ':');
  int h = 0, m = 0;
  if (parts.size() != 2 || parts[0].size() != 2 || parts[1].size() != 2 ||
      !absl::SimpleAtoi(parts[0], &h) || !absl::SimpleAtoi(parts[1], &m) || h < 0 || h > 23 ||
      m < 0 || m > 59) {
    return api::Invalid(field, absl::StrCat("\"", hhmm, "\" is not a time HH:MM"));
  }
  return h * 60 + m;
}

}  // namespace

absl::StatusOr<v1::DailyWindow> ParseDailyWindow(absl::string_view field, absl::string_view text) {
  std::vector<absl::string_view> ends = absl::StrSplit(text, '-');
  if (ends.size() != 2)
    return api::Invalid(field, absl::StrCat("\"", text, "\" is not HH:MM-HH:MM"));
  v1::DailyWindow w;
  auto start = MinuteOf(field, ends[0]);
  if (!start.ok()) return start.status();
  auto end = MinuteOf(field, ends[1]);
  if (!end.ok()) return end.status();
  w.set_start_minute(*start);
  w.set_end_minute(*end);
  return w;
}

absl::Status ValidateNotificationSettings(absl::string_view field,
                                          const v1::NotificationSettings& settings) {
  const v1::DailyWindow& w = settings.quiet_hours();
  const std::pair<const char*, int> minutes[] = {{"start_minute", w.start_minute()},
                                                 {"end_minute", w.end_minute()}};
  for (const auto& [name, minute] : minutes) {
    if (minute < 0 || minute >= kMinutesPerDay) {
      return api::Invalid(absl::StrCat(field, ".quiet_hours.", name),
                          "must be 0-1439 (minutes after midnight)");
    }
  }
  absl::TimeZone zone;
  if (!settings.time_zone().empty() && !absl::LoadTimeZone(settings.time_zone(), &zone)) {
    return api::Invalid(absl::StrCat(field, ".time_zone"),
                        absl::StrCat("\"", settings.time_zone(), "\" is not an IANA time zone"));
  }
  for (int i = 0; i < settings.order_update_channels_size(); ++i) {
    const v1::Channel c = settings.order_update_channels(i);
    if (c != v1::CHANNEL_EMAIL && c != v1::CHANNEL_SMS && c != v1::CHANNEL_PUSH) {
      return api::Invalid(absl::StrCat(field, ".order_update_channels[", i, "]"),
                          "must be CHANNEL_EMAIL, CHANNEL_SMS or CHANNEL_PUSH");
    }
  }
  return absl::OkStatus();
}

absl::Time OutsideQuietHours(const v1::NotificationSettings& settings,
                             const QuietHoursDefaults& defaults, absl::Time t) {
  const v1::DailyWindow& own = settings.quiet_hours();
  const v1::DailyWindow& w =
      own.start_minute() != 0 || own.end_minute() != 0 ? own : defaults.quiet_hours;
  absl::TimeZone zone = defaults.zone;
  if (!settings.time_zone().empty()) absl::LoadTimeZone(settings.time_zone(), &zone);
  const absl::CivilSecond local = absl::ToCivilSecond(t, zone);
  const int minute = local.hour() * 60 + local.minute();
  if (!Quiet(w, minute)) return t;
  // The window ends today, or tomorrow when it wraps past midnight and we are before midnight.
  absl::CivilDay day = absl::CivilDay(local);
  if (w.start_minute() > w.end_minute() && minute >= w.start_minute()) day += 1;
  const absl::CivilMinute end(day.year(), day.month(), day.day(), w.end_minute() / 60,
                              w.end_minute() % 60);
  return std::max(t, zone.At(end).pre);
}

std::string AddressOn(const v1::Customer& customer, v1::Channel channel) {
  switch (channel) {
    case v1::CHANNEL_EMAIL: return customer.email();
    case v1::CHANNEL_SMS: return customer.phone();
    case v1::CHANNEL_PUSH: return customer.customer_id();
    default: return "";
  }
}

std::vector<v1::Channel> OrderUpdateChannels(const v1::Customer& customer) {
  const v1::NotificationSettings& s = customer.preferences().notifications();
  std::vector<v1::Channel> out;
  if (s.order_updates_off()) return out;
  for (int c : s.order_update_channels()) {
    const auto channel = static_cast<v1::Channel>(c);
    if (!AddressOn(customer, channel).empty() &&
        std::find(out.begin(), out.end(), channel) == out.end())
      out.push_back(channel);
  }
  if (s.order_update_channels_size() > 0) return out;
  if (!customer.email().empty()) return {v1::CHANNEL_EMAIL};
  if (!customer.phone().empty()) return {v1::CHANNEL_SMS};
  return out;
}

bool InControlGroup(const v1::Campaign& campaign, absl::string_view customer_id) {
  return sharding::StableHash64(absl::StrCat(campaign.campaign_id(), "/", customer_id)) % 100 <
         static_cast<uint64_t>(campaign.holdout_percent());
}

}  // namespace crm::notifications
