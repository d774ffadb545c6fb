#include "services/recommendation/recommendation_component.h"

#include "absl/flags/flag.h"
#include "libs/base/status_macros.h"
#include "libs/metrics/families.h"

ABSL_FLAG(int, bestseller_cache_s, 5,
          "how long best-seller rankings are reused before the sales window is summed again, off "
          "the calls, which get the previous ranking meanwhile (0: every call sums it)");

ABSL_FLAG(int, reminder_sweep_interval_s, 3600,
          "how often occasion reminders and upgrade notices due are written as ReminderDue events "
          "(at most one of each kind per customer per day); 0: never");

ABSL_FLAG(bool, customers_alike, true,
          "blend into home, e-mail and push what the customers most alike bought lately (a home "
          "call takes up to about twice the CPU; the index it reads is kept either way)");

ABSL_FLAG(bool, items_named_alike, true,
          "blend into home, e-mail and push the items named like what the customer bought, and "
          "into a product page those named like its item; the index of catalog names it reads is "
          "kept in memory (about 210 bytes an item)");

ABSL_FLAG(bool, neighbour_rebuilds, true,
          "rebuild every item's neighbour list from the pair counts once a tenth of the item pairs "
          "changed since the last rebuild (an import), when learning has been quiet for 2 s, at "
          "most 5 minutes on, and fewer changes once learning has been idle for a minute; a "
          "rebuild reads every pair (about 1 s a million) and learning waits meanwhile");

namespace crm::recommendation {

namespace {

absl::Status Wire(RecommendationComponent& c, const rpc::ServiceContext& context) {
  CRM_RETURN_IF_ERROR(c.ProduceEvents());
  auto* store = c.Make<RecommendationStore>(context.store, c.outbox());
  // Before learning and serving begin: a store from before the buyers family gets it now, once.
  CRM_RETURN_IF_ERROR(store->IndexBuyersOnce());
  if (absl::GetFlag(FLAGS_items_named_alike)) {
    CRM_RETURN_IF_ERROR(store->LoadNameIndex());
    // The index grows with the catalog, outside the memory budget: exported so the memory alert
    // (CrmMemoryOverBudget) and the pod's limit can allow for it.
    prometheus::Gauge& names =
        metrics::GaugeFamily(context.metrics->registry(), "crm_memory_outside_budget_bytes",
                             "Memory held for data outside the budget "
                             "(--block_cache_mb), by part; the memory alert "
                             "adds it to the budget.")
            .Add({{"part", "catalog_names"}});
    c.RunEvery(
        absl::Seconds(15),
        [store, &names] { names.Set(static_cast<double>(store->names().bytes())); },
        rpc::PeriodicTask::FirstRun::kNow);
  }
  auto* bestsellers =
      c.Make<BestsellerCache>(store, absl::Seconds(absl::GetFlag(FLAGS_bestseller_cache_s)));
  auto* recommender =
      c.Make<Recommender>(store, bestsellers, context.clock, absl::GetFlag(FLAGS_customers_alike));
  CRM_RETURN_IF_ERROR(recommender->LoadSuccessors());
  auto* reminders = c.Make<ReminderSweep>(store, recommender, c.outbox(), context.clock,
                                          context.metrics->registry());
  RecommendationService* service = c.Serve(std::make_unique<RecommendationService>(
      store, recommender, reminders, context.clock, c.writes("reco-writes", 16), context.backends,
      context.metrics->registry()));
  events::EventConsumer& consumer = c.ConsumeEvents();
  // Learning a basket is CPU-bound (hundreds of pair counts): a delivered batch is learned on two
  // threads, each customer's events on one.
  consumer.ApplyOnThreads(2);
  // What a batch of events taught is in the neighbour lists before the batch is acknowledged.
  consumer.OnBatchApplied([service] { service->RefreshNeighbours(); });
  // Also every second, for notes left by a crash between a batch and its refresh.
  c.RunEvery(
      absl::Seconds(1), [service] { service->RefreshNeighbours(); },
      rpc::PeriodicTask::FirstRun::kNow);
  if (absl::GetFlag(FLAGS_neighbour_rebuilds)) {
    // Every list rebuilt from the counts once enough pairs changed (an import, weeks of learning):
    // the task runs only when a refresh asks for it (RunAt), so no run on a timer of its own can
    // come early and drop the one asked for.
    service->ScheduleRebuildsOn(
        &c.RunEvery(absl::InfiniteDuration(), [service] { service->RebuildNeighboursWhenDue(); }));
  }
  if (const int every = absl::GetFlag(FLAGS_reminder_sweep_interval_s); every > 0) {
    // Its own thread: serving and learning go on while it pages through the customers.
    c.RunEvery(absl::Seconds(every), [reminders] { (void)reminders->Run(); });
    // A sweep over many customers must not hold up shutdown: it ends after the current customer.
    c.OnServerShutdown([reminders] { reminders->Abandon(); });
  }
  return absl::OkStatus();
}

}  // namespace

rpc::ServiceSpec RecommendationSpec() {
  rpc::ServiceSpec spec = RecommendationComponent::SpecOf(
      "recommendation", RecommendationStore::ColumnFamilies(), &Wire);
  spec.merge_operators = RecommendationStore::MergeOperators();
  return spec;
}

}  // namespace crm::recommendation
