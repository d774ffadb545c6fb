// Handing one notification to the outside world: a Sender per channel (SMTP for e-mail, a signed
// webhook for the SMS and push gateways). The notification service decides who is told what and
// when; a Sender only delivers and says whether to try again.
//
// Thread-safety: implementations are safe to call from several threads at once.
#pragma once

#include <string>

#include "crm/v1/common.pb.h"

namespace crm::notify {

// One message to one customer on one channel, rendered and ready to send.
struct OutgoingMessage {
  // Stable across retries of the same notification: the receiver's key to drop duplicates (the
  // e-mail's Message-ID, the webhook's webhook-id).
  std::string notification_id;
  std::string customer_id;
  v1::Channel channel = v1::CHANNEL_UNSPECIFIED;
  // E-mail: the address; SMS: the E.164 number; push: the customer id (the push gateway knows the
  // customer's devices).
  std::string to;
  // Plain text, UTF-8.
  std::string subject;
  std::string body;
  // BCP 47, e.g. "zh-CN"; may be empty.
  std::string language;
};

struct SendResult {
  enum class Outcome {
    kSent,
    // Worth another attempt later: connection refused or cut, timeout, a 4xx SMTP reply, HTTP
    // 429/5xx.
    kRetry,
    // Will never succeed as it is: a 5xx SMTP reply to the recipient or the message, HTTP 4xx.
    kRejected,
  };
  Outcome outcome = Outcome::kRetry;
  // What the server or the connection said, for the notification's status_reason and the log.
  std::string detail;
};

class Sender {
 public:
  virtual ~Sender() = default;
  // Blocks until the message is accepted or refused, or the sender's own timeout passes.
  virtual SendResult Send(const OutgoingMessage& message) = 0;
};

}  // namespace crm::notify
