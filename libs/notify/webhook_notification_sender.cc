#include "libs/notify/webhook_notification_sender.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "libs/api/validate.h"
#include "libs/log/log.h"

namespace crm::notify {
namespace {

absl::string_view ChannelName(v1::Channel channel) {
  switch (channel) {
    case v1::CHANNEL_EMAIL: return "EMAIL";
    case v1::CHANNEL_SMS: return "SMS";
    case v1::CHANNEL_PUSH: return "PUSH";
    default: return "UNSPECIFIED";
  }
}

void AppendField(std::string& out, absl::string_view name, absl::string_view value) {
  if (out.size() > 1) out += ',';
  log::AppendJsonString(out, name);
  out += ':';
  log::AppendJsonString(out, value);
}

}  // namespace

std::string NotificationWebhookBody(const OutgoingMessage& message) {
  std::string out = "{";
  AppendField(out, "notificationId", message.notification_id);
  AppendField(out, "customerId", message.customer_id);
  AppendField(out, "channel", ChannelName(message.channel));
  AppendField(out, "to", message.to);
  AppendField(out, "subject", message.subject);
  AppendField(out, "body", message.body);
  AppendField(out, "language", message.language);
  out += '}';
  return out;
}

absl::StatusOr<std::unique_ptr<WebhookNotificationSender>> WebhookNotificationSender::Create(
    WebhookNotificationOptions options) {
  absl::StatusOr<events::WebhookUrl> url = events::ParseWebhookUrl("url", options.url);
  if (!url.ok()) return url.status();
  if (std::find(options.allowed_hosts.begin(), options.allowed_hosts.end(), url->host) ==
      options.allowed_hosts.end()) {
    return api::Invalid(
        "url",
        absl::StrCat(
            "host \"", url->host, "\" is not in --webhook_allowed_hosts (",
            options.allowed_hosts.empty() ? "empty" : absl::StrJoin(options.allowed_hosts, ","),
            ")"));
  }
  absl::StatusOr<std::string> key = events::WebhookKeyFromSecret(options.secret);
  if (!key.ok()) return api::Invalid("secret", key.status().message());
  if (options.timeout <= absl::ZeroDuration()) return api::Invalid("timeout", "must be positive");
  return std::unique_ptr<WebhookNotificationSender>(
      new WebhookNotificationSender(*std::move(url), *std::move(key), options.timeout));
}

WebhookNotificationSender::WebhookNotificationSender(events::WebhookUrl url, std::string key,
                                                     absl::Duration timeout)
    : url_(std::move(url)), key_(std::move(key)), timeout_(timeout) {}

SendResult WebhookNotificationSender::Send(const OutgoingMessage& message) {
  events::WebhookPost post;
  post.url = url_;
  post.id = message.notification_id;
  post.unix_seconds = absl::ToUnixSeconds(absl::Now());
  post.body = NotificationWebhookBody(message);
  post.signature = events::SignWebhook(key_, post.id, post.unix_seconds, post.body);
  const events::WebhookAnswer answer = events::PostWebhook(post, timeout_, nullptr);
  if (answer.status == 0) return {SendResult::Outcome::kRetry, answer.error};
  std::string detail = absl::StrCat("HTTP ", answer.status);
  if (!answer.body_start.empty()) absl::StrAppend(&detail, ": ", answer.body_start);
  if (answer.status >= 200 && answer.status < 300) return {SendResult::Outcome::kSent, detail};
  if (answer.status == 429 || answer.status >= 500) return {SendResult::Outcome::kRetry, detail};
  return {SendResult::Outcome::kRejected, detail};
}

}  // namespace crm::notify
