#include "services/notifications/notification_service.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "libs/metrics/families.h"
#include "libs/rpc/caller_auth.h"
#include "libs/rpc/handler.h"
#include "libs/rpc/unary.h"
#include "libs/sharding/hash.h"
#include "libs/store/idempotency.h"
#include "services/notifications/messages.h"

namespace crm::notifications {
namespace {

// How long after a campaign's conversion window closes an order event may still arrive (delivery
// backlogs) and be attributed by its order time.
constexpr absl::Duration kLateOrderGrace = absl::Hours(24);

using rpc::Finish;

constexpr int kMaxHoldoutPercent = 50, kDefaultHoldoutPercent = 10;
constexpr int kMaxConversionWindowDays = 90, kDefaultConversionWindowDays = 7;
constexpr absl::Duration kMaxStartAhead = absl::Hours(24 * 90);
// An order update or reminder older than this when it arrives (an imported history, a backlog) is
// not worth telling any more.
constexpr absl::Duration kStaleAfter = absl::Hours(24);
// Audience customers one walk asks for at a time.
constexpr int kAudienceBatch = 500;

absl::Status AdminsOnly(const auth::Caller& caller, absl::string_view what) {
  if (caller.internal || caller.role == v1::ROLE_ADMIN) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat("only admins ", what));
}

std::string KindName(v1::NotificationKind kind) {
  switch (kind) {
    case v1::NOTIFICATION_KIND_CAMPAIGN: return "campaign";
    case v1::NOTIFICATION_KIND_ORDER_UPDATE: return "order_update";
    case v1::NOTIFICATION_KIND_REMINDER: return "reminder";
    default: return "unknown";
  }
}

std::string ChannelName(v1::Channel channel) {
  switch (channel) {
    case v1::CHANNEL_EMAIL: return "email";
    case v1::CHANNEL_SMS: return "sms";
    case v1::CHANNEL_PUSH: return "push";
    default: return "none";
  }
}

bool ConsentsOn(const v1::Customer& customer, v1::Channel channel) {
  bool granted = false;
  for (const auto& c : customer.marketing_consents())
    if (c.channel() == channel) granted = c.granted();
  return granted;
}

bool IsMarketing(const v1::Notification& n) {
  return n.kind() == v1::NOTIFICATION_KIND_CAMPAIGN || n.kind() == v1::NOTIFICATION_KIND_REMINDER;
}

// A notification that will not be sent (held out, suppressed): it waits for nothing.
void SetUnsent(v1::Notification& n, v1::NotificationStatus status, std::string reason) {
  n.set_status(status);
  n.set_status_reason(std::move(reason));
  n.clear_send_after();
}

// Why a marketing contact was refused, in the notification's words.
std::string RefusalOf(const MarketingContact& contact) {
  if (contact.decision.reason() == v1::ContactDecision::REASON_FREQUENCY_CAP) {
    return absl::StrCat("contact cap reached: ", contact.decision.contacts_in_period(), " in ",
                        contact.decision.cap().period_days(), " days");
  }
  return "no marketing consent on the channel";
}

// Waits between delivery attempts: 30 s doubling, at most an hour.
absl::Duration Backoff(int attempts) {
  return std::min(absl::Hours(1), absl::Seconds(30) * (1 << std::min(attempts - 1, 7)));
}

std::string FormatEta(const google::protobuf::Timestamp& eta, const v1::Customer& customer,
                      const QuietHoursDefaults& defaults) {
  if (eta.seconds() == 0) return "";
  absl::TimeZone zone = defaults.zone;
  const std::string& own = customer.preferences().notifications().time_zone();
  if (!own.empty()) absl::LoadTimeZone(own, &zone);
  return absl::FormatTime("%Y-%m-%d %H:%M", api::FromTimestamp(eta), zone);
}

v1::CampaignReport ReportOf(absl::string_view campaign_id, const internal::CampaignCounts& c) {
  v1::CampaignReport r;
  r.set_campaign_id(std::string(campaign_id));
  r.set_targeted(c.targeted());
  r.set_treated(c.treated());
  r.set_control(c.control());
  r.set_scheduled(c.scheduled());
  r.set_sent(c.sent());
  r.set_suppressed_no_consent(c.suppressed_no_consent());
  r.set_suppressed_frequency_cap(c.suppressed_frequency_cap());
  r.set_failed(c.failed());
  r.set_opened(c.opened());
  r.set_clicked(c.clicked());
  r.set_converted(c.converted());
  r.set_control_converted(c.control_converted());
  r.set_withdrawn(c.withdrawn());
  return r;
}

DeliveryEnd EndedWithout(DeliveryEnd::Kind why) {
  DeliveryEnd end;
  end.kind = why;
  return end;
}

// Ends `n` (or schedules its next attempt) as `end` says, adding to the campaign's counts in
// `delta`; returns the result as crm_notification_deliveries_total names it.
std::string Advance(const DeliveryEnd& end, absl::Time now, const NotificationOptions& options,
                    v1::Notification& n, internal::CampaignCounts& delta) {
  using Kind = DeliveryEnd::Kind;
  using Outcome = notify::SendResult::Outcome;
  auto finish = [&](v1::NotificationStatus status, std::string reason) {
    n.set_status(status);
    n.set_status_reason(std::move(reason));
  };
  switch (end.kind) {
    case Kind::kCampaignCancelled:
      finish(v1::NOTIFICATION_STATUS_WITHDRAWN, "the campaign was cancelled");
      delta.set_withdrawn(1);
      return "withdrawn";
    case Kind::kConsentWithdrawn:
      finish(v1::NOTIFICATION_STATUS_SUPPRESSED, "consent withdrawn before sending");
      delta.set_suppressed_no_consent(1);
      return "consent_withdrawn";
    case Kind::kNoSender:
      finish(v1::NOTIFICATION_STATUS_FAILED,
             absl::StrCat("no sender is configured for ", v1::Channel_Name(n.channel())));
      delta.set_failed(1);
      return "no_sender";
    case Kind::kNoAddress:
      finish(v1::NOTIFICATION_STATUS_FAILED, "the customer has no address on the channel");
      delta.set_failed(1);
      return "failed";
    case Kind::kAttempted: break;
  }
  n.set_attempts(n.attempts() + 1);
  if (end.answer.outcome == Outcome::kSent) {
    finish(v1::NOTIFICATION_STATUS_SENT, "");
    api::SetTimestamp(now, n.mutable_sent_time());
    delta.set_sent(1);
    return "sent";
  }
  if (end.answer.outcome == Outcome::kRetry && n.attempts() < options.max_attempts) {
    n.set_status_reason(end.answer.detail);
    api::SetTimestamp(OutsideQuietHours(end.settings, options.quiet, now + Backoff(n.attempts())),
                      n.mutable_send_after());
    return "retry";
  }
  finish(v1::NOTIFICATION_STATUS_FAILED, end.answer.detail);
  delta.set_failed(1);
  return end.answer.outcome == Outcome::kRejected ? "rejected" : "failed";
}

absl::Status NoCampaign(absl::string_view campaign_id) {
  return absl::NotFoundError(absl::StrCat("campaign_id: no campaign \"", campaign_id, "\""));
}

// The stored campaign a request names (INVALID_ARGUMENT or NOT_FOUND on campaign_id).
absl::StatusOr<internal::CampaignRecord> FindCampaign(const NotificationStore& store,
                                                      absl::string_view campaign_id) {
  CRM_RETURN_IF_ERROR(api::RequiredId("campaign_id", campaign_id));
  CRM_ASSIGN_OR_RETURN(auto record, store.GetCampaign(campaign_id));
  if (!record.has_value()) return NoCampaign(campaign_id);
  return *std::move(record);
}

absl::Status ValidateCampaignRequest(const v1::CreateCampaignRequest& req, absl::Time now,
                                     const CustomerAccess& customers) {
  CRM_RETURN_IF_ERROR(api::RequiredRequestId(req.request_id()));
  CRM_RETURN_IF_ERROR(api::RequiredText("name", req.name(), 200));
  CRM_RETURN_IF_ERROR(customers.validate_audience(req.audience()));
  if (req.channel() != v1::CHANNEL_EMAIL && req.channel() != v1::CHANNEL_SMS &&
      req.channel() != v1::CHANNEL_PUSH) {
    return api::Invalid("channel", "must be CHANNEL_EMAIL, CHANNEL_SMS or CHANNEL_PUSH");
  }
  CRM_RETURN_IF_ERROR(ValidateCampaignTemplate(req.template_()));
  if (req.holdout_percent() < 0 || req.holdout_percent() > kMaxHoldoutPercent)
    return api::Invalid("holdout_percent", "must be 0-50 (0 means 10)");
  if (req.conversion_window_days() < 0 || req.conversion_window_days() > kMaxConversionWindowDays)
    return api::Invalid("conversion_window_days", "must be 0-90 (0 means 7)");
  if (req.has_start_time()) {
    CRM_ASSIGN_OR_RETURN(absl::Time start, api::ToTime("start_time", req.start_time()));
    if (start > now + kMaxStartAhead)
      return api::Invalid("start_time", "must be at most 90 days ahead");
  }
  return absl::OkStatus();
}

}  // namespace

