#include "services/customer_profile/customer_profile_component.h"

#include <algorithm>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "libs/notify/senders.h"
#include "libs/sharding/hash.h"
#include "services/customer_profile/contact_policy.h"
#include "services/notifications/notification_service.h"
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
ABSL_FLAG(std::string, quiet_hours, "21:00-08:00",
          "Quiet hours for customers who set none (HH:MM-HH:MM in their time zone; equal ends: "
          "none): a notification due then waits for the end.");
ABSL_FLAG(std::string, notification_time_zone, "Asia/Shanghai",
          "IANA time zone of customers who set none, for quiet hours and dates in messages.");
ABSL_FLAG(int, campaign_reach_per_second, 2000,
          "Audience customers all campaigns together reach per second on this shard (each one a "
          "transaction): bounds what a large campaign takes from serving.");
ABSL_FLAG(int, notification_sends_per_second, 200,
          "Notifications handed to the senders per second on this shard, at most (one after "
          "another: a slow relay lowers it).");
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
  if (file.empty()) return ParseBuiltInChurnModel();
  return ReadChurnModelFile(file);
}

// A marketing contact on the first of `channels` with consent and room under the cap, recorded
// in `txn` (so it counts against the cap); refused, the most telling refusal (the cap over no
// consent).
absl::StatusOr<notifications::MarketingContact> MarketingContactIn(
    CustomerProfileStore* store, store::Transaction& txn, absl::string_view customer_id,
    const std::vector<v1::Channel>& channels, absl::string_view purpose, absl::Time now) {
  v1::ContactRecord record;
  record.set_purpose(std::string(purpose));
  api::SetTimestamp(now, record.mutable_contact_time());
  notifications::MarketingContact out;
  auto decide = [&](const v1::Customer& customer, const std::vector<absl::Time>& times) {
    v1::ContactDecision refused;
    for (v1::Channel channel : channels) {
      v1::ContactDecision d = DecideContact(customer, channel, times, now);
      if (d.allowed()) {
        record.set_channel(channel);
        out.channel = channel;
        return d;
      }
      if (refused.reason() != v1::ContactDecision::REASON_FREQUENCY_CAP) {
        refused = d;
        out.channel = channel;
      }
    }
    return refused;
  };
  CRM_RETURN_IF_ERROR(store->ContactIn(txn, customer_id, now, now - absl::Hours(24 * 365), record,
                                       sharding::StableHash64(purpose), decide, &out.decision));
  return out;
}

// Surveys are offered only with consent on some channel and room under the contact cap, and count
// against it, in the transaction that applies the delivery or resolution.
surveys::ContactGate SurveyContactGate(CustomerProfileStore* store) {
  return [store](store::Transaction& txn, absl::string_view customer_id, absl::string_view purpose,
                 absl::Time now) -> absl::StatusOr<v1::ContactDecision> {
    CRM_ASSIGN_OR_RETURN(
        auto contact,
        MarketingContactIn(store, txn, customer_id,
                           {v1::CHANNEL_EMAIL, v1::CHANNEL_SMS, v1::CHANNEL_PUSH}, purpose, now));
    return contact.decision;
  };
}

// What the notifications read of the customers this process owns.
notifications::CustomerAccess NotificationCustomers(CustomerProfileStore* store,
                                                    CustomerProfileService* profile,
                                                    InsightsRefresher* insights) {
  notifications::CustomerAccess access;
  access.lock_customer = std::bind_front(&CustomerProfileStore::LockCustomer, store);
  access.contact = std::bind_front(&MarketingContactIn, store);
  access.validate_audience = [](const v1::AudienceFilter& filter) {
    return AudienceSelector::Of(filter, "audience").status();
  };

  access.audience = [profile, insights](const v1::AudienceFilter& filter, absl::string_view after,
                                        int limit) -> absl::StatusOr<notifications::AudiencePage> {
    notifications::AudiencePage page;
    if (!insights->snapshot()->computed) return page;
    page.ready = true;
    CRM_ASSIGN_OR_RETURN(AudienceSelector selector, AudienceSelector::Of(filter));
    rpc::PageRequest request;
    request.scope = "campaign";
    request.size = limit;
    request.after = std::string(after);
    std::vector<v1::AudienceMember> members;
    std::string more, examined_through;
    CRM_RETURN_IF_ERROR(
        profile->SelectAudience(selector, request, &members, &more, &examined_through));
    for (const v1::AudienceMember& m : members) page.customer_ids.push_back(m.customer_id());
    if (!more.empty()) page.continue_after = examined_through;
    return page;
  };
  return access;
}

