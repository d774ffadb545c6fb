// The producing half of the transactional outbox: a service appends events inside the same RocksDB
// transaction as the state change they describe, so both are written or neither is. The dispatcher
// (dispatcher.h) later delivers them to consumers.
//
// Positions are (epoch, sequence): the epoch grows by one at every start, so positions and event
// ids stay unique and ordered across restarts without a shared counter row that every write would
// contend on. Append locks a per-customer row first, so one customer's events commit in position
// order; Horizon() tells the dispatcher the position below which no append is still in flight, so
// it never passes an event that commits late. Thread-safe; non-copyable.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "crm/v1/events.pb.h"
#include "libs/clock/clock.h"
#include "libs/store/store.h"

namespace crm::events {

struct Position {
  uint64_t epoch = 0;
  uint64_t seq = 0;
  friend bool operator<(const Position& a, const Position& b) {
    return a.epoch != b.epoch ? a.epoch < b.epoch : a.seq < b.seq;
  }
  friend bool operator==(const Position& a, const Position& b) {
    return a.epoch == b.epoch && a.seq == b.seq;
  }
  friend bool operator<=(const Position& a, const Position& b) { return !(b < a); }
};

// The outbox key of a position, and back.
std::string PositionKey(const Position& p);
bool ParsePositionKey(absl::string_view key, Position* p);

class Outbox {
 public:
  // Column families the outbox keeps in its service's store.
  static constexpr const char* kEventsFamily = "outbox";
  static constexpr const char* kMetaFamily = "outbox_meta";
  static constexpr const char* kDeadLettersFamily = "dead_letters";
  static std::vector<std::string> ColumnFamilies() {
    return {kEventsFamily, kMetaFamily, kDeadLettersFamily};
  }

  // Starts a new epoch (a synced write) and returns the outbox of `producer` (e.g.
  // "order-tracking"); `shard` is this process's shard index, part of every event id.
  static absl::StatusOr<std::unique_ptr<Outbox>> Open(store::Store* store, std::string producer,
                                                      int shard, Clock* clock);
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Adds `event` to `txn`: fills event_id, producer, write_time and (when unset) occur_time and
  // traceparent (the trace current on this thread, if any). The event needs a customer_id. Must be
  // the transaction that makes the change the event reports.
  absl::Status Append(store::Transaction& txn, v1::Event& event);

  // Removes the customer's events still in the outbox (erasure: what is about to be erased
  // everywhere need not travel first). Scans the outbox, which holds the events some consumer's
  // cursor has not passed yet (a few of them already delivered ahead of it).
  absl::Status DropPendingEventsOf(store::Transaction& txn, absl::string_view customer_id);

  // Every append at or below this position has committed or rolled back.
  Position Horizon() const;
  // When the append at `p` committed, as this process saw it: known for the recent appends of the
  // current epoch (the last kCommitTimesKept), none for older ones or those from before a restart
  // (their write_time is the next best). The delivery lag counts from here: an event's own
  // occur_time is business time (a carrier's scan, an imported order's date) and says nothing about
  // how long delivery took.
  std::optional<absl::Time> CommittedAt(const Position& p) const;
  static constexpr size_t kCommitTimesKept = 1 << 14;
  // Called after each commit that appended events (the dispatcher wakes up). Set before writes
  // start.
  void SetCommitListener(std::function<void()> listener) { listener_ = std::move(listener); }
  // Positions at or above this one belong to the current epoch.
  uint64_t epoch() const { return epoch_; }
  const std::string& producer() const { return producer_; }
  store::Store* store() const { return store_; }

 private:
  Outbox(store::Store* store, std::string producer, int shard, Clock* clock, uint64_t epoch);

  store::Store* const store_;
  const std::string producer_;
  const int shard_;
  Clock* const clock_;
  const uint64_t epoch_;
  rocksdb::ColumnFamilyHandle* const events_cf_;
  rocksdb::ColumnFamilyHandle* const meta_cf_;

  std::function<void()> listener_;
  mutable absl::Mutex mu_;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  std::set<uint64_t> in_flight_ ABSL_GUARDED_BY(mu_);
  // A ring indexed by seq % kCommitTimesKept: (seq, commit time) of the recent commits.
  std::vector<std::pair<uint64_t, absl::Time>> commit_times_ ABSL_GUARDED_BY(mu_);
};

}  // namespace crm::events