NotificationService::Metrics::Metrics(prometheus::Registry& r)
    : notifications(metrics::CounterFamily(
          r, "crm_notifications_total",
          "Notifications made, by kind (campaign, order_update, reminder) and result: scheduled, "
          "held_out (campaign control group), no_consent, frequency_cap, no_channel "
          "(suppressed)")),
      deliveries(metrics::CounterFamily(
          r, "crm_notification_deliveries_total",
          "Delivery attempts by channel and result: sent, retry, rejected, failed (gave up), "
          "no_sender, withdrawn (campaign cancelled), consent_withdrawn")),
      engagements(metrics::CounterFamily(r, "crm_notification_engagements_total",
                                         "Notifications opened or clicked, by kind and action")),
      due(metrics::GaugeFamily(r, "crm_notifications_due",
                               "Notifications due now and not yet delivered, at the last delivery "
                               "pass (at most its batch)")
              .Add({})) {}

NotificationService::NotificationService(NotificationStore* store, CustomerAccess customers,
                                         NotificationOptions options, Clock* clock,
                                         rpc::Executor* writes, prometheus::Registry& registry)
    : store_(store),
      customers_(std::move(customers)),
      options_(std::move(options)),
      clock_(clock),
      writes_(writes),
      metrics_(registry) {}

