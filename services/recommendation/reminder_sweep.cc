#include "services/recommendation/reminder_sweep.h"

#include <vector>

#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "libs/metrics/families.h"

namespace crm::recommendation {
namespace {

int64_t DayOf(absl::Time t) { return absl::ToUnixSeconds(t) / 86400; }

// Each kind of reminder and the model that finds it.
struct KindOfReminder {
  v1::ReminderKind kind;
  v1::Model model;
  const char* label;
};
constexpr KindOfReminder kKinds[] = {
    {v1::REMINDER_KIND_OCCASION, v1::MODEL_OCCASION, "occasion"},
    {v1::REMINDER_KIND_UPGRADE, v1::MODEL_UPGRADE, "upgrade"},
};

}  // namespace

ReminderSweep::ReminderSweep(RecommendationStore* store, Recommender* recommender,
                             events::Outbox* outbox, Clock* clock, prometheus::Registry& registry)
    : store_(store),
      recommender_(recommender),
      outbox_(outbox),
      clock_(clock),
      due_(metrics::CounterFamily(registry, "crm_reminders_due_total",
                                  "Scheduled reminders written for customer-profile (ReminderDue "
                                  "events), by kind (occasion, upgrade).")) {}

absl::StatusOr<ReminderSweep::Counts> ReminderSweep::Run() {
  absl::MutexLock lock(&run_mu_);
  const absl::Time started = absl::Now();
  // One time for the whole sweep: its day is the day every reminder is recorded under.
  const absl::Time now = clock_->Now();
  Counts counts;
  absl::Status first_failure;
  std::string after;
  std::vector<std::string> customers;
  absl::Status status;
  do {
    std::string next;
    status = store_->CustomersWithPurchases(after, kPageSize, &customers, &next);
    after = std::move(next);
    for (size_t i = 0; status.ok() && i < customers.size() && !abandoned_; ++i) {
      // One customer's failure (a lock held too long by a busy delivery) leaves them to the next
      // sweep, not the others.
      if (absl::Status s = SweepCustomer(customers[i], now, counts); !s.ok()) {
        ++counts.failed;
        if (first_failure.ok()) first_failure = std::move(s);
      }
    }
  } while (status.ok() && !after.empty() && !abandoned_);
  const int64_t duration_ms = absl::ToInt64Milliseconds(absl::Now() - started);
  if (!status.ok()) {
    log::Warning("reminder sweep failed", {{"customers", counts.customers},
                                           {"occasion", counts.occasion},
                                           {"upgrade", counts.upgrade},
                                           {"failed", counts.failed},
                                           {"duration_ms", duration_ms},
                                           {"error", status.ToString()}});
    return status;
  }
  if (counts.failed > 0) {
    log::Warning("reminder sweep done; some customers left to the next sweep",
                 {{"customers", counts.customers},
                  {"occasion", counts.occasion},
                  {"upgrade", counts.upgrade},
                  {"failed", counts.failed},
                  {"duration_ms", duration_ms},
                  {"first_error", first_failure.ToString()}});
    return counts;
  }
  log::Info(abandoned_ ? "reminder sweep stopped at shutdown" : "reminder sweep done",
            {{"customers", counts.customers},
             {"occasion", counts.occasion},
             {"upgrade", counts.upgrade},
             {"duration_ms", duration_ms}});
  return counts;
}

absl::Status ReminderSweep::SweepCustomer(const std::string& customer_id, absl::Time now,
                                          Counts& counts) {
  ++counts.customers;
  const int64_t today = DayOf(now);
  // The kinds not reminded today: the sweep runs hourly and writes once a day, so most passes stop
  // here, before reading the customer (NoteReminder checks again, locked).
  std::vector<const KindOfReminder*> due;
  for (const KindOfReminder& k : kKinds) {
    CRM_ASSIGN_OR_RETURN(const int64_t last, store_->LastReminderDay(customer_id, k.kind));
    if (last < today) due.push_back(&k);
  }
  if (due.empty()) return absl::OkStatus();
  CRM_ASSIGN_OR_RETURN(const CustomerView view, store_->Customer(customer_id));
  if (!view.known) return absl::OkStatus();  // erased since the page was read
  for (const KindOfReminder* kind : due) {
    const KindOfReminder& k = *kind;
    CRM_ASSIGN_OR_RETURN(const std::optional<v1::Recommendation> best,
                         recommender_->Best(customer_id, view, k.model, now));
    if (!best.has_value()) continue;
    bool written = false;
    CRM_RETURN_IF_ERROR(store_->raw().Transact(
        store::Durability::kBuffered, [&](store::Transaction& txn) -> absl::Status {
          written = false;
          CRM_ASSIGN_OR_RETURN(const bool noted, store_->NoteReminder(txn, customer_id, k.kind,
                                                                      today, best->item().sku()));
          if (!noted) return absl::OkStatus();
          v1::Event event;
          event.set_customer_id(customer_id);
          api::SetTimestamp(now, event.mutable_occur_time());
          v1::ReminderDue* due = event.mutable_reminder_due();
          due->set_kind(k.kind);
          due->set_sku(best->item().sku());
          due->set_title(best->item().name());
          due->set_category(best->item().category());
          due->set_reason(best->reason());
          if (k.kind == v1::REMINDER_KIND_UPGRADE)
            due->set_replaces_sku(best->item().successor_of());
          CRM_RETURN_IF_ERROR(outbox_->Append(txn, event));
          written = true;
          return absl::OkStatus();
        }));
    if (!written) continue;
    (k.kind == v1::REMINDER_KIND_OCCASION ? counts.occasion : counts.upgrade)++;
    due_.Add({{"kind", k.label}}).Increment();
  }
  return absl::OkStatus();
}

}  // namespace crm::recommendation
