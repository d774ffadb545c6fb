#include "libs/events/outbox.h"

#include <optional>

#include "catch2/catch.hpp"
#include "libs/api/validate.h"
#include "libs/store/key.h"
#include "tests/support/outbox_events.h"
#include "tests/support/temp_dir.h"

namespace crm::events {
namespace {

std::unique_ptr<store::Store> OpenStore(const std::string& path) {
  store::StoreOptions o;
  o.path = path;
  auto s = store::Store::Open(o, Outbox::ColumnFamilies());
  REQUIRE(s.ok());
  return std::move(*s);
}

// A store in a temporary directory with `producer`'s outbox (shard 0) on it.
struct OutboxOnDisk {
  explicit OutboxOnDisk(const std::string& producer) : store(OpenStore(dir.path())) {
    auto opened = Outbox::Open(store.get(), producer, 0, &clock);
    REQUIRE(opened.ok());
    outbox = std::move(*opened);
  }
  testing::TempDir dir;
  std::unique_ptr<store::Store> store;
  ManualClock clock;
  std::unique_ptr<Outbox> outbox;
};

TEST_CASE("an event is written with its transaction, or not at all", "[events][outbox]") {
  OutboxOnDisk disk("producer");
  store::Store* store = disk.store.get();
  Outbox* outbox = disk.outbox.get();
  auto append = [&](const std::string& customer, bool fail) {
    return store->Transact(
        store::Durability::kBuffered, [&](store::Transaction& txn) -> absl::Status {
          v1::Event e;
          e.set_customer_id(customer);
          e.mutable_customer_erased();
          if (auto s = outbox->Append(txn, e); !s.ok()) return s;
          return fail ? absl::FailedPreconditionError("rolled back") : absl::OkStatus();
        });
  };
  REQUIRE(append("c1", false).ok());
  REQUIRE_FALSE(append("c2", true).ok());
  REQUIRE(append("c3", false).ok());
  const auto events = testing::OutboxEvents(*store);
  REQUIRE(events.size() == 2);
  CHECK(events[0].customer_id() == "c1");
  CHECK(events[1].customer_id() == "c3");
  CHECK(events[0].producer() == "producer");
  CHECK(events[0].event_id() != events[1].event_id());
  CHECK(events[0].has_occur_time());
  // Every append finished, so the horizon covers all positions handed out.
  CHECK(outbox->Horizon() == Position{outbox->epoch(), 3});
}

TEST_CASE("an event carries when it was written beside when it occurred", "[events][outbox]") {
  OutboxOnDisk disk("producer");
  const absl::Time now = disk.clock.Now();
  auto append = [&](std::optional<absl::Time> occurred) {
    return disk.store->Transact(store::Durability::kBuffered, [&](store::Transaction& txn) {
      v1::Event e;
      e.set_customer_id("c1");
      e.mutable_customer_erased();
      if (occurred) api::SetTimestamp(*occurred, e.mutable_occur_time());
      // A caller's own write_time is not kept: the outbox's clock says when it was written.
      api::SetTimestamp(now - absl::Hours(1), e.mutable_write_time());
      return disk.outbox->Append(txn, e);
    });
  };
  // An imported order from 2011, and an event that happened as it was written.
  REQUIRE(append(absl::FromUnixSeconds(1300000000)).ok());
  REQUIRE(append(std::nullopt).ok());
  const auto events = testing::OutboxEvents(*disk.store);
  REQUIRE(events.size() == 2);
  CHECK(api::FromTimestamp(events[0].occur_time()) == absl::FromUnixSeconds(1300000000));
  CHECK(api::FromTimestamp(events[0].write_time()) == now);
  CHECK(api::FromTimestamp(events[1].occur_time()) == now);
  CHECK(api::FromTimestamp(events[1].write_time()) == now);
}

TEST_CASE("the horizon stays below an append that has not finished", "[events][outbox]") {
  OutboxOnDisk disk("p");
  store::Store* store = disk.store.get();
  Outbox* outbox = disk.outbox.get();
  store::Transaction* held = nullptr;
  Position during;
  // Nested: while the first transaction is open, a second one commits a later position.
  REQUIRE(store
              ->Transact(store::Durability::kBuffered,
                         [&](store::Transaction& txn) -> absl::Status {
                           v1::Event e;
                           e.set_customer_id("slow");
                           REQUIRE(outbox->Append(txn, e).ok());
                           held = &txn;
                           REQUIRE(store
                                       ->Transact(store::Durability::kBuffered,
                                                  [&](store::Transaction& t2) -> absl::Status {
                                                    v1::Event e2;
                                                    e2.set_customer_id("fast");
                                                    return outbox->Append(t2, e2);
                                                  })
                                       .ok());
                           during = outbox->Horizon();
                           return absl::OkStatus();
                         })
              .ok());
  CHECK(during == Position{outbox->epoch(), 0});
  CHECK(outbox->Horizon() == Position{outbox->epoch(), 2});
  (void)held;
}

TEST_CASE("each start is a new epoch, so positions and ids never repeat", "[events][outbox]") {
  testing::TempDir dir;
  ManualClock clock;
  uint64_t first_epoch;
  {
    auto store = OpenStore(dir.path());
    auto outbox = Outbox::Open(store.get(), "p", 0, &clock);
    REQUIRE(outbox.ok());
    first_epoch = (*outbox)->epoch();
  }
  auto store = OpenStore(dir.path());
  auto outbox = Outbox::Open(store.get(), "p", 0, &clock);
  REQUIRE(outbox.ok());
  CHECK((*outbox)->epoch() == first_epoch + 1);
  CHECK(PositionKey({1, 5}) < PositionKey({2, 1}));
  Position p;
  REQUIRE(ParsePositionKey(PositionKey({7, 9}), &p));
  CHECK(p == Position{7, 9});
}

}  // namespace
}  // namespace crm::events
