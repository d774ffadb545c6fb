// Sending one event to an outside system's webhook: the URL's parts, the Standard Webhooks
// signature (the convention payment providers use), and a blocking HTTP(S) POST.
//
// Signature: webhook-signature = "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." +
// body)), where key is the base64 after "whsec_" in the subscription's secret and timestamp the
// unix seconds also sent as webhook-timestamp, so a receiver can refuse replays older than a few
// minutes.
//
// The client is libevent's evhttp (with bufferevent_openssl for https), the gateway's own event
// loop. libcurl is in the image too since notification e-mail (libs/notify/smtp_sender.h), but
// evhttp stays: this code needs nothing libcurl adds. https verifies the server's certificate
// against the system's CA store and its name against the host.
// Redirects are not followed (an answer is taken as it is).
#pragma once

#include <atomic>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/events.pb.h"
#include "libs/events/subscription.h"

namespace crm::events {

struct WebhookUrl {
  bool https = false;
  // Lower case; an IPv6 address without its brackets.
  std::string host;
  int port = 0;
  // Path and query, at least "/".
  std::string target;
};

// INVALID_ARGUMENT naming `field` unless `url` is http(s)://host[:port][/path][?query] with no
// user name, fragment, spaces or control characters.
absl::StatusOr<WebhookUrl> ParseWebhookUrl(absl::string_view field, absl::string_view url);

// "whsec_" + base64 of `key`.
std::string WebhookSecretFromKey(absl::string_view key);
// The signing key inside a "whsec_..." secret; INVALID_ARGUMENT when it is not one.
absl::StatusOr<std::string> WebhookKeyFromSecret(absl::string_view secret);

// "v1," + base64(HMAC-SHA256(key, id.timestamp.body)).
std::string SignWebhook(absl::string_view key, absl::string_view id, int64_t unix_seconds,
                        absl::string_view body);

struct WebhookAnswer {
  // 0 when no HTTP answer came (connection, TLS or timeout); `error` then says why.
  int status = 0;
  std::string error;
  // The start of the answer's body (for a refusal's message), printable ASCII only.
  std::string body_start;
};

struct WebhookPost {
  WebhookUrl url;
  std::string id;
  int64_t unix_seconds = 0;
  std::string signature;
  std::string body;
};

// A live subscription as its lane delivers to it.
struct WebhookTarget {
  std::string webhook_id;
  WebhookUrl url;
  // The signing key (the secret without "whsec_" and base64).
  std::string key;
  Subscription types;
};

// "webhook:<id>": the destination of its lane's metrics and dead letters.
std::string WebhookDestination(absl::string_view webhook_id);

// The POST of `event` to `target` at `unix_seconds`: protobuf's JSON of the event (camelCase field
// names) without its traceparent, which is this system's own trace; webhook-id is the event id.
WebhookPost WebhookPostOf(const WebhookTarget& target, const v1::Event& event,
                          int64_t unix_seconds);

// POSTs `post` as application/json and waits for the answer, at most `timeout`, or until `*cancel`
// turns true (checked every 50 ms). Thread-safe: every call has its own event loop.
WebhookAnswer PostWebhook(const WebhookPost& post, absl::Duration timeout,
                          const std::atomic<bool>* cancel);

}  // namespace crm::events
