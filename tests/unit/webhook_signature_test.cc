// The webhook's wire contract without a receiver: the Standard Webhooks signature (checked against
// the specification's own example), the secret's form, what a subscription's URL and event types
// may be, and a POST to a port nobody listens on.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/escaping.h"
#include "catch2/catch.hpp"
#include "google/protobuf/util/json_util.h"
#include "libs/events/webhook_sender.h"
#include "libs/events/webhooks.h"

namespace crm::events {
namespace {

TEST_CASE("a webhook signature is the Standard Webhooks one", "[webhooks]") {
  // The example of the Standard Webhooks specification and its reference libraries.
  const std::string secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  auto key = WebhookKeyFromSecret(secret);
  REQUIRE(key.ok());
  CHECK(SignWebhook(*key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, R"({"test": 2432232314})") ==
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  CHECK(WebhookSecretFromKey(*key) == secret);
  // Another body, id or time signs differently.
  CHECK(SignWebhook(*key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, R"({"test": 2432232314})") !=
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  CHECK_FALSE(WebhookKeyFromSecret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").ok());
  CHECK_FALSE(WebhookKeyFromSecret("whsec_").ok());
}

TEST_CASE("an event's webhook POST is its JSON, signed, with the event id and no trace",
          "[webhooks]") {
  v1::Event event;
  event.set_event_id("order-tracking/0/3.17");
  event.set_customer_id("c1");
  event.set_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  event.mutable_order_placed()->set_order_id("o1");
  const WebhookTarget target{"wh_1", WebhookUrl{false, "127.0.0.1", 8080, "/in"}, "key",
                             Subscription::All()};
  const WebhookPost post = WebhookPostOf(target, event, 1700000000);
  CHECK(post.id == "order-tracking/0/3.17");
  CHECK(post.unix_seconds == 1700000000);
  CHECK(post.signature == SignWebhook("key", post.id, 1700000000, post.body));
  v1::Event parsed;
  REQUIRE(google::protobuf::util::JsonStringToMessage(post.body, &parsed).ok());
  CHECK(parsed.order_placed().order_id() == "o1");
  CHECK(parsed.customer_id() == "c1");
  CHECK(parsed.traceparent().empty());
  CHECK(post.body.find("orderPlaced") != std::string::npos);
}

TEST_CASE("a webhook URL is http or https to a host, without user, fragment or spaces",
          "[webhooks]") {
  auto ok = ParseWebhookUrl("url", "HTTPS://Hooks.Example.com/crm/in?x=1");
  REQUIRE(ok.ok());
  CHECK(ok->https);
  CHECK(ok->host == "hooks.example.com");
  CHECK(ok->port == 443);
  CHECK(ok->target == "/crm/in?x=1");
  auto plain = ParseWebhookUrl("url", "http://127.0.0.1:8080");
  REQUIRE(plain.ok());
  CHECK_FALSE(plain->https);
  CHECK(plain->port == 8080);
  CHECK(plain->target == "/");
  auto v6 = ParseWebhookUrl("url", "http://[::1]:9000/x");
  REQUIRE(v6.ok());
  CHECK(v6->host == "::1");
  CHECK(v6->port == 9000);
  CHECK(ParseWebhookUrl("url", "http://h?q")->target == "/?q");

  for (const char* bad :
       {"", "ftp://h/", "file:///etc/passwd", "gopher://h", "http://", "http://user:pw@h/",
        "http://h/#frag", "http://h:0/", "http://h:70000/", "http://h:x/", "http://h /",
        "http://h/\n", "http://[::1/", "http://h_h/", "//h/"}) {
    INFO(bad);
    auto r = ParseWebhookUrl("url", bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(r.status().message().substr(0, 5) == "url: ");
  }
}

TEST_CASE(
    "webhook event types are Event's payload field names, and a wrong one is named with its index",
    "[webhooks]") {
  google::protobuf::RepeatedPtrField<std::string> names;
  names.Add("order_placed");
  names.Add("ticket_opened");
  CHECK(ValidateEventTypes("event_types", names).ok());
  names.Add("customer_id");  // a field of Event, not an event type
  const absl::Status s = ValidateEventTypes("event_types", names);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(s.message().substr(0, 16) == "event_types[2]: ");
  CHECK(s.message().find("order_delivered") != absl::string_view::npos);  // the choices are listed
}

TEST_CASE("a webhook POST nobody answers comes back without a status and says why", "[webhooks]") {
  // A loopback port bound but not listening refuses connections.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  socklen_t len = sizeof(addr);
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const int port = ntohs(addr.sin_port);
  for (bool https : {false, true}) {
    const WebhookPost post{WebhookUrl{https, "127.0.0.1", port, "/"}, "e1", 1700000000, "v1,x",
                           "{\"eventId\":\"e1\"}"};
    const WebhookAnswer answer = PostWebhook(post, absl::Seconds(10), nullptr);
    CHECK(answer.status == 0);
    CHECK_FALSE(answer.error.empty());
  }
  close(fd);
}

}  // namespace
}  // namespace crm::events
