// Webhooks for outside systems over the real thing: customer-profile (a producer: BehaviorRecorded,
// CustomerErased) in-process over RocksDB, its EventAdminService called over gRPC, and the outside
// system a small HTTP server of this test on 127.0.0.1 that records what it is sent and answers
// with the status the test sets.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/events.grpc.pb.h"
#include "google/protobuf/util/json_util.h"
#include "libs/events/webhooks.h"
#include "services/customer_profile/customer_profile_component.h"
#include "tests/support/http.h"
#include "tests/support/loopback_socket.h"
#include "tests/support/metric_value.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"
#include "tests/support/shop_calls.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait.h"
#include "tests/support/webhook_receiver.h"

namespace crm::events {
namespace {

using ProfileHarness = testing::ServiceHarness<customer_profile::CustomerProfileComponent>;
using Admin = v1::EventAdminService::Stub;
using Profiles = v1::CustomerProfileService::Stub;

constexpr absl::Duration kPatience = absl::Seconds(30);

using Receiver = testing::WebhookReceiver;

// --webhook_allowed_hosts for the harnesses a test starts, put back as it was afterwards.
struct AllowedHosts {
  explicit AllowedHosts(const std::string& hosts) {
    absl::SetFlag(&FLAGS_webhook_allowed_hosts, hosts);
  }
  ~AllowedHosts() { absl::SetFlag(&FLAGS_webhook_allowed_hosts, saved); }
  std::string saved = absl::GetFlag(FLAGS_webhook_allowed_hosts);
};

struct World {
  World() : World("127.0.0.1") {}
  explicit World(const std::string& allowed_hosts) : hosts(allowed_hosts) {}

  v1::CreateWebhookResponse Subscribe(const std::string& request_id, const std::string& path,
                                      std::vector<std::string> types = {"behavior_recorded"}) {
    return testing::CallOk(admin.get(), &Admin::CreateWebhook,
                           CreateRequest(request_id, receiver.Url(path), types));
  }
  static v1::CreateWebhookRequest CreateRequest(const std::string& request_id,
                                                const std::string& url,
                                                const std::vector<std::string>& types) {
    v1::CreateWebhookRequest req;
    req.set_producer("customer-profile");
    req.set_request_id(request_id);
    req.set_url(url);
    for (const auto& t : types) req.add_event_types(t);
    return req;
  }
  // Registers `email` with customer-profile; the customer's id.
  std::string Customer(const std::string& email) {
    return testing::RegisterCustomer(profiles.get(), email);
  }
  // Records one click of `customer`, which customer-profile reports as BehaviorRecorded.
  void Click(const std::string& customer, const std::string& request_id) {
    v1::RecordBehaviorEventsRequest req;
    req.set_customer_id(customer);
    req.set_request_id(request_id);
    v1::BehaviorEvent* e = req.add_events();
    e->set_type(v1::BEHAVIOR_EVENT_TYPE_CATEGORY_CLICK);
    e->set_category("phones");
    testing::CallOk(profiles.get(), &Profiles::RecordBehaviorEvents, req);
  }
  std::vector<v1::DeadLetter> DeadLetters() {
    v1::ListDeadLettersRequest req;
    req.set_producer("customer-profile");
    auto resp = testing::CallOk(admin.get(), &Admin::ListDeadLetters, req);
    return {resp.dead_letters().begin(), resp.dead_letters().end()};
  }
  v1::ListWebhooksResponse List() {
    v1::ListWebhooksRequest req;
    req.set_producer("customer-profile");
    return testing::CallOk(admin.get(), &Admin::ListWebhooks, req);
  }
  grpc::Status Delete(const std::string& id) {
    v1::DeleteWebhookRequest req;
    req.set_producer("customer-profile");
    req.set_webhook_id(id);
    return testing::StatusOf(admin.get(), &Admin::DeleteWebhook, req);
  }
  // A process restart (a new port, so new stubs).
  void Restart() {
    profile.Restart();
    admin = v1::EventAdminService::NewStub(profile.channel());
    profiles = v1::CustomerProfileService::NewStub(profile.channel());
  }
  double Metric(const std::string& name, std::map<std::string, std::string> labels) {
    return testing::MetricValue(profile.metrics().registry(), name, labels);
  }
  // Whether any series of the dispatcher's metrics names `destination`.
  bool HasSeriesFor(const std::string& destination) {
    for (const auto& family : profile.metrics().registry().Collect()) {
      for (const auto& m : family.metric) {
        for (const auto& l : m.label) {
          if (l.name == "destination" && l.value == destination) return true;
        }
      }
    }
    return false;
  }

