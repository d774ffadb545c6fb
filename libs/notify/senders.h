// The senders a process delivers notifications with, from its flags (each also CRM_<FLAG> in the
// environment, libs/rpc/flags.h):
//
//   --smtp_server host:port       e-mail relay; empty (the default): no e-mail sender
//   --smtp_from                   the From address (required with --smtp_server)
//   --smtp_tls                    none | starttls (default) | tls (implicit TLS, SMTPS)
//   --smtp_user                   AUTH user; empty: no AUTH
//   --smtp_password_file          file holding the AUTH password (read at start; a password
//                                 never goes on a command line, where `ps` shows it)
//   --smtp_ca_file                PEM CAs to trust for the relay instead of the system's store
//   --smtp_timeout_s              one message's whole exchange (default 10)
//   --notification_webhook_url    the SMS and push gateway's URL; empty: none. Its host must be
//                                 in --webhook_allowed_hosts (libs/events/webhooks.h)
//   --notification_webhook_secret_file  file holding the gateway's whsec_ signing secret
//   --notification_webhook_timeout_s    one POST, answer included (default 10)
#pragma once

#include <map>
#include <memory>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "crm/v1/common.pb.h"
#include "libs/notify/sender.h"

ABSL_DECLARE_FLAG(std::string, smtp_server);
ABSL_DECLARE_FLAG(std::string, smtp_from);
ABSL_DECLARE_FLAG(std::string, smtp_tls);
ABSL_DECLARE_FLAG(std::string, smtp_user);
ABSL_DECLARE_FLAG(std::string, smtp_password_file);
ABSL_DECLARE_FLAG(std::string, smtp_ca_file);
ABSL_DECLARE_FLAG(int, smtp_timeout_s);
ABSL_DECLARE_FLAG(std::string, notification_webhook_url);
ABSL_DECLARE_FLAG(std::string, notification_webhook_secret_file);
ABSL_DECLARE_FLAG(int, notification_webhook_timeout_s);

namespace crm::notify {

// Channel -> its sender; a channel with no sender configured is absent.
using Senders = std::map<v1::Channel, std::shared_ptr<Sender>>;

// EMAIL -> SMTP when --smtp_server is set; SMS and PUSH -> the webhook when
// --notification_webhook_url is set. INVALID_ARGUMENT naming the flag that is wrong (or the file
// it names that cannot be read).
absl::StatusOr<Senders> SendersFromFlags();

}  // namespace crm::notify