absl::Status NotificationService::OnEvent(store::Transaction& txn, const v1::Event& event) {
  if (event.customer_id().empty()) return absl::OkStatus();
  switch (event.payload_case()) {
    case v1::Event::kOrderPlaced: return OnOrderPlaced(txn, event);
    case v1::Event::kShipmentUpdated:
    case v1::Event::kOrderDelivered: return OnShipment(txn, event);
    case v1::Event::kReminderDue: return OnReminder(txn, event);
    default: return absl::OkStatus();
  }
}

void NotificationService::Count(store::Transaction& txn, const v1::Notification& n,
                                absl::string_view result) {
  txn.OnFinish([this, kind = KindName(n.kind()), result = std::string(result)](bool committed) {
    if (committed) metrics_.notifications.Add({{"kind", kind}, {"result", result}}).Increment();
  });
}

v1::Notification NotificationService::Make(const v1::Customer& customer, const std::string& source,
                                           v1::Channel channel, Draft draft, absl::Time now) const {
  v1::Notification n;
  n.set_notification_id(NotificationIdOf(now, source));
  n.set_customer_id(customer.customer_id());
  n.set_kind(draft.kind);
  n.set_campaign_id(std::move(draft.campaign_id));
  n.set_channel(channel);
  n.set_subject(std::move(draft.subject));
  n.set_body(std::move(draft.body));
  n.set_reference(std::move(draft.reference));
  n.set_status(v1::NOTIFICATION_STATUS_SCHEDULED);
  api::SetTimestamp(now, n.mutable_create_time());
  api::SetTimestamp(OutsideQuietHours(customer.preferences().notifications(), options_.quiet, now),
                    n.mutable_send_after());
  return n;
}

// ---------------------------------------------------------------------------------------------
// Order updates and reminders, from events.

absl::Status NotificationService::OnShipment(store::Transaction& txn, const v1::Event& event) {
  const absl::Time now = clock_->Now();
  if (event.has_occur_time() && api::FromTimestamp(event.occur_time()) + kStaleAfter < now)
    return absl::OkStatus();
  std::map<std::string, std::string> values;
  if (event.has_order_delivered()) {
    values["order_id"] = event.order_delivered().order_id();
    return NotifyOrderUpdate(txn, event, values, event.order_delivered().order_id(), "delivered");
  }
  const v1::ShipmentUpdated& s = event.shipment_updated();
  const char* what = s.stage() == v1::SHIPMENT_STAGE_SHIPPED            ? "shipped"
                     : s.stage() == v1::SHIPMENT_STAGE_OUT_FOR_DELIVERY ? "out_for_delivery"
                     : s.stage() == v1::SHIPMENT_STAGE_DELAYED          ? "delayed"
                                                                        : nullptr;
  if (what == nullptr) return absl::OkStatus();
  values["order_id"] = s.order_id();
  values["carrier"] = s.carrier();
  values["tracking_number"] = s.tracking_number();
  return NotifyOrderUpdate(txn, event, values, s.order_id(), what);
}

