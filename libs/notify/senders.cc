#include "libs/notify/senders.h"

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "libs/events/webhook_sender.h"
#include "libs/events/webhooks.h"
#include "libs/notify/smtp_sender.h"
#include "libs/notify/webhook_notification_sender.h"
#include "libs/text/file.h"

ABSL_FLAG(std::string, smtp_server, "",
          "e-mail relay for notifications, host:port (empty: no e-mail is sent)");
ABSL_FLAG(std::string, smtp_from, "",
          "From address of notification e-mails, e.g. news@shop.example");
ABSL_FLAG(std::string, smtp_tls, "starttls",
          "none, starttls (required, not opportunistic) or tls (implicit TLS from the first byte, "
          "usually port 465)");
ABSL_FLAG(std::string, smtp_user, "", "user for SMTP AUTH (empty: no AUTH)");
ABSL_FLAG(std::string, smtp_password_file, "",
          "file holding the SMTP AUTH password (read at start; never a password on the command "
          "line)");
ABSL_FLAG(std::string, smtp_ca_file, "",
          "PEM CA certificates to trust for the relay instead of the system's store");
ABSL_FLAG(int, smtp_timeout_s, 10, "longest one e-mail's exchange with the relay may take");
ABSL_FLAG(std::string, notification_webhook_url, "",
          "URL the SMS and push notifications are POSTed to, signed (empty: none); its host must "
          "be in --webhook_allowed_hosts");
ABSL_FLAG(std::string, notification_webhook_secret_file, "",
          "file holding the notification webhook's whsec_ signing secret");
ABSL_FLAG(int, notification_webhook_timeout_s, 10,
          "longest one notification webhook POST may take, answer included");

namespace crm::notify {
namespace {

absl::Status FlagError(absl::string_view flag, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", problem));
}

// The file's text without the line end an editor leaves.
absl::StatusOr<std::string> SecretFile(absl::string_view flag, const std::string& path) {
  if (path.empty()) return FlagError(flag, "must be set");
  absl::StatusOr<std::string> text = text::ReadFile(path);
  if (!text.ok()) return FlagError(flag, text.status().message());
  std::string secret(absl::StripTrailingAsciiWhitespace(*text));
  if (secret.empty()) return FlagError(flag, absl::StrCat(path, " is empty"));
  return secret;
}

absl::StatusOr<std::shared_ptr<Sender>> SmtpFromFlags() {
  SmtpOptions options;
  const std::string server = absl::GetFlag(FLAGS_smtp_server);
  const size_t colon = server.rfind(':');
  absl::string_view host =
      colon == std::string::npos ? "" : absl::string_view(server).substr(0, colon);
  absl::ConsumePrefix(&host, "[");
  absl::ConsumeSuffix(&host, "]");
  if (host.empty() || !absl::SimpleAtoi(server.substr(colon + 1), &options.port) ||
      options.port < 1 || options.port > 65535) {
    return FlagError("smtp_server", absl::StrCat("\"", server, "\" is not host:port"));
  }
  options.host = std::string(host);
  options.from = absl::GetFlag(FLAGS_smtp_from);
  const std::string tls = absl::GetFlag(FLAGS_smtp_tls);
  if (tls == "none") {
    options.tls = SmtpOptions::Tls::kNone;
  } else if (tls == "starttls") {
    options.tls = SmtpOptions::Tls::kStartTls;
  } else if (tls == "tls") {
    options.tls = SmtpOptions::Tls::kImplicit;
  } else {
    return FlagError("smtp_tls", absl::StrCat("\"", tls, "\": one of none, starttls, tls"));
  }
  options.user = absl::GetFlag(FLAGS_smtp_user);
  if (!options.user.empty()) {
    absl::StatusOr<std::string> password =
        SecretFile("smtp_password_file", absl::GetFlag(FLAGS_smtp_password_file));
    if (!password.ok()) return password.status();
    options.password = *std::move(password);
  }
  options.ca_file = absl::GetFlag(FLAGS_smtp_ca_file);
  const int timeout_s = absl::GetFlag(FLAGS_smtp_timeout_s);
  if (timeout_s < 1) return FlagError("smtp_timeout_s", "must be at least 1");
  options.timeout = absl::Seconds(timeout_s);
  absl::StatusOr<std::unique_ptr<SmtpSender>> sender = SmtpSender::Create(std::move(options));
  if (!sender.ok()) {
    // Server and timeout were checked above; what is left to refuse is the From address.
    return FlagError("smtp_from", sender.status().message());
  }
  return std::shared_ptr<Sender>(*std::move(sender));
}

absl::StatusOr<std::shared_ptr<Sender>> WebhookFromFlags() {
  WebhookNotificationOptions options;
  options.url = absl::GetFlag(FLAGS_notification_webhook_url);
  options.allowed_hosts = events::WebhookOptionsFromFlags().allowed_hosts;
  absl::StatusOr<std::string> secret = SecretFile(
      "notification_webhook_secret_file", absl::GetFlag(FLAGS_notification_webhook_secret_file));
  if (!secret.ok()) return secret.status();
  // Checked here, so whatever Create refuses below is the URL's.
  if (auto key = events::WebhookKeyFromSecret(*secret); !key.ok())
    return FlagError("notification_webhook_secret_file",
                     absl::StrCat("secret: ", key.status().message()));
  options.secret = *std::move(secret);
  const int timeout_s = absl::GetFlag(FLAGS_notification_webhook_timeout_s);
  if (timeout_s < 1) return FlagError("notification_webhook_timeout_s", "must be at least 1");
  options.timeout = absl::Seconds(timeout_s);
  absl::StatusOr<std::unique_ptr<WebhookNotificationSender>> sender =
      WebhookNotificationSender::Create(std::move(options));
  if (!sender.ok()) return FlagError("notification_webhook_url", sender.status().message());
  return std::shared_ptr<Sender>(*std::move(sender));
}

}  // namespace

absl::StatusOr<Senders> SendersFromFlags() {
  Senders senders;
  if (!absl::GetFlag(FLAGS_smtp_server).empty()) {
    absl::StatusOr<std::shared_ptr<Sender>> smtp = SmtpFromFlags();
    if (!smtp.ok()) return smtp.status();
    senders[v1::CHANNEL_EMAIL] = *std::move(smtp);
  }
  if (!absl::GetFlag(FLAGS_notification_webhook_url).empty()) {
    absl::StatusOr<std::shared_ptr<Sender>> webhook = WebhookFromFlags();
    if (!webhook.ok()) return webhook.status();
    senders[v1::CHANNEL_SMS] = *webhook;
    senders[v1::CHANNEL_PUSH] = *std::move(webhook);
  }
  return senders;
}

}  // namespace crm::notify
