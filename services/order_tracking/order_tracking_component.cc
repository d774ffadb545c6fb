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

}  // namespace

rpc::ServiceSpec OrderTrackingComponent::Spec() {
  return rpc::ServiceSpec::Of<OrderTrackingComponent>("order-tracking",
                                                      OrderTrackingStore::ColumnFamilies());
}

absl::StatusOr<std::unique_ptr<OrderTrackingComponent>> OrderTrackingComponent::Create(
    const rpc::ServiceContext& context) {
  auto c = std::unique_ptr<OrderTrackingComponent>(new OrderTrackingComponent(context));
  CRM_ASSIGN_OR_RETURN(ReturnRules rules, LoadReturnRules());
  CRM_RETURN_IF_ERROR(c->ProduceEvents());
  c->store_ = std::make_unique<OrderTrackingStore>(context.store, c->outbox());
  CRM_RETURN_IF_ERROR(c->store_->CountPurchaseTotalsOnce());
  c->service_ = std::make_unique<OrderTrackingService>(
      c->store_.get(), context.clock, c->writes("order-writes", 32), context.backends,
      std::move(rules), context.metrics->registry());
  c->Serve(c->service_.get());
  // Order-tracking only forgets: a customer's erasure anonymises their orders.
  OrderTrackingStore* store = c->store_.get();
  c->ConsumeEvents({events::Subscription::EventType::kCustomerErased},
                   [store](store::Transaction& txn, const v1::Event& e) -> absl::Status {
                     if (e.has_customer_erased())
                       return store->AnonymiseCustomer(txn, e.customer_id());
                     return absl::OkStatus();
                   });
  return c;
}

void OrderTrackingComponent::Register(rpc::Server& server) {
  DataServiceComponent::Register(server);
  OrderWatchHub* hub = &service_->watch_hub();
  server.OnShutdown([hub] { hub->Shutdown(); });
}

}  // namespace crm::order_tracking