absl::StatusOr<notifications::NotificationOptions> NotificationOptionsFromFlags() {
  notifications::NotificationOptions options;
  CRM_ASSIGN_OR_RETURN(
      options.quiet.quiet_hours,
      notifications::ParseDailyWindow("--quiet_hours", absl::GetFlag(FLAGS_quiet_hours)));
  const std::string zone = absl::GetFlag(FLAGS_notification_time_zone);
  if (!absl::LoadTimeZone(zone, &options.quiet.zone)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--notification_time_zone: \"", zone, "\" is not an IANA time zone"));
  }
  CRM_ASSIGN_OR_RETURN(options.senders, notify::SendersFromFlags());
  return options;
}

// Notifications: campaigns walk their audiences and due notifications go out, each on its own
// thread, every second.
absl::Status ServeNotifications(CustomerProfileComponent& c, const rpc::ServiceContext& context,
                                CustomerProfileStore* store, CustomerProfileService* profile,
                                InsightsRefresher* insights,
                                notifications::NotificationService** out) {
  CRM_ASSIGN_OR_RETURN(auto options, NotificationOptionsFromFlags());
  auto* notification_store = c.Make<notifications::NotificationStore>(context.store);
  store->AlsoErase(
      std::bind_front(&notifications::NotificationStore::EraseCustomer, notification_store));
  auto* service = c.Make<notifications::NotificationService>(
      notification_store, NotificationCustomers(store, profile, insights), std::move(options),
      context.clock, c.writes("profile-writes", 32), context.metrics->registry());
  c.AlsoServe(service, v1::NotificationService::service_full_name());
  const int reach = std::max(1, absl::GetFlag(FLAGS_campaign_reach_per_second));
  const int sends = std::max(1, absl::GetFlag(FLAGS_notification_sends_per_second));
  c.RunEvery(absl::Seconds(1), [service, reach] {
    if (auto n = service->RunCampaigns(reach); !n.ok())
      log::Warning("campaign walk failed", {{"error", n.status().ToString()}});
  });
  c.RunEvery(absl::Seconds(1), [service, sends] {
    if (auto n = service->DeliverDue(sends); !n.ok())
      log::Warning("notification delivery pass failed", {{"error", n.status().ToString()}});
  });
  *out = service;
  return absl::OkStatus();
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
  notifications::NotificationService* notices = nullptr;
  CRM_RETURN_IF_ERROR(ServeNotifications(c, context, store, profile, insights, &notices));
  // The profile's own events (which cover the surveys' too) and the notifications'.
  const events::Subscription subscription =
      CustomerProfileService::EventsHandled() | notifications::NotificationService::EventsHandled();
  c.ConsumeEvents(subscription,
                  [profile, surveys, notices](store::Transaction& txn, const v1::Event& event) {
                    CRM_RETURN_IF_ERROR(profile->HandleEvent(txn, event));
                    CRM_RETURN_IF_ERROR(surveys->OnEvent(txn, event));
                    return notices->OnEvent(txn, event);
                  });
  return absl::OkStatus();
}

}  // namespace

rpc::ServiceSpec CustomerProfileSpec() {
  std::vector<std::string> families = CustomerProfileStore::ColumnFamilies();
  for (std::string& f : surveys::SurveyStore::ColumnFamilies()) families.push_back(std::move(f));
  for (std::string& f : notifications::NotificationStore::ColumnFamilies())
    families.push_back(std::move(f));
  rpc::ServiceSpec spec =
      CustomerProfileComponent::SpecOf("customer-profile", std::move(families), &Wire);
  spec.merge_operators = surveys::SurveyStore::MergeOperators();
  spec.merge_operators.merge(notifications::NotificationStore::MergeOperators());
  return spec;
}

}  // namespace crm::customer_profile
