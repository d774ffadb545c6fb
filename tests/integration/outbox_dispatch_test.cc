// The dispatcher sends an event as soon as it is committed, even while an earlier append is still
// in flight, yet its stored cursor never passes that append: a restart then delivers the late event
// and again the early one (the consumer recognises it), so nothing is lost; a customer's events
// stay in the order they were written. Real RocksDB, a real Dispatcher and a real EventSink on
// loopback.
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "catch2/catch.hpp"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/events/dispatcher.h"
#include "libs/events/outbox.h"
#include "libs/metrics/metrics.h"
#include "libs/rpc/client.h"
#include "libs/store/key.h"
#include "tests/support/event_recorder.h"
#include "tests/support/metric_value.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait.h"

namespace crm::events {
namespace {

v1::Event Erased(const std::string& customer) {
  v1::Event e;
  e.set_customer_id(customer);
  e.mutable_customer_erased();
  return e;
}

// A producer on a manual clock: its store (real RocksDB in a temp dir), its outbox, and a
// dispatcher delivering to the EventSink at `consumer` as destination "test" (cursor key "test",
// shard 0).
struct Producer {
  explicit Producer(const std::string& consumer, DispatcherOptions options = {})
      : options(options) {
    store::StoreOptions o;
    o.path = dir.path();
    auto opened = store::Store::Open(o, Outbox::ColumnFamilies());
    REQUIRE(opened.ok());
    store = std::move(*opened);
    outbox = Outbox::Open(store.get(), "producer", 0, &clock);
    REQUIRE(outbox.ok());
    auto made = rpc::ChannelSet::Create("crm.v1.EventSink", consumer, &metrics);
    REQUIRE(made.ok());
    channels = std::move(*made);
    StartDispatcher();
  }

  // A new dispatcher in place of the running one, knowing only the stored cursor. (No append may
  // commit meanwhile, as the outbox's commit listener requires.)
  void StartDispatcher() {
    dispatcher.reset();
    dispatcher = std::make_unique<Dispatcher>(
        outbox->get(), std::vector<Sink>{{"test", channels.get()}}, &metrics, &clock, options);
    dispatcher->Start();
  }

  // The producer restarts: a new outbox on the same store (the next epoch, no commit times
  // remembered) and a new dispatcher.
  void Restart() {
    dispatcher.reset();
    outbox = Outbox::Open(store.get(), "producer", 0, &clock);
    REQUIRE(outbox.ok());
    StartDispatcher();
  }

  // Appends `events` in one transaction of their own.
  absl::Status Append(std::vector<v1::Event> events) {
    return store->Transact(store::Durability::kSynced, [&](store::Transaction& txn) {
      for (v1::Event& e : events) CRM_RETURN_IF_ERROR((*outbox)->Append(txn, e));
      return absl::OkStatus();
    });
  }
  absl::Status Append(v1::Event event) { return Append(std::vector<v1::Event>{std::move(event)}); }

  double Gauge(const std::string& name) {
    return testing::MetricValue(metrics.registry(), name, {{"destination", "test"}});
  }

