#include "services/order_tracking/order_tracking_component.h"

#include "absl/flags/flag.h"
#include "libs/base/status_macros.h"
#include "libs/text/file.h"

ABSL_FLAG(std::string, return_policy_file, "",
          "return windows per category, lines \"<category> <days>\" and \"default <days>\"; empty: "
          "built-in policy");

namespace crm::order_tracking {
namespace {

// --return_policy_file when given, else the built-in policy.
absl::StatusOr<ReturnRules> LoadReturnRules() {
  const std::string path = absl::GetFlag(FLAGS_return_policy_file);
  if (path.empty()) return DefaultReturnRules();
  return text::ParseFile(path, "--return_policy_file", ParseReturnRules);
}

absl::Status Wire(OrderTrackingComponent& c, const rpc::ServiceContext& context) {
  CRM_ASSIGN_OR_RETURN(ReturnRules rules, LoadReturnRules());
  CRM_RETURN_IF_ERROR(c.ProduceEvents());
  auto* store = c.Make<OrderTrackingStore>(context.store, c.outbox());
  CRM_RETURN_IF_ERROR(store->CountPurchaseTotalsOnce());
  OrderTrackingService* service = c.Serve(std::make_unique<OrderTrackingService>(
      store, context.clock, c.writes("order-writes", 32), context.backends, std::move(rules),
      context.metrics->registry()));
  // Order-tracking only forgets: a customer's erasure anonymises their orders.
  c.ConsumeEvents({events::Subscription::EventType::kCustomerErased},
                  [store](store::Transaction& txn, const v1::Event& e) -> absl::Status {
                    if (e.has_customer_erased())
                      return store->AnonymiseCustomer(txn, e.customer_id());
                    return absl::OkStatus();
                  });
  OrderWatchHub* hub = &service->watch_hub();
  c.OnServerShutdown([hub] { hub->Shutdown(); });
  return absl::OkStatus();
}

}  // namespace

rpc::ServiceSpec OrderTrackingSpec() {
  return OrderTrackingComponent::SpecOf("order-tracking", OrderTrackingStore::ColumnFamilies(),
                                        &Wire);
}

}  // namespace crm::order_tracking
