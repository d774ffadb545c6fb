// Events keep the trace of the call that wrote them: the outbox stores the trace current at the
// write as the event's traceparent, and the consumer applies each event in that trace (a span of
// its own), so what a consumer logs names the originating call's trace_id.
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "catch2/catch.hpp"
#include "libs/events/consumer.h"
#include "libs/events/outbox.h"
#include "libs/rpc/executor.h"
#include "libs/trace/trace.h"
#include "prometheus/registry.h"
#include "tests/support/outbox_events.h"
#include "tests/support/temp_dir.h"

namespace crm::events {
namespace {

using trace::TraceContext;

std::unique_ptr<store::Store> OpenStore(const std::string& path) {
  store::StoreOptions o;
  o.path = path;
  std::vector<std::string> families = Outbox::ColumnFamilies();
  families.push_back(EventConsumer::kConsumedFamily);
  auto s = store::Store::Open(o, families);
  REQUIRE(s.ok());
  return std::move(*s);
}

v1::Event Erased(const std::string& customer) {
  v1::Event e;
  e.set_customer_id(customer);
  e.mutable_customer_erased();
  return e;
}

TEST_CASE("the outbox writes the current trace into each event, and nothing outside a trace") {
  testing::TempDir dir;
  auto store = OpenStore(dir.path());
  ManualClock clock;
  auto outbox = Outbox::Open(store.get(), "order-tracking", 0, &clock);
  REQUIRE(outbox.ok());
  const TraceContext call = trace::NewTrace();
  const std::string chosen = trace::Format(trace::NewTrace());
  v1::Event traced = Erased("c1"), untraced = Erased("c2"), preset = Erased("c3");
  preset.set_traceparent(chosen);
  REQUIRE(store
              ->Transact(store::Durability::kSynced,
                         [&](store::Transaction& txn) {
                           trace::Scope scope(call);
                           if (auto s = (*outbox)->Append(txn, traced); !s.ok()) return s;
                           return (*outbox)->Append(txn, preset);
                         })
              .ok());
  REQUIRE(store
              ->Transact(store::Durability::kSynced,
                         [&](store::Transaction& txn) { return (*outbox)->Append(txn, untraced); })
              .ok());
  CHECK(traced.traceparent() == trace::Format(call));
  CHECK(preset.traceparent() == chosen);
  CHECK(untraced.traceparent().empty());
  // As stored for the dispatcher.
  std::map<std::string, std::string> stored;
  for (const v1::Event& e : testing::OutboxEvents(*store))
    stored[e.customer_id()] = e.traceparent();
  CHECK(stored["c1"] == trace::Format(call));
  CHECK(stored["c2"].empty());
}

TEST_CASE(
    "a consumer applies each event in the trace it was written in, on one thread or several") {
  for (int threads : {1, 3}) {
    DYNAMIC_SECTION("threads: " << threads) {
      testing::TempDir dir;
      auto store = OpenStore(dir.path());
      prometheus::Registry registry;
      rpc::Executor executor("event-trace-test", 2);
      absl::Mutex mu;
      std::map<std::string, std::optional<TraceContext>> applied_in;
      EventConsumer consumer(
          store.get(), Subscription::All(),
          [&](store::Transaction&, const v1::Event& e) {
            absl::MutexLock lock(&mu);
            applied_in[e.event_id()] = trace::Current();
            return absl::OkStatus();
          },
          &executor, registry);
      consumer.ApplyOnThreads(threads);

      std::map<std::string, TraceContext> written_in;
      v1::DeliverEventsRequest request;
      for (int i = 0; i < 12; ++i) {
        v1::Event* e = request.add_events();
        *e = Erased(absl::StrCat("customer-", i % 5));
        e->set_event_id(absl::StrCat("event-", i));
        e->set_producer("order-tracking");
        e->mutable_occur_time()->set_seconds(1700000000 + i);
        if (i % 4 == 3) continue;  // written outside any trace
        written_in[e->event_id()] = trace::NewTrace();
        e->set_traceparent(trace::Format(written_in[e->event_id()]));
      }
      const TraceContext delivery = trace::NewTrace();
      v1::DeliverEventsResponse response;
      {
        trace::Scope scope(delivery);
        REQUIRE(consumer.Apply(request, &response).ok());
      }
      REQUIRE(response.processed_count() == 12);
      absl::MutexLock lock(&mu);
      REQUIRE(applied_in.size() == 12);
      for (const auto& [id, seen] : applied_in) {
        INFO(id);
        REQUIRE(seen.has_value());
        if (auto it = written_in.find(id); it != written_in.end()) {
          CHECK(seen->TraceIdHex() == it->second.TraceIdHex());
          CHECK(seen->SpanIdHex() != it->second.SpanIdHex());
        } else {
          CHECK(*seen == delivery);
        }
      }
      CHECK_FALSE(trace::Current().has_value());
    }
  }
}

}  // namespace
}  // namespace crm::events
