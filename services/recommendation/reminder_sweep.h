// Occasion reminders and upgrade notices as scheduled triggers: every --reminder_sweep_interval_s
// the sweep visits every customer this shard knows with a delivered order and, for the occasion and
// the upgrade model, writes the best item the model has for them now (Recommender::Best, exactly
// what Recommend would show) as a ReminderDue event into the outbox; customer-profile decides
// whether and when to tell the customer. At most one reminder of each kind per customer per UTC
// day (a reminder is marketing, and the contact cap is small): the store records the day in the
// transaction that appends the event, so a repeated sweep or a restart writes nothing new that day,
// and an erased customer (no row left to lock) gets none. Customers are read a page at a time and
// written one short transaction each, so the sweep holds no lock for long and serving goes on
// beside it on its own threads. Thread-safe; one sweep runs at a time.
#pragma once

#include <atomic>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "libs/clock/clock.h"
#include "libs/events/outbox.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/registry.h"
#include "services/recommendation/recommendation_store.h"
#include "services/recommendation/recommender.h"

namespace crm::recommendation {

class ReminderSweep {
 public:
  // What one sweep did.
  struct Counts {
    int customers = 0;  // with a delivered order, visited
    int occasion = 0;   // reminders written, by kind
    int upgrade = 0;
    int failed = 0;  // customers whose reminders could not be written (left to the next sweep)
  };
  // Customers read per page (one scan each).
  static constexpr int kPageSize = 256;

  ReminderSweep(RecommendationStore* store, Recommender* recommender, events::Outbox* outbox,
                Clock* clock, prometheus::Registry& registry);

  // Sweeps every customer as of the clock's now (the events' occur_time), logs the counts and how
  // long it took. Stops early, with what it wrote so far, once Abandon() was called. An error only
  // when the customers could not be read.
  absl::StatusOr<Counts> Run();
  // Ends a running sweep after its current customer (the server is shutting down).
  void Abandon() { abandoned_ = true; }

 private:
  // One customer's reminders: for each kind, the model's best item unless one of that kind was
  // already written today, each in one transaction with the store's record of it.
  absl::Status SweepCustomer(const std::string& customer_id, absl::Time now, Counts& counts);

  RecommendationStore* const store_;
  Recommender* const recommender_;
  events::Outbox* const outbox_;
  Clock* const clock_;
  prometheus::Family<prometheus::Counter>& due_;  // {kind}
  std::atomic<bool> abandoned_{false};
  absl::Mutex run_mu_;
};

}  // namespace crm::recommendation