absl::Status NotificationService::NotifyOrderUpdate(store::Transaction& txn, const v1::Event& event,
                                                    const std::map<std::string, std::string>& base,
                                                    absl::string_view order_id,
                                                    absl::string_view what) {
  auto customer = customers_.lock_customer(txn, event.customer_id());
  if (absl::IsNotFound(customer.status())) return absl::OkStatus();
  CRM_RETURN_IF_ERROR(customer.status());
  const absl::Time now = clock_->Now();
  std::map<std::string, std::string> values = base;
  values["customer_name"] = customer->name();
  if (event.has_shipment_updated())
    values["eta"] = FormatEta(event.shipment_updated().eta(), *customer, options_.quiet);
  const v1::MessageTemplate words = BuiltInMessage(what, customer->preferences().language());
  const Draft draft{v1::NOTIFICATION_KIND_ORDER_UPDATE, "", std::string(order_id),
                    Render(words.subject(), values), Render(words.body(), values)};
  const std::vector<v1::Channel> channels = OrderUpdateChannels(*customer);
  // No channel: one suppressed record, kept for the service desk (the customer asked for silence,
  // or gave no way to reach them).
  const std::vector<v1::Channel> targets =
      channels.empty() ? std::vector<v1::Channel>{v1::CHANNEL_UNSPECIFIED} : channels;
  for (v1::Channel channel : targets) {
    const std::string source = channels.empty()
                                   ? absl::StrCat("event:", event.event_id())
                                   : absl::StrCat("event:", event.event_id(), ":", channel);
    CRM_ASSIGN_OR_RETURN(auto existing, store_->LockSource(txn, event.customer_id(), source));
    if (existing.has_value()) continue;
    v1::Notification n = Make(*customer, source, channel, draft, now);
    if (channels.empty()) {
      SetUnsent(n, v1::NOTIFICATION_STATUS_SUPPRESSED,
                customer->preferences().notifications().order_updates_off()
                    ? "the customer turned order updates off"
                    : "no address for order updates");
    }
    Count(txn, n, channels.empty() ? "no_channel" : "scheduled");
    CRM_RETURN_IF_ERROR(store_->Create(txn, source, n));
  }
  return absl::OkStatus();
}

absl::Status NotificationService::OnReminder(store::Transaction& txn, const v1::Event& event) {
  const absl::Time now = clock_->Now();
  if (event.has_occur_time() && api::FromTimestamp(event.occur_time()) + kStaleAfter < now)
    return absl::OkStatus();
  const v1::ReminderDue& r = event.reminder_due();
  // Recommendation finds an occasion due every day of its window and an upgrade every day until
  // bought: the customer hears of an occasion's item once a year, of an upgrade once.
  const bool upgrade = r.kind() == v1::REMINDER_KIND_UPGRADE;
  const std::string source = upgrade
                                 ? absl::StrCat("reminder:upgrade:", r.sku())
                                 : absl::StrCat("reminder:occasion:", r.sku(), ":",
                                                absl::FormatTime("%Y", now, absl::UTCTimeZone()));
  CRM_ASSIGN_OR_RETURN(auto existing, store_->LockSource(txn, event.customer_id(), source));
  if (existing.has_value()) return absl::OkStatus();
  auto customer = customers_.lock_customer(txn, event.customer_id());
  if (absl::IsNotFound(customer.status())) return absl::OkStatus();
  CRM_RETURN_IF_ERROR(customer.status());
  CRM_ASSIGN_OR_RETURN(MarketingContact contact,
                       customers_.contact(txn, event.customer_id(),
                                          {v1::CHANNEL_EMAIL, v1::CHANNEL_PUSH, v1::CHANNEL_SMS},
                                          absl::StrCat("reminder:", r.sku()), now));
  const std::map<std::string, std::string> values = {
      {"customer_name", customer->name()}, {"item_title", r.title()}, {"reason", r.reason()}};
  const v1::MessageTemplate words =
      BuiltInMessage(upgrade ? "upgrade" : "occasion", customer->preferences().language());
  Draft draft{v1::NOTIFICATION_KIND_REMINDER, "", r.sku(), Render(words.subject(), values),
              Render(words.body(), values)};
  v1::Notification n = Make(*customer, source, contact.channel, draft, now);
  if (!contact.decision.allowed())
    SetUnsent(n, v1::NOTIFICATION_STATUS_SUPPRESSED, RefusalOf(contact));
  Count(txn, n,
        contact.decision.allowed()                                               ? "scheduled"
        : contact.decision.reason() == v1::ContactDecision::REASON_FREQUENCY_CAP ? "frequency_cap"
                                                                                 : "no_consent");
  return store_->Create(txn, source, n);
}

