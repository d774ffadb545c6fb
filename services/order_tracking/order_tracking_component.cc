#include "services/order_tracking/order_tracking_component.h"

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "libs/log/log.h"
#include "libs/text/file.h"

ABSL_FLAG(std::string, return_policy_file, "",
          "return windows per category, lines \"<category> <days>\" and \"default <days>\"; empty: "
          "built-in policy");

namespace crm::order_tracking {

rpc::ServiceSpec OrderTrackingComponent::Spec() {
  return rpc::ServiceSpec::Of<OrderTrackingComponent>("order-tracking",
                                                      OrderTrackingStore::ColumnFamilies());
}

absl::StatusOr<std::unique_ptr<OrderTrackingComponent>> OrderTrackingComponent::Create(
    const rpc::ServiceContext& context) {
  auto c = std::unique_ptr<OrderTrackingComponent>(new OrderTrackingComponent());
  ReturnRules rules = DefaultReturnRules();
  if (const std::string path = absl::GetFlag(FLAGS_return_policy_file); !path.empty()) {
    auto contents = text::ReadFile(path);
    if (!contents.ok())
      return absl::NotFoundError(
          absl::StrCat("--return_policy_file: ", contents.status().message()));
    auto parsed = ParseReturnRules(*contents);
    if (!parsed.ok())
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", parsed.status().message()));
    rules = *std::move(parsed);
  }
  // Loyalty accrues growth and points from delivered orders and takes them back on refunds;
  // complaint-ticket opens tickets for low reviews and failed or late deliveries, and confirms
  // refund compensations; customer-profile keeps segments and churn risk from the orders' lives.
  auto events = events::EventProducer::Create(
      context, {"loyalty", "complaint-ticket", "recommendation", "customer-profile"});
  if (!events.ok()) return events.status();
  c->events_ = std::move(*events);
  c->store_ = std::make_unique<OrderTrackingStore>(context.store, &c->events_->outbox());
  c->writes_ = std::make_unique<rpc::Executor>("order-writes", 32);
  c->service_ = std::make_unique<OrderTrackingService>(
      c->store_.get(), context.clock, c->writes_.get(), context.backends, std::move(rules),
      context.metrics->registry());
  OrderTrackingStore* store = c->store_.get();
  c->consumer_ = std::make_unique<events::EventConsumer>(
      context.store,
      [store](store::Transaction& txn, const v1::Event& e) -> absl::Status {
        if (e.has_customer_erased()) return store->AnonymiseCustomer(txn, e.customer_id());
        return absl::OkStatus();
      },
      c->writes_.get(), context.metrics->registry());
  return c;
}

void OrderTrackingComponent::Register(rpc::Server& server) {
  server.AddService(service_.get(), v1::OrderTrackingService::service_full_name());
  server.AddService(consumer_.get(), v1::EventSink::service_full_name());
  events_->Register(server);
  OrderWatchHub* hub = &service_->watch_hub();
  server.OnShutdown([hub] { hub->Shutdown(); });
}

}  // namespace crm::order_tracking
