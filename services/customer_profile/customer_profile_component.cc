#include "services/customer_profile/customer_profile_component.h"

#include <algorithm>

#include "absl/flags/flag.h"
#include "absl/functional/bind_front.h"
#include "libs/base/status_macros.h"

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
namespace {

absl::StatusOr<internal::SegmentRules> LoadSegmentRules() {
  const std::string file = absl::GetFlag(FLAGS_segment_rules_file);
  if (file.empty()) return DefaultSegmentRules();
  return ReadSegmentRulesFile(file);
}

absl::StatusOr<internal::ChurnModel> LoadChurnModel() {
  const std::string file = absl::GetFlag(FLAGS_churn_model_file);
  if (file.empty()) return BuiltInChurnModel();
  return ReadChurnModelFile(file);
}

}  // namespace

rpc::ServiceSpec CustomerProfileComponent::Spec() {
  return rpc::ServiceSpec::Of<CustomerProfileComponent>("customer-profile",
                                                        CustomerProfileStore::ColumnFamilies());
}

absl::StatusOr<std::unique_ptr<CustomerProfileComponent>> CustomerProfileComponent::Create(
    const rpc::ServiceContext& context) {
  auto c = std::unique_ptr<CustomerProfileComponent>(new CustomerProfileComponent(context));
  CRM_RETURN_IF_ERROR(c->ProduceEvents());
  c->store_ = std::make_unique<CustomerProfileStore>(context.store, c->outbox());
  CRM_ASSIGN_OR_RETURN(internal::SegmentRules rules, LoadSegmentRules());
  CRM_ASSIGN_OR_RETURN(internal::ChurnModel churn_model, LoadChurnModel());
  c->insights_ =
      std::make_unique<InsightsRefresher>(c->store_.get(), context.clock, std::move(rules),
                                          std::move(churn_model), context.metrics->registry());
  c->refresh_interval_ = absl::Seconds(std::max(1, absl::GetFlag(FLAGS_insights_refresh_s)));
  c->service_ = std::make_unique<CustomerProfileService>(
      c->store_.get(), c->insights_.get(), context.clock, c->writes("profile-writes", 32),
      context.metrics->registry());
  c->Serve(c->service_.get());
  c->ConsumeEvents(CustomerProfileService::EventsHandled(),
                   absl::bind_front(&CustomerProfileService::HandleEvent, c->service_.get()));
  return c;
}

}  // namespace crm::customer_profile