absl::Status NotificationService::OnOrderPlaced(store::Transaction& txn, const v1::Event& event) {
  const absl::Time ordered =
      event.has_occur_time() ? api::FromTimestamp(event.occur_time()) : clock_->Now();
  CRM_ASSIGN_OR_RETURN(auto memberships, store_->LockMemberships(txn, event.customer_id()));
  for (internal::CampaignMembership& m : memberships) {
    const absl::Time window_end = api::FromTimestamp(m.window_end());
    // A window that closed a while ago by the clock can attribute nothing more: forgotten, so a
    // customer's orders do not read every campaign that ever reached them. Judged by the clock, not
    // by this order's time, so an order placed inside the window whose event arrives after a later
    // order's still converts.
    if (clock_->Now() >= window_end + kLateOrderGrace) {
      CRM_RETURN_IF_ERROR(store_->DeleteMembership(txn, event.customer_id(), m.campaign_id()));
      continue;
    }
    if (m.converted() || ordered < api::FromTimestamp(m.reach_time()) || ordered >= window_end)
      continue;
    m.set_converted(true);
    CRM_RETURN_IF_ERROR(store_->PutMembership(txn, event.customer_id(), m));
    internal::CampaignCounts delta;
    if (m.held_out()) {
      delta.set_control_converted(1);
    } else {
      delta.set_converted(1);
    }
    CRM_RETURN_IF_ERROR(store_->AddCounts(txn, m.campaign_id(), delta));
    CRM_ASSIGN_OR_RETURN(auto n, store_->Lock(txn, event.customer_id(), m.notification_id()));
    if (!n.has_value()) continue;
    v1::Notification after = *n;
    api::SetTimestamp(ordered, after.mutable_converted_time());
    after.set_converted_order_id(event.order_placed().order_id());
    CRM_RETURN_IF_ERROR(store_->Update(txn, *n, after));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Campaigns.

absl::StatusOr<v1::Campaign> NotificationService::Create(const v1::CreateCampaignRequest& req,
                                                         const std::string& campaign_id,
                                                         const std::string& actor,
                                                         uint64_t fingerprint, absl::Time now) {
  v1::Campaign out;
  CRM_RETURN_IF_ERROR(store_->Transact([&](store::Transaction& txn) -> absl::Status {
    CRM_ASSIGN_OR_RETURN(auto existing, store_->LockCampaign(txn, campaign_id));
    if (existing.has_value()) {
      if (existing->request_fingerprint() != fingerprint)
        return api::Invalid("request_id", "was already used for another campaign");
      out = existing->campaign();
      return absl::OkStatus();
    }
    internal::CampaignRecord record;
    v1::Campaign& c = *record.mutable_campaign();
    c.set_campaign_id(campaign_id);
    c.set_name(req.name());
    *c.mutable_audience() = req.audience();
    c.set_channel(req.channel());
    *c.mutable_template_() = req.template_();
    c.set_holdout_percent(req.holdout_percent() == 0 ? kDefaultHoldoutPercent
                                                     : req.holdout_percent());
    if (req.has_start_time()) {
      *c.mutable_start_time() = req.start_time();
    } else {
      api::SetTimestamp(now, c.mutable_start_time());
    }
    c.set_conversion_window_days(req.conversion_window_days() == 0 ? kDefaultConversionWindowDays
                                                                   : req.conversion_window_days());
    c.set_state(v1::CAMPAIGN_STATE_ACTIVE);
    api::SetTimestamp(now, c.mutable_create_time());
    c.set_created_by(actor);
    record.set_request_fingerprint(fingerprint);
    out = c;
    return store_->PutCampaign(txn, record);
  }));
  return out;
}

absl::Status NotificationService::Reach(store::Transaction& txn, const v1::Campaign& campaign,
                                        const std::string& customer_id, absl::Time now) {
  const std::string source = absl::StrCat("campaign:", campaign.campaign_id());
  CRM_ASSIGN_OR_RETURN(auto existing, store_->LockSource(txn, customer_id, source));
  if (existing.has_value()) return absl::OkStatus();  // reached before a restart
  auto customer = customers_.lock_customer(txn, customer_id);
  if (absl::IsNotFound(customer.status())) return absl::OkStatus();  // erased since
  CRM_RETURN_IF_ERROR(customer.status());
  const bool held_out = InControlGroup(campaign, customer_id);
  const std::map<std::string, std::string> values = {{"customer_name", customer->name()},
                                                     {"campaign_name", campaign.name()}};
  Draft draft{v1::NOTIFICATION_KIND_CAMPAIGN, campaign.campaign_id(), "",
              Render(campaign.template_().subject(), values),
              Render(campaign.template_().body(), values)};
  v1::Notification n = Make(*customer, source, campaign.channel(), draft, now);
  internal::CampaignCounts delta;
  delta.set_targeted(1);
  if (held_out) {
    SetUnsent(n, v1::NOTIFICATION_STATUS_HELD_OUT, "in the campaign's control group");
    delta.set_control(1);
    Count(txn, n, "held_out");
  } else {
    CRM_ASSIGN_OR_RETURN(MarketingContact contact,
                         customers_.contact(txn, customer_id, {campaign.channel()}, source, now));
    delta.set_treated(1);
    if (contact.decision.allowed()) {
      delta.set_scheduled(1);
      Count(txn, n, "scheduled");
    } else {
      const bool capped = contact.decision.reason() == v1::ContactDecision::REASON_FREQUENCY_CAP;
      SetUnsent(n, v1::NOTIFICATION_STATUS_SUPPRESSED, RefusalOf(contact));
      capped ? delta.set_suppressed_frequency_cap(1) : delta.set_suppressed_no_consent(1);
      Count(txn, n, capped ? "frequency_cap" : "no_consent");
    }
  }
  // Every customer the campaign reached is followed for conversions, treated or not, so the
  // uplift compares like with like (intention to treat).
  internal::CampaignMembership m;
  m.set_campaign_id(campaign.campaign_id());
  m.set_notification_id(n.notification_id());
  m.set_held_out(held_out);
  api::SetTimestamp(now, m.mutable_reach_time());
  api::SetTimestamp(now + absl::Hours(24) * campaign.conversion_window_days(),
                    m.mutable_window_end());
  CRM_RETURN_IF_ERROR(store_->PutMembership(txn, customer_id, m));
  CRM_RETURN_IF_ERROR(store_->AddCounts(txn, campaign.campaign_id(), delta));
  return store_->Create(txn, source, n);
}

absl::StatusOr<int> NotificationService::RunCampaigns(int budget) {
  const absl::Time now = clock_->Now();
  CRM_ASSIGN_OR_RETURN(auto campaigns, store_->Campaigns());
  int reached = 0;
  for (const internal::CampaignRecord& record : campaigns) {
    const v1::Campaign& c = record.campaign();
    if (reached >= budget) break;
    if (record.audience_done() || c.state() != v1::CAMPAIGN_STATE_ACTIVE ||
        api::FromTimestamp(c.start_time()) > now)
      continue;
    CRM_ASSIGN_OR_RETURN(int n, RunCampaign(record, budget - reached, now));
    reached += n;
  }
  return reached;
}

absl::StatusOr<int> NotificationService::RunCampaign(const internal::CampaignRecord& record,
                                                     int budget, absl::Time now) {
  const v1::Campaign& campaign = record.campaign();
  std::string after = record.reached_through_customer_id();
  int reached = 0;
  bool done = false;
  while (reached < budget && !done) {
    CRM_ASSIGN_OR_RETURN(AudiencePage page,
                         customers_.audience(campaign.audience(), after,
                                             std::min(kAudienceBatch, budget - reached)));
    if (!page.ready) break;
    // One transaction per customer, its commit not waiting on the disk (a synced commit each made
    // the walk ~400 customers/s at 100k): the progress below is synced, which syncs these too, and
    // a crash before it walks the page again.
    for (const std::string& id : page.customer_ids) {
      CRM_RETURN_IF_ERROR(
          store_->Transact([&](store::Transaction& txn) { return Reach(txn, campaign, id, now); },
                           store::Durability::kBuffered));
      ++reached;
    }
    done = page.continue_after.empty();
    if (!done) after = page.continue_after;
    // The walk's progress, so a restart goes on from here (Reach skips anyone reached twice).
    CRM_RETURN_IF_ERROR(store_->Transact([&](store::Transaction& txn) -> absl::Status {
      CRM_ASSIGN_OR_RETURN(auto stored, store_->LockCampaign(txn, campaign.campaign_id()));
      if (!stored.has_value()) return absl::OkStatus();
      stored->set_reached_through_customer_id(after);
      stored->set_audience_done(done);
      return store_->PutCampaign(txn, *stored);
    }));
  }
  if (done) {
    log::Info("campaign reached its audience on this shard",
              {{"campaign_id", campaign.campaign_id()}});
  }
  return reached;
}

// ---------------------------------------------------------------------------------------------
// Delivery.

absl::StatusOr<int> NotificationService::DeliverDue(int limit) {
  const absl::Time now = clock_->Now();
  CRM_ASSIGN_OR_RETURN(auto due, store_->DueAt(now, limit));
  metrics_.due.Set(static_cast<double>(due.size()));
  int handed = 0;
  CancelledCampaigns cancelled;
  for (const NotificationStore::Due& d : due) {
    absl::Status s = Deliver(d, now, cancelled);
    if (!s.ok()) {
      log::Warning("notification delivery failed",
                   {{"notification_id", d.notification_id}, {"error", s.ToString()}});
      continue;
    }
    ++handed;
  }
  return handed;
}

absl::Status NotificationService::Deliver(const NotificationStore::Due& due, absl::Time now,
                                          CancelledCampaigns& cancelled) {
  v1::Notification n;
  v1::Customer customer;
  bool decided = false;  // settled without sending
  CRM_RETURN_IF_ERROR(store_->Transact([&](store::Transaction& txn) -> absl::Status {
    CRM_ASSIGN_OR_RETURN(auto stored, store_->Lock(txn, due.customer_id, due.notification_id));
    if (!stored.has_value() || stored->status() != v1::NOTIFICATION_STATUS_SCHEDULED) {
      decided = true;
      return absl::OkStatus();
    }
    n = *std::move(stored);
    auto c = customers_.lock_customer(txn, due.customer_id);
    if (absl::IsNotFound(c.status())) {
      decided = true;  // erased: the erasure removes the notification too
      return absl::OkStatus();
    }
    CRM_RETURN_IF_ERROR(c.status());
    customer = *std::move(c);
    return absl::OkStatus();
  }));
  if (decided) return absl::OkStatus();
  if (n.kind() == v1::NOTIFICATION_KIND_CAMPAIGN) {
    // Read once a pass per campaign: a pass may hold hundreds of one campaign's messages.
    auto known = cancelled.find(n.campaign_id());
    if (known == cancelled.end()) {
      CRM_ASSIGN_OR_RETURN(auto campaign, store_->GetCampaign(n.campaign_id()));
      known =
          cancelled
              .emplace(n.campaign_id(), campaign.has_value() && campaign->campaign().state() ==
                                                                    v1::CAMPAIGN_STATE_CANCELLED)
              .first;
    }
    if (known->second) return Settle(n, EndedWithout(DeliveryEnd::Kind::kCampaignCancelled), now);
  }
  if (IsMarketing(n) && !ConsentsOn(customer, n.channel())) {
    return Settle(n, EndedWithout(DeliveryEnd::Kind::kConsentWithdrawn), now);
  }
  auto sender = options_.senders.find(n.channel());
  if (sender == options_.senders.end() || sender->second == nullptr) {
    return Settle(n, EndedWithout(DeliveryEnd::Kind::kNoSender), now);
  }
  notify::OutgoingMessage message;
  message.notification_id = n.notification_id();
  message.customer_id = n.customer_id();
  message.channel = n.channel();
  message.to = AddressOn(customer, n.channel());
  message.subject = n.subject();
  message.body = n.body();
  message.language = customer.preferences().language();
  if (message.to.empty()) {
    return Settle(n, EndedWithout(DeliveryEnd::Kind::kNoAddress), now);
  }
  DeliveryEnd end;
  end.answer = sender->second->Send(message);
  end.settings = customer.preferences().notifications();
  return Settle(n, end, clock_->Now());
}

absl::Status NotificationService::Settle(const v1::Notification& sent, const DeliveryEnd& end,
                                         absl::Time now) {
  std::string outcome;
  CRM_RETURN_IF_ERROR(store_->Transact([&](store::Transaction& txn) -> absl::Status {
    CRM_ASSIGN_OR_RETURN(auto stored,
                         store_->Lock(txn, sent.customer_id(), sent.notification_id()));
    // Settled by another pass, or erased, meanwhile.
    if (!stored.has_value() || stored->status() != v1::NOTIFICATION_STATUS_SCHEDULED ||
        stored->attempts() != sent.attempts())
      return absl::OkStatus();
    v1::Notification after = *stored;
    internal::CampaignCounts delta;
    outcome = Advance(end, now, options_, after, delta);
    if (after.status() != v1::NOTIFICATION_STATUS_SCHEDULED) delta.set_scheduled(-1);
    CRM_RETURN_IF_ERROR(store_->Update(txn, *stored, after));
    if (!after.campaign_id().empty())
      CRM_RETURN_IF_ERROR(store_->AddCounts(txn, after.campaign_id(), delta));
    return absl::OkStatus();
  }));
  if (!outcome.empty()) {
    metrics_.deliveries.Add({{"channel", ChannelName(sent.channel())}, {"result", outcome}})
        .Increment();
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// The API.

grpc::ServerUnaryReactor* NotificationService::CreateCampaign(Ctx* ctx,
                                                              const v1::CreateCampaignRequest* req,
                                                              v1::Campaign* resp) {
  const absl::Time now = clock_->Now();
  if (auto s = ValidateCampaignRequest(*req, now, customers_); !s.ok()) return Finish(ctx, s);
  return rpc::FinishAsCallerOn(
      *writes_, ctx, [this, req, resp, now](const auth::Caller& caller) -> absl::Status {
        CRM_RETURN_IF_ERROR(AdminsOnly(caller, "create campaigns"));
        // Every shard, asked by the gateway with the same request, derives the same id.
        const std::string campaign_id =
            absl::StrFormat("cmp-%016x", sharding::StableHash64(rpc::ScopedRequestId(
                                             caller, req->request_id(), "CreateCampaign")));
        CRM_ASSIGN_OR_RETURN(*resp, Create(*req, campaign_id, rpc::Actor(caller),
                                           store::RequestFingerprint(*req), now));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* NotificationService::CancelCampaign(Ctx* ctx,
                                                              const v1::CancelCampaignRequest* req,
                                                              v1::Campaign* resp) {
  if (auto s = api::RequiredId("campaign_id", req->campaign_id()); !s.ok()) return Finish(ctx, s);
  return rpc::FinishAsCallerOn(
      *writes_, ctx, [this, req, resp](const auth::Caller& caller) -> absl::Status {
        CRM_RETURN_IF_ERROR(AdminsOnly(caller, "cancel campaigns"));
        return store_->Transact([&](store::Transaction& txn) -> absl::Status {
          CRM_ASSIGN_OR_RETURN(auto record, store_->LockCampaign(txn, req->campaign_id()));
          if (!record.has_value()) {
            return NoCampaign(req->campaign_id());
          }
          record->mutable_campaign()->set_state(v1::CAMPAIGN_STATE_CANCELLED);
          *resp = record->campaign();
          return store_->PutCampaign(txn, *record);
        });
      });
}

grpc::ServerUnaryReactor* NotificationService::GetCampaign(Ctx* ctx,
                                                           const v1::GetCampaignRequest* req,
                                                           v1::Campaign* resp) {
  auto record = AdminReads(*ctx, req->campaign_id());
  if (!record.ok()) return Finish(ctx, record.status());
  *resp = record->campaign();
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* NotificationService::GetCampaignReport(
    Ctx* ctx, const v1::GetCampaignReportRequest* req, v1::CampaignReport* resp) {
  auto record = AdminReads(*ctx, req->campaign_id());
  if (!record.ok()) return Finish(ctx, record.status());
  auto counts = store_->Counts(req->campaign_id());
  if (!counts.ok()) return Finish(ctx, counts.status());
  *resp = ReportOf(req->campaign_id(), *counts);
  return Finish(ctx, absl::OkStatus());
}

absl::StatusOr<internal::CampaignRecord> NotificationService::AdminReads(
    const grpc::ServerContextBase& ctx, absl::string_view campaign_id) const {
  // The service's own fence beside the gateway's roles: campaigns are for admins.
  CRM_ASSIGN_OR_RETURN(const auth::Caller caller, rpc::CallerOf(ctx));
  CRM_RETURN_IF_ERROR(AdminsOnly(caller, "read campaigns"));
  return FindCampaign(*store_, campaign_id);
}

grpc::ServerUnaryReactor* NotificationService::ListNotifications(
    Ctx* ctx, const v1::ListNotificationsRequest* req, v1::ListNotificationsResponse* resp) {
  auto caller = rpc::CallerOf(*ctx);
  if (!caller.ok()) return Finish(ctx, caller.status());
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (rpc::IsCustomer(*caller) && caller->customer_id != req->customer_id()) {
    return Finish(ctx, absl::PermissionDeniedError(
                           "customer_id: a customer may only see their own notifications"));
  }
  const bool with_all = !rpc::IsCustomer(*caller);
  return Finish(
      ctx, rpc::ReadCustomerPage(*req, with_all ? "notifications-all" : "notifications", {20, 100},
                                 std::bind_front(&NotificationStore::List, store_, with_all),
                                 resp->mutable_notifications(), resp->mutable_next_page_token()));
}

grpc::ServerUnaryReactor* NotificationService::RecordEngagement(
    Ctx* ctx, const v1::RecordEngagementRequest* req, v1::Notification* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredId("notification_id", req->notification_id()); !s.ok())
    return Finish(ctx, s);
  if (req->kind() != v1::ENGAGEMENT_KIND_OPENED && req->kind() != v1::ENGAGEMENT_KIND_CLICKED)
    return Finish(ctx, api::Invalid("kind", "must be ENGAGEMENT_KIND_OPENED or _CLICKED"));
  const absl::Time now = clock_->Now();
  return rpc::FinishAsCallerOn(
      *writes_, ctx, [this, req, resp, now](const auth::Caller& caller) -> absl::Status {
        if (rpc::IsCustomer(caller) ? caller.customer_id != req->customer_id()
                                    : !(caller.internal || caller.role == v1::ROLE_SERVICE)) {
          return absl::PermissionDeniedError(
              "customer_id: only the customer, or the mailer as a service, records engagement");
        }
        std::vector<std::string> actions;
        CRM_RETURN_IF_ERROR(store_->Transact([&](store::Transaction& txn) -> absl::Status {
          actions.clear();
          CRM_ASSIGN_OR_RETURN(auto n,
                               store_->Lock(txn, req->customer_id(), req->notification_id()));
          if (!n.has_value() || (n->status() != v1::NOTIFICATION_STATUS_SENT &&
                                 n->status() != v1::NOTIFICATION_STATUS_SCHEDULED)) {
            return absl::NotFoundError(
                absl::StrCat("notification_id: the customer has no notification \"",
                             req->notification_id(), "\""));
          }
          if (n->status() != v1::NOTIFICATION_STATUS_SENT) {
            return absl::FailedPreconditionError("notification_id: it has not been sent yet");
          }
          v1::Notification after = *n;
          internal::CampaignCounts delta;
          if (!after.has_opened_time()) {
            api::SetTimestamp(now, after.mutable_opened_time());
            delta.set_opened(1);
            actions.push_back("opened");
          }
          if (req->kind() == v1::ENGAGEMENT_KIND_CLICKED && !after.has_clicked_time()) {
            api::SetTimestamp(now, after.mutable_clicked_time());
            delta.set_clicked(1);
            actions.push_back("clicked");
          }
          *resp = after;
          if (actions.empty()) return absl::OkStatus();
          CRM_RETURN_IF_ERROR(store_->Update(txn, *n, after));
          if (after.campaign_id().empty()) return absl::OkStatus();
          return store_->AddCounts(txn, after.campaign_id(), delta);
        }));
        for (const std::string& action : actions) {
          metrics_.engagements.Add({{"kind", KindName(resp->kind())}, {"action", action}})
              .Increment();
        }
        return absl::OkStatus();
      });
}

}  // namespace crm::notifications