  AllowedHosts hosts;
  Receiver receiver;
  ProfileHarness profile{ProfileHarness::Options()};
  std::unique_ptr<Admin> admin = v1::EventAdminService::NewStub(profile.channel());
  std::unique_ptr<Profiles> profiles = v1::CustomerProfileService::NewStub(profile.channel());
};

// A World with one customer, whose clicks are the events its webhooks are sent.
struct OneClickingCustomer : World {
  void Click(const std::string& request_id) { World::Click(customer, request_id); }
  const std::string customer = Customer("clicker@example.com");
};

v1::Event EventIn(const Receiver::Request& r) {
  v1::Event e;
  const auto parsed = google::protobuf::util::JsonStringToMessage(r.body, &e);
  INFO(r.body);
  REQUIRE(parsed.ok());
  return e;
}

// What an operator's receiver would run (the README's example): the signature from the secret,
// the webhook-id, the webhook-timestamp and the body as received, with openssl.
std::string SignatureByShell(const std::string& secret, const Receiver::Request& r) {
  testing::TempDir dir;
  const std::string body_file = dir.Sub("body.json");
  std::ofstream(body_file) << r.body;
  const std::string script = absl::StrCat(
      "secret='", secret, "'; id='", r.headers.at("webhook-id"), "'; ts='",
      r.headers.at("webhook-timestamp"), "'\n",
      "key_hex=$(printf %s \"${secret#whsec_}\" | base64 -d | od -An -v -tx1 | tr -d ' \\n')\n",
      "printf 'v1,'; { printf '%s.%s.' \"$id\" \"$ts\"; cat '", body_file, "'; } | ",
      "openssl dgst -sha256 -mac HMAC -macopt \"hexkey:$key_hex\" -binary | base64\n");
  const testing::CommandResult run = testing::RunCommand(script);
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  return std::string(absl::StripTrailingAsciiWhitespace(run.output));
}

TEST_CASE("webhook: a subscriber receives each event of its types once, as signed JSON",
          "[webhooks]") {
  World w;
  const v1::CreateWebhookResponse made = w.Subscribe("hook-1", "/crm/in");
  CHECK(absl::StartsWith(made.webhook_id(), "wh_"));
  REQUIRE(absl::StartsWith(made.secret(), "whsec_"));

  const std::string ana = w.Customer("ana@example.com");
  w.Click(ana, "click-1");
  REQUIRE(testing::WaitUntil([&] { return w.receiver.Received().size() == 1; }, kPatience));
  const Receiver::Request first = w.receiver.Received()[0];
  CHECK(first.target == "/crm/in");
  CHECK(first.headers.at("content-type") == "application/json");
  const v1::Event event = EventIn(first);
  CHECK(event.has_behavior_recorded());
  CHECK(event.customer_id() == ana);
  CHECK(event.producer() == "customer-profile");
  CHECK(event.traceparent().empty());
  CHECK(first.headers.at("webhook-id") == event.event_id());
  int64_t sent_at = 0;
  REQUIRE(absl::SimpleAtoi(first.headers.at("webhook-timestamp"), &sent_at));
  // Unix seconds of the wall clock (receivers refuse stale ones), not the harness's manual clock.
  CHECK(std::abs(sent_at - absl::ToUnixSeconds(absl::Now())) < 600);
  auto key = WebhookKeyFromSecret(made.secret());
  REQUIRE(key.ok());
  CHECK(first.headers.at("webhook-signature") ==
        SignWebhook(*key, event.event_id(), sent_at, first.body));
  CHECK(first.headers.at("webhook-signature") == SignatureByShell(made.secret(), first));

  // Erasure (CustomerErased, not subscribed to) is not sent; the next click, written after it,
  // is, so the erasure was passed over, not still on its way.
  v1::EraseCustomerRequest erase;
  erase.set_customer_id(ana);
  erase.set_request_id("erase-1");
  erase.set_reason("customer request");
  testing::CallOk(w.profiles.get(), &Profiles::EraseCustomer, erase);
  const std::string bo = w.Customer("bo@example.com");
  w.Click(bo, "click-2");
  REQUIRE(testing::WaitUntil([&] { return w.receiver.Received().size() == 2; }, kPatience));
  const v1::Event second = EventIn(w.receiver.Received()[1]);
  CHECK(second.has_behavior_recorded());
  CHECK(second.customer_id() == bo);

  // Per subscriber metrics, under its own destination (counted once the answer is read).
  const std::string destination = "webhook:" + made.webhook_id();
  CHECK(testing::WaitUntil(
      [&] {
        return w.Metric("crm_event_deliveries_total",
                        {{"destination", destination}, {"result", "ok"}}) == 2;
      },
      kPatience));
  CHECK(w.Metric("crm_event_deliveries_total",
                 {{"destination", destination}, {"result", "error"}}) == 0);

  // Listed without its secret; the same request_id gives the same webhook and secret, another
  // subscription under it is refused.
  const v1::ListWebhooksResponse listed = w.List();
  REQUIRE(listed.webhooks_size() == 1);
  CHECK(listed.webhooks(0).webhook_id() == made.webhook_id());
  CHECK(listed.webhooks(0).url() == w.receiver.Url("/crm/in"));
  CHECK(listed.webhooks(0).event_types(0) == "behavior_recorded");
  CHECK(listed.webhooks(0).disabled_reason().empty());
  CHECK(listed.SerializeAsString().find(made.secret().substr(6)) == std::string::npos);
  const auto again = w.Subscribe("hook-1", "/crm/in");
  CHECK(again.webhook_id() == made.webhook_id());
  CHECK(again.secret() == made.secret());
  testing::RequireError(testing::StatusOf(w.admin.get(), &Admin::CreateWebhook,
                                          World::CreateRequest("hook-1", w.receiver.Url("/other"),
                                                               {"behavior_recorded"})),
                        grpc::StatusCode::INVALID_ARGUMENT, "request_id");
  // A second subscription, to every event type, has its own id and secret.
  const auto other = w.Subscribe("hook-2", "/other", {});
  CHECK(other.webhook_id() != made.webhook_id());
  CHECK(other.secret() != made.secret());
}

TEST_CASE("webhook: subscriptions are refused unless the operator allowed the host, and checked",
          "[webhooks]") {
  {
    World off("");
    const grpc::Status s = testing::StatusOf(off.admin.get(), &Admin::CreateWebhook,
                                             World::CreateRequest("r1", off.receiver.Url("/"), {}));
    CHECK(s.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
    CHECK(absl::StrContains(s.error_message(), "--webhook_allowed_hosts"));
  }
  World w("hooks.example.com, 127.0.0.1");
  auto refused = [&](const v1::CreateWebhookRequest& req, grpc::StatusCode code,
                     const std::string& field) {
    testing::RequireError(testing::StatusOf(w.admin.get(), &Admin::CreateWebhook, req), code,
                          field);
  };
  const grpc::StatusCode invalid = grpc::StatusCode::INVALID_ARGUMENT;
  // Internal addresses the operator did not list: another loopback name, a metadata address.
  refused(World::CreateRequest("r1", "http://localhost:1/x", {}), invalid, "url");
  refused(World::CreateRequest("r1", "http://169.254.169.254/latest/meta-data", {}), invalid,
          "url");
  refused(World::CreateRequest("r1", "ftp://127.0.0.1/", {}), invalid, "url");
  refused(World::CreateRequest("r1", "http://u:p@127.0.0.1/", {}), invalid, "url");
  refused(World::CreateRequest("r1", w.receiver.Url("/"), {"behavior_recorded", "nope"}), invalid,
          "event_types[1]");
  refused(World::CreateRequest("", w.receiver.Url("/"), {}), invalid, "request_id");
  auto other_producer = World::CreateRequest("r1", w.receiver.Url("/"), {});
  other_producer.set_producer("order-tracking");
  refused(other_producer, invalid, "producer");
  CHECK(w.List().webhooks_size() == 0);
  CHECK(w.Delete("wh_0000").error_code() == grpc::StatusCode::NOT_FOUND);
  // https to an allowed name is a valid subscription (nothing is sent: no event is written).
  CHECK(w.Subscribe("r2", "/").webhook_id() != "");
  const auto https = testing::CallOk(
      w.admin.get(), &Admin::CreateWebhook,
      World::CreateRequest("r3", "https://hooks.example.com/crm", {"customer_erased"}));
  CHECK(w.List().webhooks_size() == 2);
  CHECK(w.Delete(https.webhook_id()).ok());
}

TEST_CASE(
    "webhook: an unreachable or failing receiver is retried, and a refused event is a dead "
    "letter that replays",
    "[webhooks]") {
  OneClickingCustomer w;
  const auto made = w.Subscribe("hook-1", "/in");
  const std::string destination = "webhook:" + made.webhook_id();

  // 503 and 429 are the receiver being away or busy: retried until it takes the event.
  w.receiver.AnswerWith(503);
  w.Click("c1");
  REQUIRE(testing::WaitUntil([&] { return w.receiver.CountAnswered(503) >= 2; }, kPatience));
  w.receiver.AnswerWith(429);
  REQUIRE(testing::WaitUntil([&] { return w.receiver.CountAnswered(429) >= 1; }, kPatience));
  w.receiver.AnswerWith(200);
  REQUIRE(testing::WaitUntil([&] { return w.receiver.CountAnswered(200) == 1; }, kPatience));
  const auto tries = w.receiver.Received();
  for (const auto& r : tries)
    CHECK(r.headers.at("webhook-id") == tries[0].headers.at("webhook-id"));
  CHECK(w.DeadLetters().empty());
  CHECK(w.Metric("crm_event_deliveries_total",
                 {{"destination", destination}, {"result", "error"}}) >= 3);

  // 400 is a refusal: after 5 attempts the event is a dead letter and the lane goes on.
  w.receiver.AnswerWith(400);
  w.Click("c2");
  REQUIRE(testing::WaitUntil([&] { return w.DeadLetters().size() == 1; }, kPatience));
  const v1::DeadLetter dead = w.DeadLetters()[0];
  CHECK(dead.destination() == destination);
  CHECK(dead.attempts() == 5);
  CHECK(absl::StrContains(dead.last_error(), "HTTP 400"));
  CHECK(w.receiver.CountAnswered(400) == 5);
  CHECK(testing::WaitUntil(
      [&] {
        return w.Metric("crm_event_dead_letters_total", {{"destination", destination}}) == 1;
      },
      kPatience));
  w.receiver.AnswerWith(200);
  w.Click("c3");
  REQUIRE(testing::WaitUntil([&] { return w.receiver.CountAnswered(200) == 2; }, kPatience));
  CHECK(w.receiver.Received().back().headers.at("webhook-id") != dead.event().event_id());

  // Replayed once the receiver takes it; gone from the dead letters.
  v1::ReplayDeadLettersRequest replay;
  replay.set_producer("customer-profile");
  const auto replayed = testing::CallOk(w.admin.get(), &Admin::ReplayDeadLetters, replay);
  CHECK(replayed.replayed_count() == 1);
  CHECK(replayed.still_failing_size() == 0);
  CHECK(w.receiver.Received().back().headers.at("webhook-id") == dead.event().event_id());
  CHECK(w.receiver.Received().back().answered == 200);
  CHECK(w.DeadLetters().empty());
}

TEST_CASE(
    "webhook: subscriptions survive a restart, and a deleted one gets nothing more and its "
    "metrics go",
    "[webhooks]") {
  OneClickingCustomer w;
  const auto a = w.Subscribe("hook-a", "/a");
  const auto b = w.Subscribe("hook-b", "/b");
  w.Restart();
  w.Click("c1");
  REQUIRE(testing::WaitUntil(
      [&] {
        return w.receiver.Received("/a").size() == 1 && w.receiver.Received("/b").size() == 1;
      },
      kPatience));
  CHECK(w.HasSeriesFor("webhook:" + a.webhook_id()));

  REQUIRE(w.Delete(a.webhook_id()).ok());
  CHECK(w.Delete(a.webhook_id()).ok());  // already deleted: nothing to do
  CHECK_FALSE(w.HasSeriesFor("webhook:" + a.webhook_id()));
  CHECK(w.HasSeriesFor("webhook:" + b.webhook_id()));
  const auto listed = w.List();
  REQUIRE(listed.webhooks_size() == 1);
  CHECK(listed.webhooks(0).webhook_id() == b.webhook_id());
  w.Click("c2");
  REQUIRE(testing::WaitUntil([&] { return w.receiver.Received("/b").size() == 2; }, kPatience));
  CHECK(w.receiver.Received("/a").size() == 1);
  // Its request_id is spent.
  CHECK(
      testing::StatusOf(w.admin.get(), &Admin::CreateWebhook,
                        World::CreateRequest("hook-a", w.receiver.Url("/a"), {"behavior_recorded"}))
          .error_code() == grpc::StatusCode::FAILED_PRECONDITION);

  // The operator takes the host off the list: after a restart the subscription is kept but not
  // delivered to, and the listing says why.
  absl::SetFlag(&FLAGS_webhook_allowed_hosts, "hooks.example.com");
  w.Restart();
  const auto disabled = w.List();
  REQUIRE(disabled.webhooks_size() == 1);
  CHECK(absl::StrContains(disabled.webhooks(0).disabled_reason(), "--webhook_allowed_hosts"));
  CHECK_FALSE(w.HasSeriesFor("webhook:" + b.webhook_id()));
}

}  // namespace
}  // namespace crm::events
