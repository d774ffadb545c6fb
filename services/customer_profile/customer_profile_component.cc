#include "services/customer_profile/customer_profile_component.h"

#include <algorithm>

#include "absl/flags/flag.h"
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

absl::Status Wire(CustomerProfileComponent& c, const rpc::ServiceContext& context) {
  CRM_RETURN_IF_ERROR(c.ProduceEvents());
  auto* store = c.Make<CustomerProfileStore>(context.store, c.outbox());
  CRM_ASSIGN_OR_RETURN(internal::SegmentRules rules, LoadSegmentRules());
  CRM_ASSIGN_OR_RETURN(internal::ChurnModel churn_model, LoadChurnModel());
  auto* insights = c.Make<InsightsRefresher>(store, context.clock, std::move(rules),
                                             std::move(churn_model), context.metrics->registry());
  const absl::Duration refresh_interval =
      absl::Seconds(std::max(1, absl::GetFlag(FLAGS_insights_refresh_s)));
  // Population figures and KPIs are recomputed while the process serves.
  c.OnStart([insights, refresh_interval] { insights->Start(refresh_interval); });
  c.OnStop([insights] { insights->Stop(); });
  c.Serve(std::make_unique<CustomerProfileService>(
      store, insights, context.clock, c.writes("profile-writes", 32), context.metrics->registry()));
  c.ConsumeEvents();
  return absl::OkStatus();
}

}  // namespace

rpc::ServiceSpec CustomerProfileSpec() {
  return CustomerProfileComponent::SpecOf("customer-profile",
                                          CustomerProfileStore::ColumnFamilies(), &Wire);
}

}  // namespace crm::customer_profile
