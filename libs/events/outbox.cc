#include "libs/events/outbox.h"

#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/store/key.h"
#include "libs/trace/trace.h"

namespace crm::events {
namespace {

constexpr absl::string_view kEpochKey = "epoch";

std::string CustomerLockKey(absl::string_view customer_id) {
  return store::Key().Str("customer").Str(customer_id).Build();
}

}  // namespace

std::string PositionKey(const Position& p) { return store::Key().U64(p.epoch).U64(p.seq).Build(); }

bool ParsePositionKey(absl::string_view key, Position* p) {
  store::KeyReader r(key);
  auto epoch = r.U64();
  auto seq = r.U64();
  if (!epoch || !seq || !r.done()) return false;
  *p = Position{*epoch, *seq};
  return true;
}

absl::StatusOr<std::unique_ptr<Outbox>> Outbox::Open(store::Store* store, std::string producer,
                                                     int shard, Clock* clock) {
  auto* meta = store->cf(kMetaFamily);
  uint64_t epoch = 1;
  absl::Status s =
      store->Transact(store::Durability::kSynced, [&](store::Transaction& txn) -> absl::Status {
        auto stored = txn.GetForUpdate(meta, kEpochKey);
        if (!stored.ok()) return stored.status();
        epoch = 1;
        if (stored->has_value()) {
          store::KeyReader r(**stored);
          auto prev = r.U64();
          if (!prev) return absl::DataLossError("outbox epoch record is malformed");
          epoch = *prev + 1;
        }
        return txn.Put(meta, kEpochKey, store::Key().U64(epoch).bytes());
      });
  if (!s.ok()) return s;
  return std::unique_ptr<Outbox>(new Outbox(store, std::move(producer), shard, clock, epoch));
}

Outbox::Outbox(store::Store* store, std::string producer, int shard, Clock* clock, uint64_t epoch)
    : store_(store),
      producer_(std::move(producer)),
      shard_(shard),
      clock_(clock),
      epoch_(epoch),
      events_cf_(store->cf(kEventsFamily)),
      meta_cf_(store->cf(kMetaFamily)),
      commit_times_(kCommitTimesKept) {}

absl::Status Outbox::Append(store::Transaction& txn, v1::Event& event) {
  if (event.customer_id().empty()) return absl::InternalError("outbox: event without customer_id");
  // Lock the customer's outbox row first: this customer's events then get positions in commit
  // order.
  auto locked = txn.GetForUpdate(meta_cf_, CustomerLockKey(event.customer_id()));
  if (!locked.ok()) return locked.status();

  uint64_t seq;
  {
    absl::MutexLock lock(&mu_);
    seq = next_seq_++;
    in_flight_.insert(seq);
  }
  txn.OnFinish([this, seq](bool committed) {
    {
      const absl::Time now = clock_->Now();
      absl::MutexLock lock(&mu_);
      in_flight_.erase(seq);
      if (committed) commit_times_[seq % kCommitTimesKept] = {seq, now};
    }
    if (committed && listener_) listener_();
  });
  event.set_event_id(absl::StrCat(producer_, "/", shard_, "/", epoch_, ".", seq));
  event.set_producer(producer_);
  const absl::Time now = clock_->Now();
  api::SetTimestamp(now, event.mutable_write_time());
  if (!event.has_occur_time()) api::SetTimestamp(now, event.mutable_occur_time());
  if (event.traceparent().empty()) {
    if (const std::optional<trace::TraceContext> current = trace::Current()) {
      event.set_traceparent(trace::Format(*current));
    }
  }
  return txn.PutProto(events_cf_, PositionKey(Position{epoch_, seq}), event);
}

absl::Status Outbox::DropPendingEventsOf(store::Transaction& txn, absl::string_view customer_id) {
  std::vector<std::string> keys;
  absl::Status s = txn.Scan(events_cf_, "", "", [&](absl::string_view k, absl::string_view v) {
    v1::Event e;
    if (e.ParseFromArray(v.data(), static_cast<int>(v.size())) && e.customer_id() == customer_id)
      keys.emplace_back(k);
    return true;
  });
  if (!s.ok()) return s;
  for (const auto& k : keys) {
    CRM_RETURN_IF_ERROR(txn.Delete(events_cf_, k));
  }
  return absl::OkStatus();
}

std::optional<absl::Time> Outbox::CommittedAt(const Position& p) const {
  if (p.epoch != epoch_) return std::nullopt;
  absl::MutexLock lock(&mu_);
  const auto& [seq, time] = commit_times_[p.seq % kCommitTimesKept];
  if (seq != p.seq) return std::nullopt;
  return time;
}

Position Outbox::Horizon() const {
  absl::MutexLock lock(&mu_);
  const uint64_t below = in_flight_.empty() ? next_seq_ : *in_flight_.begin();
  return Position{epoch_, below - 1};
}

}  // namespace crm::events
