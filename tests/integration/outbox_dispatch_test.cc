// The dispatcher sends an event as soon as it is committed, even while an earlier append is still
// in flight, yet its stored cursor never passes that append: a restart then delivers the late event
// and again the early one (the consumer recognises it), so nothing is lost. Real RocksDB, a real
// Dispatcher and a real EventSink on loopback.
#include <thread>

#include "absl/synchronization/notification.h"
#include "catch2/catch.hpp"
#include "libs/events/dispatcher.h"
#include "libs/events/outbox.h"
#include "libs/metrics/metrics.h"
#include "libs/rpc/client.h"
#include "libs/store/key.h"
#include "tests/support/event_recorder.h"
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

TEST_CASE(
    "an event committed behind an append still in flight goes out at once, the cursor waits for "
    "the earlier one, and a restart loses neither",
    "[events][dispatcher]") {
  testing::TempDir dir;
  store::StoreOptions o;
  o.path = dir.path();
  auto opened = store::Store::Open(o, Outbox::ColumnFamilies());
  REQUIRE(opened.ok());
  store::Store* store = opened->get();
  ManualClock clock;
  auto outbox = Outbox::Open(store, "producer", 0, &clock);
  REQUIRE(outbox.ok());
  testing::EventRecorder recorder;
  recorder.Start();
  metrics::Metrics metrics;
  auto channels = rpc::ChannelSet::Create("crm.v1.EventSink", recorder.address(), &metrics);
  REQUIRE(channels.ok());
  auto dispatcher = std::make_unique<Dispatcher>(
      outbox->get(), std::vector<Sink>{{"test", channels->get()}}, &metrics, &clock);
  dispatcher->Start();
  auto append = [&](const std::string& customer) {
    return store->Transact(store::Durability::kSynced, [&](store::Transaction& txn) {
      v1::Event e = Erased(customer);
      return (*outbox)->Append(txn, e);
    });
  };
  auto stored_cursor = [&] {
    auto bytes = store->Get(store->cf(Outbox::kMetaFamily),
                            store::Key().Str("cursor").Str("test").U64(0).Build());
    Position p;
    if (bytes.ok() && bytes->has_value()) REQUIRE(ParsePositionKey(**bytes, &p));
    return p;
  };

  // "slow" takes a position and holds its transaction open; "fast" takes the next and commits.
  absl::Notification appended, release;
  Position slow;
  std::thread held([&] {
    REQUIRE(store
                ->Transact(store::Durability::kSynced,
                           [&](store::Transaction& txn) -> absl::Status {
                             v1::Event e = Erased("slow");
                             if (auto s = (*outbox)->Append(txn, e); !s.ok()) return s;
                             slow = Position{(*outbox)->epoch(), (*outbox)->Horizon().seq + 1};
                             appended.Notify();
                             release.WaitForNotification();
                             return absl::OkStatus();
                           })
                .ok());
  });
  // A failed check below still lets the held transaction finish.
  struct ReleaseOnExit {
    absl::Notification& release;
    std::thread& held;
    ~ReleaseOnExit() {
      if (!release.HasBeenNotified()) release.Notify();
      if (held.joinable()) held.join();
    }
  } guard{release, held};
  appended.WaitForNotification();
  REQUIRE(append("fast").ok());
  REQUIRE(recorder.WaitForApplied(1, absl::Seconds(30)));
  CHECK(recorder.applied()[0].customer_id() == "fast");
  CHECK(stored_cursor() < slow);

  // Restarted before "slow" commits: the new dispatcher knows only the stored cursor.
  dispatcher.reset();
  dispatcher = std::make_unique<Dispatcher>(
      outbox->get(), std::vector<Sink>{{"test", channels->get()}}, &metrics, &clock);
  dispatcher->Start();
  release.Notify();
  held.join();
  REQUIRE(recorder.WaitForApplied(2, absl::Seconds(30)));
  REQUIRE(dispatcher->WaitCaughtUp(absl::Seconds(30)));
  const std::vector<v1::Event> applied = recorder.applied();
  REQUIRE(applied.size() == 2);
  CHECK(applied[1].customer_id() == "slow");
  // Written once the lane is idle.
  CHECK(testing::WaitUntil([&] { return slow <= stored_cursor(); }, absl::Seconds(30)));
  // "fast" went out again from the stored cursor and was recognised.
  CHECK(testing::WaitUntil([&] { return recorder.duplicates() == 1; }, absl::Seconds(30)));
}

}  // namespace
}  // namespace crm::events
