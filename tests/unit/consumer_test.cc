// EventConsumer applied directly (no gRPC): exactly once, each customer's events in order, and an
// acknowledgement that is always a prefix of the batch, on one thread or several.
#include "libs/events/consumer.h"

#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "catch2/catch.hpp"
#include "libs/rpc/executor.h"
#include "prometheus/registry.h"
#include "tests/support/temp_dir.h"

namespace crm::events {
namespace {

// A handler that records what it applied and refuses the customers it is told to.
struct Recorder {
  absl::Mutex mu;
  std::vector<std::pair<std::string, int>> applied;  // (customer, sequence) in apply order
  std::set<std::string> refused;

  absl::Status Handle(const v1::Event& e) {
    absl::MutexLock lock(&mu);
    if (refused.count(e.customer_id()) > 0)
      return absl::FailedPreconditionError("refused: " + e.customer_id());
    applied.emplace_back(e.customer_id(), static_cast<int>(e.occur_time().nanos()));
    return absl::OkStatus();
  }
};

// 60 events of 7 customers, interleaved; each customer's events carry an increasing sequence.
v1::DeliverEventsRequest Batch() {
  v1::DeliverEventsRequest request;
  std::map<std::string, int> next;
  for (int i = 0; i < 60; ++i) {
    v1::Event* e = request.add_events();
    const std::string customer = absl::StrCat("customer-", (i * 5) % 7);
    e->set_event_id(absl::StrCat("event-", i));
    e->set_customer_id(customer);
    e->set_producer("test");
    e->mutable_occur_time()->set_seconds(1700000000);
    e->mutable_occur_time()->set_nanos(next[customer]++);
    e->mutable_customer_erased();
  }
  return request;
}

TEST_CASE(
    "a delivered batch is applied exactly once, each customer in order, on one thread or several",
    "[events][consumer]") {
  for (int threads : {1, 3}) {
    DYNAMIC_SECTION("threads: " << threads) {
      testing::TempDir dir;
      store::StoreOptions o;
      o.path = dir.path();
      auto store = store::Store::Open(o, {EventConsumer::kConsumedFamily});
      REQUIRE(store.ok());
      prometheus::Registry registry;
      rpc::Executor executor("consumer-test", 2);
      Recorder recorder;
      EventConsumer consumer(
          store->get(), Subscription::All(),
          [&](store::Transaction&, const v1::Event& e) { return recorder.Handle(e); }, &executor,
          registry);
      consumer.ApplyOnThreads(threads);
      const v1::DeliverEventsRequest batch = Batch();

      // Customer 3 refuses: the acknowledgement stops at its first event, naming the refusal.
      recorder.refused.insert("customer-3");
      int first_of_3 = 0;
      while (batch.events(first_of_3).customer_id() != "customer-3") ++first_of_3;
      v1::DeliverEventsResponse refused;
      REQUIRE(consumer.Apply(batch, &refused).ok());
      CHECK(refused.processed_count() == first_of_3);
      CHECK(refused.failed_code() == static_cast<int>(absl::StatusCode::kFailedPrecondition));
      CHECK(refused.failed_message() == "refused: customer-3");
      {
        absl::MutexLock lock(&recorder.mu);
        std::set<std::string> applied_ids;
        for (int i = 0; i < first_of_3; ++i) {
          const auto& e = batch.events(i);
          CHECK(std::count(recorder.applied.begin(), recorder.applied.end(),
                           std::make_pair(e.customer_id(), e.occur_time().nanos())) == 1);
        }
        for (const auto& [customer, seq] : recorder.applied) CHECK(customer != "customer-3");
      }

      // Redelivered from the refusal once the customer is accepted: every event applied exactly
      // once (those another thread applied past the refusal are recognised as duplicates).
      recorder.refused.clear();
      v1::DeliverEventsRequest rest;
      for (int i = first_of_3; i < batch.events_size(); ++i) *rest.add_events() = batch.events(i);
      v1::DeliverEventsResponse all;
      REQUIRE(consumer.Apply(rest, &all).ok());
      CHECK(all.processed_count() == rest.events_size());
      CHECK(all.failed_code() == 0);
      // And the whole batch again changes nothing.
      v1::DeliverEventsResponse again;
      REQUIRE(consumer.Apply(batch, &again).ok());
      CHECK(again.processed_count() == batch.events_size());

      absl::MutexLock lock(&recorder.mu);
      REQUIRE(recorder.applied.size() == static_cast<size_t>(batch.events_size()));
      std::map<std::string, int> expected_next;
      for (const auto& [customer, seq] : recorder.applied) {
        INFO(customer);
        CHECK(seq == expected_next[customer]++);  // each customer's events in their order
      }
    }
  }
}

TEST_CASE("a refused event's writes and hooks are taken back, the events before it keep theirs",
          "[events][consumer]") {
  testing::TempDir dir;
  store::StoreOptions o;
  o.path = dir.path();
  auto opened = store::Store::Open(o, {EventConsumer::kConsumedFamily, "effects"});
  REQUIRE(opened.ok());
  store::Store* store = opened->get();
  prometheus::Registry registry;
  rpc::Executor executor("consumer-test", 2);
  absl::Mutex mu;
  std::map<std::string, bool> finished;  // event id -> committed, as its hook was told
  EventConsumer consumer(
      store, Subscription::All(),
      [&](store::Transaction& txn, const v1::Event& e) -> absl::Status {
        // Every event writes its effect and registers a hook before the handler decides.
        if (absl::Status s = txn.Put(store->cf("effects"), e.event_id(), "done"); !s.ok()) return s;
        txn.OnFinish([&, id = e.event_id()](bool committed) {
          absl::MutexLock lock(&mu);
          finished[id] = committed;
        });
        if (e.customer_id() == "customer-3") return absl::FailedPreconditionError("refused");
        return absl::OkStatus();
      },
      &executor, registry);
  const v1::DeliverEventsRequest batch = Batch();
  int first_of_3 = 0;
  while (batch.events(first_of_3).customer_id() != "customer-3") ++first_of_3;
  REQUIRE(first_of_3 > 0);

  v1::DeliverEventsResponse response;
  REQUIRE(consumer.Apply(batch, &response).ok());
  CHECK(response.processed_count() == first_of_3);
  for (int i = 0; i < batch.events_size(); ++i) {
    const std::string& id = batch.events(i).event_id();
    INFO(id);
    auto effect = store->Get(store->cf("effects"), id);
    REQUIRE(effect.ok());
    CHECK(effect->has_value() == (i < first_of_3));
    absl::MutexLock lock(&mu);
    if (i < first_of_3) {
      CHECK(finished.at(id));
    } else if (i == first_of_3) {
      CHECK_FALSE(finished.at(id));  // its hook heard that its changes were taken back
    } else {
      CHECK(finished.count(id) == 0);  // never applied
    }
  }
  // Redelivered from the refusal: the applied ones are duplicates and write nothing twice.
  v1::DeliverEventsResponse again;
  REQUIRE(consumer.Apply(batch, &again).ok());
  CHECK(again.processed_count() == first_of_3);
}

TEST_CASE("subscription: a consumer's event types travel by name and unknown names are ignored",
          "[events]") {
  using E = Subscription::EventType;
  const Subscription loyalty({E::kOrderDelivered, E::kOrderRefunded, E::kCustomerErased});
  const v1::Subscription proto = loyalty.ToProto();
  CHECK(std::set<std::string>(proto.event_types().begin(), proto.event_types().end()) ==
        std::set<std::string>{"customer_erased", "order_delivered", "order_refunded"});

  v1::Subscription from_newer_build = proto;
  from_newer_build.add_event_types("parcel_teleported");  // a type this build does not know
  from_newer_build.add_event_types("producer");           // a field, but not an event type
  const Subscription learned = Subscription::FromProto(from_newer_build);
  v1::Event delivered, placed, erased, empty;
  delivered.mutable_order_delivered();
  placed.mutable_order_placed();
  erased.mutable_customer_erased();
  for (const Subscription* s : {&loyalty, &learned}) {
    CHECK(s->Wants(delivered));
    CHECK(s->Wants(erased));
    CHECK_FALSE(s->Wants(placed));
    CHECK_FALSE(s->Wants(empty));
  }
  CHECK(learned.ToProto().event_types_size() == 3);
  // A sink that does not say receives everything, even an event without a payload.
  CHECK(Subscription::All().Wants(empty));
  CHECK(Subscription::All().Wants(placed));
  CHECK(Subscription::All().ToProto().event_types_size() ==
        v1::Event::descriptor()->FindOneofByName("payload")->field_count());
}

}  // namespace
}  // namespace crm::events
