// The webhook's wire contract without a receiver: the Standard Webhooks signature (checked against
// the specification's own example), the secret's form, what a subscription's URL and event types
// may be, and a POST to a port nobody listens on.
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "catch2/catch.hpp"
#include "google/protobuf/util/json_util.h"
#include "libs/events/webhook_sender.h"
#include "libs/events/webhooks.h"
#include "tests/support/http.h"
#include "tests/support/loopback_socket.h"
#include "tests/support/temp_dir.h"

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

// A listening loopback socket; its port.
int ListenOnLoopback(int* port) {
  const int fd = testing::BindLoopback(port);
  REQUIRE(fd >= 0);
  REQUIRE(listen(fd, 4) == 0);
  return fd;
}

TEST_CASE("a webhook over https is not sent to a server whose certificate is not trusted",
          "[webhooks]") {
  // A TLS server on 127.0.0.1 whose self-signed certificate names 127.0.0.1 but which no CA of the
  // system's store signed.
  testing::TempDir dir;
  const std::string cert = dir.Sub("tls.crt"), key = dir.Sub("tls.key");
  const testing::CommandResult made = testing::RunCommand(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "
      "/CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout " +
      key + " -out " + cert);
  INFO(made.output);
  REQUIRE(made.exit_code == 0);
  SSL_CTX* server_tls = SSL_CTX_new(TLS_server_method());
  REQUIRE(SSL_CTX_use_certificate_file(server_tls, cert.c_str(), SSL_FILETYPE_PEM) == 1);
  REQUIRE(SSL_CTX_use_PrivateKey_file(server_tls, key.c_str(), SSL_FILETYPE_PEM) == 1);
  int port = 0;
  const int listener = ListenOnLoopback(&port);
  std::atomic<int> handshakes{0}, completed{0};
  std::thread server([&] {
    pollfd p{listener, POLLIN, 0};
    if (poll(&p, 1, 30000) != 1) return;
    const int fd = accept(listener, nullptr, nullptr);
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    SSL* ssl = SSL_new(server_tls);
    SSL_set_fd(ssl, fd);
    ++handshakes;
    if (SSL_accept(ssl) == 1) ++completed;
    SSL_free(ssl);
    close(fd);
  });
  const WebhookPost post{WebhookUrl{true, "127.0.0.1", port, "/"}, "e1", 1700000000, "v1,x",
                         "{\"eventId\":\"e1\"}"};
  const WebhookAnswer answer = PostWebhook(post, absl::Seconds(10), nullptr);
  server.join();
  close(listener);
  SSL_CTX_free(server_tls);
  INFO(answer.error);
  CHECK(handshakes == 1);
  CHECK(completed == 0);  // the client gave up inside the handshake: nothing was sent
  CHECK(answer.status == 0);
  CHECK(absl::StrContains(answer.error, "certificate verify failed"));
}

TEST_CASE("a webhook POST nobody answers comes back without a status and says why", "[webhooks]") {
  // A loopback port bound but not listening refuses connections.
  int port = 0;
  const int fd = testing::BindLoopback(&port);
  REQUIRE(fd >= 0);
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
