// SMS and push notifications through the deployment's gateway (an SMS provider's or a push
// service's adapter): each message POSTed as JSON to one configured URL, signed as the event
// webhooks are (libs/events/webhook_sender.h: webhook-id = the notification id, so a retry is
// recognisable, webhook-timestamp, webhook-signature under the whsec_ secret).
//
// Body: {"notificationId","customerId","channel":"SMS"|"PUSH"|"EMAIL","to","subject","body",
// "language"}, every value a string.
//
// Answers: 2xx -> kSent; 429, 5xx or no answer (connection, TLS, timeout) -> kRetry; any other
// status -> kRejected. `detail` holds the status and the start of the answer's body, or the error.
//
// Thread-safe: each Send has its own connection.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/events/webhook_sender.h"
#include "libs/notify/sender.h"

namespace crm::notify {

struct WebhookNotificationOptions {
  // http(s)://host[:port][/path]; its host must be one of `allowed_hosts`.
  std::string url;
  // "whsec_" + base64 of the signing key, as the gateway was given it.
  std::string secret;
  // Lower case host names or addresses (--webhook_allowed_hosts, as events::WebhookOptions has
  // them).
  std::vector<std::string> allowed_hosts;
  absl::Duration timeout = absl::Seconds(10);
};

class WebhookNotificationSender : public Sender {
 public:
  // INVALID_ARGUMENT naming the field when the URL does not parse, its host is not allowed, or the
  // secret is not a whsec_ secret.
  static absl::StatusOr<std::unique_ptr<WebhookNotificationSender>> Create(
      WebhookNotificationOptions options);

  SendResult Send(const OutgoingMessage& message) override;

 private:
  WebhookNotificationSender(events::WebhookUrl url, std::string key, absl::Duration timeout);

  const events::WebhookUrl url_;
  const std::string key_;
  const absl::Duration timeout_;
};

// The JSON body POSTed for `message`.
std::string NotificationWebhookBody(const OutgoingMessage& message);

}  // namespace crm::notify
