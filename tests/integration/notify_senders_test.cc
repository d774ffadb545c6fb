// The notification senders against real servers on 127.0.0.1: SmtpSender against an SMTP server
// (Debian's python3-aiosmtpd, tests/support/smtp_sink.py, started as a child process; plain,
// STARTTLS with AUTH, implicit TLS, with a certificate made by openssl for the test), and
// WebhookNotificationSender against an HTTP receiver of this test that answers with the status the
// test sets. SendersFromFlags is checked for what it builds and the flags it names.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "catch2/catch.hpp"
#include "libs/events/webhook_sender.h"
#include "libs/events/webhooks.h"
#include "libs/notify/senders.h"
#include "libs/notify/smtp_sender.h"
#include "libs/notify/webhook_notification_sender.h"
#include "tests/support/http.h"
#include "tests/support/loopback_socket.h"
#include "tests/support/process.h"
#include "tests/support/smtp_sink.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait.h"
#include "tests/support/webhook_receiver.h"

namespace crm::notify {
namespace {

using Outcome = SendResult::Outcome;

constexpr absl::Duration kPatience = absl::Seconds(30);

// testing::SmtpSink (tests/support/smtp_sink.py), started.
std::unique_ptr<testing::SmtpSink> StartedSink(std::vector<std::string> extra_args = {}) {
  auto sink = std::make_unique<testing::SmtpSink>(std::move(extra_args));
  const absl::Status started = sink->Start(kPatience);
  INFO(sink->output());
  REQUIRE(started.ok());
  return sink;
}

// The `n`th message `sink` received (from 1), once it has come.
std::string Arrived(const testing::SmtpSink& sink, size_t n) {
  std::string message = sink.WaitForMessage(n, kPatience);
  REQUIRE_FALSE(message.empty());
  return message;
}

// A self-signed certificate for 127.0.0.1, made with openssl for one test.
struct TestCertificate {
  TestCertificate() {
    const testing::CommandResult made = testing::RunCommand(
        absl::StrCat("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
                     "-addext subjectAltName=IP:127.0.0.1 -keyout ",
                     key, " -out ", cert, " 2>&1"));
    INFO(made.output);
    REQUIRE(made.exit_code == 0);
  }
  testing::TempDir dir;
  const std::string cert = dir.Sub("cert.pem");
  const std::string key = dir.Sub("key.pem");
};

struct ParsedMail {
  // Names in lower case, values unfolded.
  std::map<std::string, std::string> headers;
  std::string body;
};

ParsedMail Parse(const std::string& raw) {
  ParsedMail mail;
  const size_t end = raw.find("\r\n\r\n");
  REQUIRE(end != std::string::npos);
  std::string last;
  for (absl::string_view line : absl::StrSplit(raw.substr(0, end), "\r\n")) {
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      mail.headers[last] += std::string(line);
      continue;
    }
    const size_t colon = line.find(':');
    REQUIRE(colon != absl::string_view::npos);
    last = absl::AsciiStrToLower(line.substr(0, colon));
    mail.headers[last] = std::string(absl::StripLeadingAsciiWhitespace(line.substr(colon + 1)));
  }
  mail.body = raw.substr(end + 4);
  return mail;
}

// The text of a header made of =?UTF-8?B?...?= words (the space between words dropped, RFC 2047).
std::string DecodeWords(const std::string& value) {
  std::string out;
  for (absl::string_view word : absl::StrSplit(value, ' ', absl::SkipWhitespace())) {
    REQUIRE(absl::ConsumePrefix(&word, "=?UTF-8?B?"));
    REQUIRE(absl::ConsumeSuffix(&word, "?="));
    std::string text;
    REQUIRE(absl::Base64Unescape(word, &text));
    out += text;
  }
  return out;
}

OutgoingMessage Email(const std::string& id, const std::string& to) {
  OutgoingMessage m;
  m.notification_id = id;
  m.customer_id = "c-1";
  m.channel = v1::CHANNEL_EMAIL;
  m.to = to;
  m.subject = "您的订单已发货 — order 1001 shipped";
  m.body = "你好，李雷：\n.这一行以句点开头\n..two dots\n.\nend";
  m.language = "zh-CN";
  return m;
}

SmtpOptions PlainOptions(int port) {
  SmtpOptions o;
  o.host = "127.0.0.1";
  o.port = port;
  o.from = "news@shop.example";
  o.tls = SmtpOptions::Tls::kNone;
  return o;
}

std::unique_ptr<SmtpSender> MakeSmtp(SmtpOptions options) {
  absl::StatusOr<std::unique_ptr<SmtpSender>> sender = SmtpSender::Create(std::move(options));
  REQUIRE(sender.ok());
  return *std::move(sender);
}

// Checks one received copy of Email(...) in full.
void CheckDelivered(const std::string& raw, const OutgoingMessage& sent) {
  for (absl::string_view line : absl::StrSplit(raw, "\r\n")) {
    CHECK(line.size() <= 998);
    CHECK_FALSE(absl::StrContains(line, '\n'));
  }
  const ParsedMail mail = Parse(raw);
  CHECK(mail.headers.at("from") == "news@shop.example");
  CHECK(mail.headers.at("to") == sent.to);
  CHECK(DecodeWords(mail.headers.at("subject")) == sent.subject);
  CHECK(mail.headers.at("mime-version") == "1.0");
  CHECK(mail.headers.at("content-type") == "text/plain; charset=UTF-8");
  CHECK(mail.headers.at("content-transfer-encoding") == "base64");
  CHECK(mail.headers.at("content-language") == "zh-CN");
  absl::Time date;
  std::string error;
  CHECK(absl::ParseTime("%a, %d %b %Y %H:%M:%S %z", mail.headers.at("date"), &date, &error));
  CHECK(mail.headers.at("message-id") == SmtpMessageId("news@shop.example", sent.notification_id));
  std::string body;
  REQUIRE(absl::Base64Unescape(absl::StrReplaceAll(mail.body, {{"\r\n", ""}}), &body));
  CHECK(body == absl::StrReplaceAll(sent.body, {{"\n", "\r\n"}}));
}

TEST_CASE(
    "notify: SmtpSender delivers a Chinese message whole, with the same Message-ID on a retry",
    "[notify][smtp]") {
  auto sink = StartedSink();
  auto sender = MakeSmtp(PlainOptions(sink->port()));
  const OutgoingMessage message = Email("n-42/a.b", "li.lei@example.com");

  const SendResult first = sender->Send(message);
  INFO(first.detail);
  REQUIRE(first.outcome == Outcome::kSent);
  CHECK(absl::StartsWith(first.detail, "250"));
  CheckDelivered(Arrived(*sink, 1), message);
  CHECK(sink->Envelope(1) == "news@shop.example\nli.lei@example.com\n");

  REQUIRE(sender->Send(message).outcome == Outcome::kSent);
  const std::string again = Arrived(*sink, 2);
  CHECK(Parse(again).headers.at("message-id") ==
        Parse(sink->Messages()[0]).headers.at("message-id"));
  CHECK(Parse(again).headers.at("message-id") == "<n-42=2Fa=2Eb@shop.example>");

  OutgoingMessage other = message;
  other.notification_id = "n-43";
  REQUIRE(sender->Send(other).outcome == Outcome::kSent);
  CHECK(Parse(Arrived(*sink, 3)).headers.at("message-id") != "<n-42=2Fa=2Eb@shop.example>");
}

TEST_CASE(
    "notify: SmtpSender sends an ASCII subject as it is and folds a long one into encoded words",
    "[notify][smtp]") {
  auto sink = StartedSink();
  auto sender = MakeSmtp(PlainOptions(sink->port()));
  OutgoingMessage message = Email("n-1", "a@example.com");
  message.subject = "Your order shipped";
  REQUIRE(sender->Send(message).outcome == Outcome::kSent);
  CHECK(Parse(Arrived(*sink, 1)).headers.at("subject") == "Your order shipped");

  message.subject = std::string(200, 'x') + "：" + std::string(100, 'y');
  message.body = std::string(5000, 'z');
  REQUIRE(sender->Send(message).outcome == Outcome::kSent);
  const std::string raw = Arrived(*sink, 2);
  CheckDelivered(raw, message);
  // Every encoded word within RFC 2047's 75 characters.
  for (absl::string_view word :
       absl::StrSplit(Parse(raw).headers.at("subject"), ' ', absl::SkipWhitespace())) {
    CHECK(word.size() <= 75);
  }
}

TEST_CASE("notify: SmtpSender: 450 is retried, 550 rejected, a server that is not there retried",
          "[notify][smtp]") {
  auto sink = StartedSink();
  auto sender = MakeSmtp(PlainOptions(sink->port()));

  const SendResult busy = sender->Send(Email("n-1", "tempfail@example.com"));
  CHECK(busy.outcome == Outcome::kRetry);
  CHECK(absl::StrContains(busy.detail, "450 4.2.1 mailbox busy"));

  const SendResult unknown = sender->Send(Email("n-2", "reject@example.com"));
  CHECK(unknown.outcome == Outcome::kRejected);
  CHECK(absl::StrContains(unknown.detail, "550 5.1.1 no such mailbox"));

  const SendResult bad_address = sender->Send(Email("n-3", "not an address"));
  CHECK(bad_address.outcome == Outcome::kRejected);
  CHECK(absl::StrContains(bad_address.detail, "not an e-mail address"));
  CHECK(sink->Messages().empty());

  auto nowhere = MakeSmtp(PlainOptions(testing::PickFreePort()));
  const SendResult down = nowhere->Send(Email("n-4", "a@example.com"));
  CHECK(down.outcome == Outcome::kRetry);
  CHECK(absl::StrContains(down.detail, "127.0.0.1"));
}

TEST_CASE("notify: SmtpSender gives up on a server that never greets, to try again later",
          "[notify][smtp]") {
  // Listening, so the connection is made, but nobody ever answers on it.
  int port = 0;
  const int silent = testing::BindLoopback(&port);
  REQUIRE(silent >= 0);
  REQUIRE(listen(silent, 4) == 0);
  SmtpOptions options = PlainOptions(port);
  options.timeout = absl::Seconds(1);
  const SendResult mute = MakeSmtp(options)->Send(Email("n-5", "a@example.com"));
  close(silent);
  CHECK(mute.outcome == Outcome::kRetry);
  CHECK(absl::StrContains(absl::AsciiStrToLower(mute.detail), "timed out"));
}

TEST_CASE("notify: SmtpSender over STARTTLS with AUTH, and over implicit TLS",
          "[notify][smtp][tls]") {
  TestCertificate certificate;
  const OutgoingMessage message = Email("n-tls", "han.meimei@example.com");

  SECTION("STARTTLS, then AUTH") {
    auto sink = StartedSink({"--tls_cert", certificate.cert, "--tls_key", certificate.key, "--user",
                             "crm-mailer", "--password", "s3cret"});
    SmtpOptions options = PlainOptions(sink->port());
    options.tls = SmtpOptions::Tls::kStartTls;
    options.ca_file = certificate.cert;
    options.user = "crm-mailer";
    options.password = "s3cret";
    const SendResult sent = MakeSmtp(options)->Send(message);
    INFO(sent.detail);
    REQUIRE(sent.outcome == Outcome::kSent);
    CheckDelivered(Arrived(*sink, 1), message);

    options.password = "wrong";
    const SendResult refused = MakeSmtp(options)->Send(message);
    CHECK(refused.outcome == Outcome::kRejected);
    CHECK(absl::StrContains(refused.detail, "535"));

    // Without the test's CA the server's certificate is not trusted: nothing is sent.
    options.password = "s3cret";
    options.ca_file.clear();
    CHECK(MakeSmtp(options)->Send(message).outcome == Outcome::kRetry);
    CHECK(sink->Messages().size() == 1);
  }
  SECTION("implicit TLS") {
    auto sink = StartedSink(
        {"--tls_cert", certificate.cert, "--tls_key", certificate.key, "--implicit_tls"});
    SmtpOptions options = PlainOptions(sink->port());
    options.tls = SmtpOptions::Tls::kImplicit;
    options.ca_file = certificate.cert;
    const SendResult sent = MakeSmtp(options)->Send(message);
    INFO(sent.detail);
    REQUIRE(sent.outcome == Outcome::kSent);
    CheckDelivered(Arrived(*sink, 1), message);
  }
  SECTION("STARTTLS required, and the server does not offer it") {
    auto sink = StartedSink();
    SmtpOptions options = PlainOptions(sink->port());
    options.tls = SmtpOptions::Tls::kStartTls;
    const SendResult sent = MakeSmtp(options)->Send(message);
    CHECK(sent.outcome == Outcome::kRetry);
    CHECK(sink->Messages().empty());
  }
}

TEST_CASE("notify: SmtpSender::Create names the option it cannot use", "[notify][smtp]") {
  SmtpOptions options = PlainOptions(25);
  options.from = "News <news@shop.example>";
  CHECK(absl::StartsWith(SmtpSender::Create(options).status().message(), "from:"));
  options = PlainOptions(0);
  CHECK(absl::StartsWith(SmtpSender::Create(options).status().message(), "port:"));
  options = PlainOptions(25);
  options.host.clear();
  CHECK(absl::StartsWith(SmtpSender::Create(options).status().message(), "host:"));
}

// The SMS and push gateway.
using Gateway = testing::WebhookReceiver;

const std::string kSigningKey = "the gateway's signing key, 32 bytes";

OutgoingMessage Sms() {
  OutgoingMessage m;
  m.notification_id = "n-sms-7";
  m.customer_id = "c-9";
  m.channel = v1::CHANNEL_SMS;
  m.to = "+8613800138000";
  m.body = "您的包裹已到\"驿站\"，取件码 8-2-1\n回复 T 退订";
  m.language = "zh-CN";
  return m;
}

std::unique_ptr<WebhookNotificationSender> MakeWebhook(const std::string& url) {
  WebhookNotificationOptions options;
  options.url = url;
  options.secret = events::WebhookSecretFromKey(kSigningKey);
  options.allowed_hosts = {"127.0.0.1"};
  absl::StatusOr<std::unique_ptr<WebhookNotificationSender>> sender =
      WebhookNotificationSender::Create(options);
  REQUIRE(sender.ok());
  return *std::move(sender);
}

TEST_CASE("notify: WebhookNotificationSender POSTs the message as signed JSON",
          "[notify][webhook]") {
  Gateway gateway;
  auto sender = MakeWebhook(gateway.Url("/notify"));
  const OutgoingMessage message = Sms();

  const SendResult sent = sender->Send(message);
  INFO(sent.detail);
  REQUIRE(sent.outcome == Outcome::kSent);
  CHECK(sent.detail == "HTTP 200: ok");
  REQUIRE(gateway.Received().size() == 1);
  const Gateway::Request request = gateway.Received()[0];
  CHECK(request.body ==
        "{\"notificationId\":\"n-sms-7\",\"customerId\":\"c-9\",\"channel\":\"SMS\","
        "\"to\":\"+8613800138000\",\"subject\":\"\",\"body\":\"您的包裹已到\\\"驿站\\\"，取件码 "
        "8-2-1\\n回复 T 退订\",\"language\":\"zh-CN\"}");
  CHECK(request.headers.at("content-type") == "application/json");
  CHECK(request.headers.at("webhook-id") == "n-sms-7");
  int64_t timestamp = 0;
  REQUIRE(absl::SimpleAtoi(request.headers.at("webhook-timestamp"), &timestamp));
  CHECK(request.headers.at("webhook-signature") ==
        events::SignWebhook(kSigningKey, "n-sms-7", timestamp, request.body));

  OutgoingMessage push = message;
  push.channel = v1::CHANNEL_PUSH;
  push.to = "c-9";
  REQUIRE(sender->Send(push).outcome == Outcome::kSent);
  CHECK(absl::StrContains(gateway.Received()[1].body, "\"channel\":\"PUSH\""));
}

TEST_CASE(
    "notify: WebhookNotificationSender: 503 and 429 are retried, 400 rejected, no answer retried",
    "[notify][webhook]") {
  Gateway gateway;
  auto sender = MakeWebhook(gateway.Url("/notify"));
  gateway.AnswerWith(503);
  const SendResult unavailable = sender->Send(Sms());
  CHECK(unavailable.outcome == Outcome::kRetry);
  CHECK(unavailable.detail == "HTTP 503: refused by the test");
  gateway.AnswerWith(429);
  CHECK(sender->Send(Sms()).outcome == Outcome::kRetry);
  gateway.AnswerWith(400);
  const SendResult refused = sender->Send(Sms());
  CHECK(refused.outcome == Outcome::kRejected);
  CHECK(refused.detail == "HTTP 400: refused by the test");
  CHECK(gateway.Received().size() == 3);

  auto nowhere = MakeWebhook(absl::StrCat("http://127.0.0.1:", testing::PickFreePort(), "/notify"));
  const SendResult down = nowhere->Send(Sms());
  CHECK(down.outcome == Outcome::kRetry);
  CHECK_FALSE(down.detail.empty());
}

TEST_CASE("notify: WebhookNotificationSender refuses a host outside the allowed hosts",
          "[notify][webhook]") {
  WebhookNotificationOptions options;
  options.url = "https://sms.example.net/notify";
  options.secret = events::WebhookSecretFromKey(kSigningKey);
  options.allowed_hosts = {"127.0.0.1"};
  const absl::Status refused = WebhookNotificationSender::Create(options).status();
  CHECK(refused.code() == absl::StatusCode::kInvalidArgument);
  CHECK(absl::StrContains(refused.message(), "sms.example.net"));
  CHECK(absl::StrContains(refused.message(), "--webhook_allowed_hosts"));
}

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST_CASE("notify: SendersFromFlags builds a sender per configured channel and names a bad flag",
          "[notify][flags]") {
  absl::FlagSaver saved;
  testing::TempDir dir;
  WriteFile(dir.Sub("smtp-password"), "s3cret\n");
  WriteFile(dir.Sub("webhook-secret"), events::WebhookSecretFromKey(kSigningKey) + "\n");

  SECTION("nothing configured: no senders") {
    absl::StatusOr<Senders> senders = SendersFromFlags();
    REQUIRE(senders.ok());
    CHECK(senders->empty());
  }
  SECTION("SMTP for e-mail, the webhook for SMS and push, each delivering") {
    auto sink = StartedSink();
    Gateway gateway;
    absl::SetFlag(&FLAGS_smtp_server, absl::StrCat("127.0.0.1:", sink->port()));
    absl::SetFlag(&FLAGS_smtp_from, "news@shop.example");
    absl::SetFlag(&FLAGS_smtp_tls, "none");
    absl::SetFlag(&FLAGS_notification_webhook_url, gateway.Url("/notify"));
    absl::SetFlag(&FLAGS_notification_webhook_secret_file, dir.Sub("webhook-secret"));
    absl::SetFlag(&FLAGS_webhook_allowed_hosts, "127.0.0.1");
    absl::StatusOr<Senders> senders = SendersFromFlags();
    INFO(senders.status().ToString());
    REQUIRE(senders.ok());
    REQUIRE(senders->size() == 3);
    CHECK(senders->at(v1::CHANNEL_SMS) == senders->at(v1::CHANNEL_PUSH));

    const OutgoingMessage email = Email("n-flags", "a@example.com");
    REQUIRE(senders->at(v1::CHANNEL_EMAIL)->Send(email).outcome == Outcome::kSent);
    CheckDelivered(Arrived(*sink, 1), email);
    REQUIRE(senders->at(v1::CHANNEL_SMS)->Send(Sms()).outcome == Outcome::kSent);
    CHECK(gateway.Received().size() == 1);
  }
  SECTION("each bad flag is named") {
    auto error_of = [] { return std::string(SendersFromFlags().status().message()); };
    absl::SetFlag(&FLAGS_smtp_server, "mail.example.com");
    CHECK(absl::StartsWith(error_of(), "--smtp_server:"));
    absl::SetFlag(&FLAGS_smtp_server, "mail.example.com:587");
    absl::SetFlag(&FLAGS_smtp_from, "news@shop.example");
    absl::SetFlag(&FLAGS_smtp_tls, "ssl");
    CHECK(absl::StartsWith(error_of(), "--smtp_tls:"));
    absl::SetFlag(&FLAGS_smtp_tls, "tls");
    absl::SetFlag(&FLAGS_smtp_user, "crm-mailer");
    CHECK(absl::StartsWith(error_of(), "--smtp_password_file:"));
    absl::SetFlag(&FLAGS_smtp_password_file, dir.Sub("missing"));
    CHECK(absl::StartsWith(error_of(), "--smtp_password_file:"));
    absl::SetFlag(&FLAGS_smtp_password_file, dir.Sub("smtp-password"));
    absl::SetFlag(&FLAGS_smtp_from, "");
    CHECK(absl::StartsWith(error_of(), "--smtp_from:"));
    absl::SetFlag(&FLAGS_smtp_from, "news@shop.example");
    REQUIRE(SendersFromFlags().ok());

    absl::SetFlag(&FLAGS_notification_webhook_url, "https://sms.example.net/notify");
    absl::SetFlag(&FLAGS_webhook_allowed_hosts, "127.0.0.1,sms.example.net");
    CHECK(absl::StartsWith(error_of(), "--notification_webhook_secret_file:"));
    // A password is not a whsec_ secret.
    absl::SetFlag(&FLAGS_notification_webhook_secret_file, dir.Sub("smtp-password"));
    CHECK(absl::StartsWith(error_of(), "--notification_webhook_secret_file:"));
    absl::SetFlag(&FLAGS_notification_webhook_secret_file, dir.Sub("webhook-secret"));
    absl::SetFlag(&FLAGS_webhook_allowed_hosts, "127.0.0.1");
    CHECK(absl::StartsWith(error_of(), "--notification_webhook_url:"));
    absl::SetFlag(&FLAGS_webhook_allowed_hosts, "127.0.0.1,sms.example.net");
    absl::StatusOr<Senders> senders = SendersFromFlags();
    REQUIRE(senders.ok());
    CHECK(senders->size() == 3);
  }
}

}  // namespace
}  // namespace crm::notify
