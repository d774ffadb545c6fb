#include "services/customer_profile/customer_profile_component.h"

#include <algorithm>

#include "absl/flags/flag.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/sharding/hash.h"
#include "services/customer_profile/contact_policy.h"
#include "services/surveys/survey_rules.h"
#include "services/surveys/survey_service.h"

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

// Surveys are offered only with consent on some channel and room under the contact cap, and count
// against it, in the transaction that applies the delivery or resolution.
surveys::ContactGate SurveyContactGate(CustomerProfileStore* store) {
  return [store](store::Transaction& txn, absl::string_view customer_id, absl::string_view purpose,
                 absl::Time now) -> absl::StatusOr<v1::ContactDecision> {
    v1::ContactRecord record;
    record.set_purpose(std::string(purpose));
    api::SetTimestamp(now, record.mutable_contact_time());
    auto decide = [&](const v1::Customer& customer, const std::vector<absl::Time>& times) {
      v1::ContactDecision refused;
      for (v1::Channel channel : {v1::CHANNEL_EMAIL, v1::CHANNEL_SMS, v1::CHANNEL_PUSH}) {
        v1::ContactDecision d = DecideContact(customer, channel, times, now);
        if (d.allowed()) {
          record.set_channel(channel);
          return d;
        }
        if (refused.reason() != v1::ContactDecision::REASON_FREQUENCY_CAP) refused = d;
      }
      return refused;
    };
    v1::ContactDecision out;
    CRM_RETURN_IF_ERROR(store->ContactIn(txn, customer_id, now, now - absl::Hours(24 * 365), record,
                                         sharding::StableHash64(purpose), decide, &out));
    return out;
  };
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
  auto* profile = c.Serve(std::make_unique<CustomerProfileService>(
      store, insights, context.clock, c.writes("profile-writes", 32), context.metrics->registry()));
  CRM_ASSIGN_OR_RETURN(internal::SurveyRules survey_rules, surveys::LoadSurveyRules());
  auto* survey_store = c.Make<surveys::SurveyStore>(context.store);
  store->AlsoErase(std::bind_front(&surveys::SurveyStore::EraseCustomer, survey_store));
  auto* surveys = c.Make<surveys::SurveyService>(
      survey_store, std::move(survey_rules), SurveyContactGate(store), context.clock,
      c.writes("profile-writes", 32), context.metrics->registry(), context.shard_index);
  c.AlsoServe(surveys, v1::SurveyService::service_full_name());
  c.RunEvery(
      absl::Minutes(1), [surveys] { surveys->RefreshGauges(); }, rpc::PeriodicTask::FirstRun::kNow);
  c.ConsumeEvents(CustomerProfileService::EventsHandled(),
                  [profile, surveys](store::Transaction& txn, const v1::Event& event) {
                    CRM_RETURN_IF_ERROR(profile->HandleEvent(txn, event));
                    return surveys->OnEvent(txn, event);
                  });
  return absl::OkStatus();
}

}  // namespace

rpc::ServiceSpec CustomerProfileSpec() {
  std::vector<std::string> families = CustomerProfileStore::ColumnFamilies();
  for (std::string& f : surveys::SurveyStore::ColumnFamilies()) families.push_back(std::move(f));
  rpc::ServiceSpec spec =
      CustomerProfileComponent::SpecOf("customer-profile", std::move(families), &Wire);
  spec.merge_operators = surveys::SurveyStore::MergeOperators();
  return spec;
}

}  // namespace crm::customer_profile