  testing::TempDir dir;
  ManualClock clock;
  std::unique_ptr<store::Store> store;
  absl::StatusOr<std::unique_ptr<Outbox>> outbox;
  metrics::Metrics metrics;
  std::unique_ptr<rpc::ChannelSet> channels;
  DispatcherOptions options;
  std::unique_ptr<Dispatcher> dispatcher;  // destroyed first
};

// The consumer at `recorder` comes back: once it has the producer's one pending event, the delivery
// lag histogram's count and sum.
testing::HistogramTotals LagOnceDelivered(testing::EventRecorder& recorder, Producer& producer) {
  recorder.Start();
  REQUIRE(recorder.WaitForApplied(1, absl::Seconds(30)));
  REQUIRE(producer.dispatcher->WaitCaughtUp(absl::Seconds(30)));
  return testing::HistogramValue(producer.metrics.registry(), "crm_event_end_to_end_lag_seconds",
                                 {{"destination", "test"}});
}

TEST_CASE(
    "a lane counts its backlog every 2 s, and less often once a count takes over a twentieth of "
    "that, so counting a long backlog never takes more than 5% of a core") {
  CHECK(BacklogCountInterval(absl::Milliseconds(5)) == absl::Seconds(2));
  CHECK(BacklogCountInterval(absl::Milliseconds(100)) == absl::Seconds(2));
  CHECK(BacklogCountInterval(absl::Milliseconds(250)) == absl::Seconds(5));
  CHECK(BacklogCountInterval(absl::Seconds(1)) == absl::Seconds(20));
}

TEST_CASE(
    "an event committed behind an append still in flight goes out at once, the cursor waits for "
    "the earlier one, and a restart loses neither",
    "[events][dispatcher]") {
  testing::EventRecorder recorder;
  recorder.Start();
  Producer producer(recorder.address());
  store::Store* store = producer.store.get();
  auto& outbox = producer.outbox;
  auto append = [&](const std::string& customer) { return producer.Append(Erased(customer)); };
  auto stored_cursor = [&]() -> std::optional<Position> {
    auto bytes = store->Get(store->cf(Outbox::kMetaFamily),
                            store::Key().Str("cursor").Str("test").U64(0).Build());
    Position p;
    if (!bytes.ok() || !bytes->has_value() || !ParsePositionKey(**bytes, &p)) return std::nullopt;
    return p;
  };
  auto seq_of = [](const v1::Event& e) { return e.event_id().substr(e.event_id().rfind('.') + 1); };

  // "slow" takes a position and holds its transaction open; "fast" takes the next and commits;
  // a second event of "slow" waits for the first's lock.
  absl::Notification appended, release;
  Position slow;
  absl::Status held_status, again_status;
  std::thread held([&] {
    held_status =
        store->Transact(store::Durability::kSynced, [&](store::Transaction& txn) -> absl::Status {
          v1::Event e = Erased("slow");
          if (auto s = (*outbox)->Append(txn, e); !s.ok()) return s;
          slow = Position{(*outbox)->epoch(), (*outbox)->Horizon().seq + 1};
          appended.Notify();
          release.WaitForNotification();
          return absl::OkStatus();
        });
  });
  std::thread again;
  // A failed check below still lets the held transaction finish.
  struct ReleaseOnExit {
    absl::Notification& release;
    std::thread& held;
    std::thread& again;
    ~ReleaseOnExit() {
      if (!release.HasBeenNotified()) release.Notify();
      if (held.joinable()) held.join();
      if (again.joinable()) again.join();
    }
  } guard{release, held, again};
  appended.WaitForNotification();
  REQUIRE(append("fast").ok());
  again = std::thread([&] { again_status = append("slow"); });
  REQUIRE(recorder.WaitForApplied(1, absl::Seconds(30)));
  CHECK(recorder.applied()[0].customer_id() == "fast");
  // The dispatcher stores its cursor once the delivery's answer is back, a moment after the
  // consumer applied the event.
  REQUIRE(testing::WaitUntil([&] { return stored_cursor().has_value(); }, absl::Seconds(30)));
  const std::optional<Position> before_restart = stored_cursor();
  REQUIRE(before_restart.has_value());
  CHECK(*before_restart < slow);

  // Restarted before "slow" commits: the new dispatcher knows only the stored cursor.
  producer.StartDispatcher();
  release.Notify();
  held.join();
  again.join();
  REQUIRE(held_status.ok());
  REQUIRE(again_status.ok());
  REQUIRE(recorder.WaitForApplied(3, absl::Seconds(30)));
  REQUIRE(producer.dispatcher->WaitCaughtUp(absl::Seconds(30)));
  const std::vector<v1::Event> applied = recorder.applied();
  REQUIRE(applied.size() == 3);
  // "slow"'s two events in the order they were written.
  CHECK(applied[1].customer_id() == "slow");
  CHECK(applied[2].customer_id() == "slow");
  CHECK(std::stoi(seq_of(applied[1])) < std::stoi(seq_of(applied[2])));
  CHECK(testing::WaitUntil(
      [&] {
        const std::optional<Position> now = stored_cursor();
        return now.has_value() && slow < *now;
      },
      absl::Seconds(30)));
  // "fast" went out again from the stored cursor and was recognised.
  CHECK(testing::WaitUntil([&] { return recorder.duplicates() == 1; }, absl::Seconds(30)));
}

TEST_CASE(
    "an event's pending age and delivery lag count from when it was written and not its business "
    "time, through producer restarts, so an imported order from years ago does not look stalled "
    "and a consumer that stays down does",
    "[events][dispatcher]") {
  // The consumer is down: every delivery fails and is retried.
  testing::EventRecorder recorder;
  recorder.Start();
  recorder.Stop();
  DispatcherOptions options;
  options.max_backoff = absl::Milliseconds(200);
  Producer producer(recorder.address(), options);
  ManualClock& clock = producer.clock;
  auto gauge = [&](const std::string& name) { return producer.Gauge(name); };
  auto age = [&] { return gauge("crm_outbox_oldest_pending_age_seconds"); };
  // An order imported from a shop's history: its occur_time is years before it was written.
  v1::Event imported = Erased("imported");
  api::SetTimestamp(clock.Now() - absl::Hours(24 * 365 * 15), imported.mutable_occur_time());
  REQUIRE(producer.Append(imported).ok());
  // The backlog is counted every 2 seconds.
  REQUIRE(testing::WaitUntil([&] { return gauge("crm_outbox_backlog_events") == 1; },
                             absl::Seconds(30)));
  CHECK(age() < 60);
  clock.Advance(absl::Minutes(10));
  CHECK(testing::WaitUntil([&] { return age() >= 600; }, absl::Seconds(30)));
  CHECK(age() < 3600);

  // The producer restarts: the commit time is gone with the process, the event's write_time is
  // not, so the stall still shows its whole age and keeps growing.
  producer.Restart();
  clock.Advance(absl::Minutes(5));
  CHECK(testing::WaitUntil([&] { return age() >= 900; }, absl::Seconds(30)));
  CHECK(age() < 3600);

  // The same event as a producer older than write_time stored it: its age counts from the
  // restart that finds it (never from its occur_time).
  store::Store* store = producer.store.get();
  std::string key;
  v1::Event stored;
  REQUIRE(store
              ->Scan(store->cf(Outbox::kEventsFamily), "", "",
                     [&](absl::string_view k, absl::string_view v) {
                       key = std::string(k);
                       return !stored.ParseFromArray(v.data(), static_cast<int>(v.size()));
                     })
              .ok());
  REQUIRE(stored.has_write_time());
  stored.clear_write_time();
  rocksdb::WriteBatch rewrite;
  rewrite.Put(store->cf(Outbox::kEventsFamily), key, stored.SerializeAsString());
  REQUIRE(store->Write(&rewrite, store::Durability::kSynced).ok());
  producer.Restart();
  CHECK(testing::WaitUntil([&] { return age() < 60; }, absl::Seconds(30)));
  clock.Advance(absl::Minutes(10));
  CHECK(testing::WaitUntil([&] { return age() >= 600; }, absl::Seconds(30)));
  CHECK(age() < 3600);

  // The consumer comes back: one delivery, its lag the 10 minutes since the restart, not 15
  // years.
  const testing::HistogramTotals lag = LagOnceDelivered(recorder, producer);
  CHECK(lag.count == 1);
  CHECK(lag.sum >= 600);
  CHECK(lag.sum < 3600);
  CHECK(testing::WaitUntil([&] { return age() == 0; }, absl::Seconds(30)));
}

TEST_CASE(
    "one collection deletes every delivered event however many there are, and the next starts "
    "where it stopped",
    "[events][dispatcher]") {
  testing::EventRecorder recorder;
  recorder.Start();
  DispatcherOptions options;
  options.gc_interval = absl::Hours(1);  // this test collects
  Producer producer(recorder.address(), options);
  auto append = [&producer](int from, int to) {
    std::vector<v1::Event> events;
    for (int i = from; i < to; ++i) events.push_back(Erased(absl::StrCat("c", i)));
    REQUIRE(producer.Append(std::move(events)).ok());
  };
  auto kept = [&producer] {
    return testing::MetricValue(producer.metrics.registry(), "crm_outbox_events", {});
  };
  // More than one deletion batch (10,000 keys) holds: a collection used to stop after one, so a
  // producer writing over 2,000 events/s grew its outbox for ever.
  constexpr int kEvents = 25000;
  for (int from = 0; from < kEvents; from += 1000) append(from, from + 1000);
  REQUIRE(recorder.WaitForApplied(kEvents, absl::Seconds(60)));
  REQUIRE(producer.dispatcher->WaitCaughtUp(absl::Seconds(30)));
  CHECK(producer.dispatcher->CollectGarbage() == 0);
  CHECK(kept() == 0);
  // Written after the collection: it starts where the last one stopped, and still finds them.
  append(kEvents, kEvents + 10);
  CHECK(producer.dispatcher->CollectGarbage() <= 10);
  REQUIRE(recorder.WaitForApplied(kEvents + 10, absl::Seconds(30)));
  REQUIRE(producer.dispatcher->WaitCaughtUp(absl::Seconds(30)));
  CHECK(producer.dispatcher->CollectGarbage() == 0);
  CHECK(kept() == 0);
}

TEST_CASE("an event's delivery lag counts from its write across a producer restart",
          "[events][dispatcher]") {
  testing::EventRecorder recorder;
  recorder.Start();
  recorder.Stop();
  Producer producer(recorder.address());
  v1::Event imported = Erased("imported");
  api::SetTimestamp(producer.clock.Now() - absl::Hours(24 * 365 * 15),
                    imported.mutable_occur_time());
  REQUIRE(producer.Append(imported).ok());
  producer.clock.Advance(absl::Minutes(3));
  producer.Restart();
  producer.clock.Advance(absl::Minutes(2));
  // Written 5 minutes before its acknowledgement, 3 of them before the restart.
  const testing::HistogramTotals lag = LagOnceDelivered(recorder, producer);
  CHECK(lag.count == 1);
  CHECK(lag.sum >= 300);
  CHECK(lag.sum < 360);
}

}  // namespace
}  // namespace crm::events
