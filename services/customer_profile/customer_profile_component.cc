#include "services/customer_profile/customer_profile_component.h"

#include "absl/flags/flag.h"
#include "absl/functional/bind_front.h"
#include "absl/strings/str_cat.h"
#include "libs/log/log.h"

ABSL_FLAG(std::string, segment_rules_file, "",
          "Segment rules (text-format crm.internal.SegmentRules): buyer levels, at-risk threshold, "
          "retention window. "
          "Empty: built-in defaults.");
ABSL_FLAG(std::string, churn_model_file, "",
          "Churn model (text-format crm.internal.ChurnModel), e.g. refitted on this shop's history "
          "by crm-churn-fit. "
          "Empty: the model built in (services/customer_profile/churn-model.textproto).");
ABSL_FLAG(int, insights_refresh_s, 300,
          "Seconds between recomputations of segment cut points, at-risk list and KPIs.");

namespace crm::customer_profile {

rpc::ServiceSpec CustomerProfileComponent::Spec() {
  return rpc::ServiceSpec::Of<CustomerProfileComponent>("customer-profile",
                                                        CustomerProfileStore::ColumnFamilies());
}

absl::StatusOr<std::unique_ptr<CustomerProfileComponent>> CustomerProfileComponent::Create(
    const rpc::ServiceContext& context) {
  auto component = std::unique_ptr<CustomerProfileComponent>(new CustomerProfileComponent());
  // Erasure must reach every service that holds customer data; browsing feeds recommendation.
  auto events = events::EventProducer::Create(
      context, {"order-tracking", "loyalty", "complaint-ticket", "recommendation"});
  if (!events.ok()) return events.status();
  component->events_ = std::move(*events);
  component->store_ =
      std::make_unique<CustomerProfileStore>(context.store, &component->events_->outbox());
  component->writes_ = std::make_unique<rpc::Executor>("profile-writes", 32);
  internal::SegmentRules rules = DefaultSegmentRules();
  if (const std::string file = absl::GetFlag(FLAGS_segment_rules_file); !file.empty()) {
    auto read = ReadSegmentRulesFile(file);
    if (!read.ok()) return read.status();
    rules = *std::move(read);
  }
  internal::ChurnModel churn_model = BuiltInChurnModel();
  if (const std::string file = absl::GetFlag(FLAGS_churn_model_file); !file.empty()) {
    auto read = ReadChurnModelFile(file);
    if (!read.ok()) return read.status();
    churn_model = *std::move(read);
  }
  component->insights_ =
      std::make_unique<InsightsRefresher>(component->store_.get(), context.clock, std::move(rules),
                                          std::move(churn_model), context.metrics->registry());
  component->refresh_interval_ =
      absl::Seconds(std::max(1, absl::GetFlag(FLAGS_insights_refresh_s)));
  component->service_ = std::make_unique<CustomerProfileService>(
      component->store_.get(), component->insights_.get(), context.clock, component->writes_.get(),
      context.metrics->registry());
  component->consumer_ = std::make_unique<events::EventConsumer>(
      context.store,
      absl::bind_front(&CustomerProfileService::HandleEvent, component->service_.get()),
      component->writes_.get(), context.metrics->registry());
  return component;
}

void CustomerProfileComponent::Start() {
  events_->Start();
  insights_->Start(refresh_interval_);
}

void CustomerProfileComponent::Stop() {
  insights_->Stop();
  events_->Stop();
}

void CustomerProfileComponent::Register(rpc::Server& server) {
  server.AddService(service_.get(), v1::CustomerProfileService::service_full_name());
  server.AddService(consumer_.get(), v1::EventSink::service_full_name());
  events_->Register(server);
}

}  // namespace crm::customer_profile
