// Notifications as customer-profile serves them (crm.v1.NotificationService), over gRPC and
// RocksDB, with e-mail delivered by the real SMTP sender to Debian's aiosmtpd on loopback:
// campaigns reach their audience through consent and the contact cap with a control group held
// out, and count sends, opens, clicks and orders; order updates wait out quiet hours and follow the
// customer's choices, once per event; reminders are marketing.
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/events.grpc.pb.h"
#include "crm/v1/notifications.grpc.pb.h"
#include "libs/api/validate.h"
#include "libs/notify/senders.h"
#include "services/customer_profile/customer_profile_component.h"
#include "services/notifications/send_policy.h"
#include "tests/support/caller.h"
#include "tests/support/require_ok.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"
#include "tests/support/smtp_sink.h"
#include "tests/support/wait.h"

ABSL_DECLARE_FLAG(std::string, quiet_hours);

namespace crm {
namespace {

using testing::CallOk;
using testing::StatusOf;
using Profiles = v1::CustomerProfileService::Stub;
using Notices = v1::NotificationService::Stub;

constexpr absl::Duration kPatience = absl::Seconds(30);

// The harness with its e-mail going to `sink` and quiet hours as given (set before it starts).
struct World {
  World(const testing::SmtpSink& sink, const std::string& quiet_hours)
      : h(Configure(sink, quiet_hours)) {}
  static testing::ServiceHarness<customer_profile::CustomerProfileComponent>::Options Configure(
      const testing::SmtpSink& sink, const std::string& quiet_hours) {
    absl::SetFlag(&FLAGS_smtp_server, absl::StrCat("127.0.0.1:", sink.port()));
    absl::SetFlag(&FLAGS_smtp_from, "crm@shop.example");
    absl::SetFlag(&FLAGS_smtp_tls, "none");
    absl::SetFlag(&FLAGS_quiet_hours, quiet_hours);
    return {};
  }
  std::unique_ptr<Profiles> profiles() { return v1::CustomerProfileService::NewStub(h.channel()); }
  std::unique_ptr<Notices> as(const auth::Caller& caller) {
    return v1::NotificationService::NewStub(h.ChannelAs(caller));
  }
  std::string Register(const std::string& email, const std::string& name) {
    v1::RegisterCustomerRequest reg;
    reg.set_request_id("reg-" + email);
    reg.set_email(email);
    reg.set_name(name);
    return CallOk(profiles().get(), &Profiles::RegisterCustomer, reg).customer_id();
  }
  void Consent(const std::string& id, v1::Channel channel) {
    v1::SetMarketingConsentRequest consent;
    consent.set_customer_id(id);
    consent.set_channel(channel);
    consent.set_granted(true);
    consent.set_source("settings");
    CallOk(profiles().get(), &Profiles::SetMarketingConsent, consent);
  }
  void SetNotificationSettings(const std::string& id, const v1::NotificationSettings& settings) {
    v1::UpdatePreferencesRequest req;
    req.set_customer_id(id);
    *req.mutable_preferences()->mutable_notifications() = settings;
    req.mutable_update_mask()->add_paths("notifications");
    CallOk(profiles().get(), &Profiles::UpdatePreferences, req);
  }
  void Deliver(const std::vector<v1::Event>& events) {
    auto sink = v1::EventSink::NewStub(h.channel());
    v1::DeliverEventsRequest req;
    for (const v1::Event& e : events) *req.add_events() = e;
    CallOk(sink.get(), &v1::EventSink::Stub::DeliverEvents, req);
  }
  v1::Event EventFor(const std::string& id, const std::string& event_id, absl::Time at) {
    v1::Event e;
    e.set_event_id(event_id);
    e.set_customer_id(id);
    e.set_producer("order-tracking");
    api::SetTimestamp(at, e.mutable_occur_time());
    return e;
  }
  std::vector<v1::Notification> NotificationsOf(const std::string& id) {
    auto agent = as(testing::ViaGateway(v1::ROLE_AGENT, "a7"));
    v1::ListNotificationsRequest list;
    list.set_customer_id(id);
    auto resp = CallOk(agent.get(), &Notices::ListNotifications, list);
    return {resp.notifications().begin(), resp.notifications().end()};
  }

  absl::FlagSaver flags;  // first: the flags come back after the service stops
  testing::ServiceHarness<customer_profile::CustomerProfileComponent> h;
};

v1::CampaignReport ReportOf(Notices* admin, const std::string& campaign_id) {
  v1::GetCampaignReportRequest req;
  req.set_campaign_id(campaign_id);
  return CallOk(admin, &Notices::GetCampaignReport, req);
}

}  // namespace

TEST_CASE(
    "a campaign reaches its audience through consent and the contact cap, holds out a control "
    "group, and counts what was sent, opened, clicked and bought") {
  testing::SmtpSink sink;
  INFO(sink.output());
  REQUIRE_OK(sink.Start());
  World w(sink, "00:00-00:00");
  auto admin = w.as(testing::ViaGateway(v1::ROLE_ADMIN, "ops-1"));
  v1::CreateCampaignRequest create;
  create.set_request_id("xmas-1");
  create.set_name("Christmas");
  create.set_channel(v1::CHANNEL_EMAIL);
  create.mutable_template_()->set_subject("{{campaign_name}} offers");
  create.mutable_template_()->set_body("Hello {{customer_name}}, our offers are here.");
  create.set_holdout_percent(20);
  // It starts in an hour, so its id (which the control group's draw hashes) is known before its
  // audience registers.
  api::SetTimestamp(w.h.clock().Now() + absl::Hours(1), create.mutable_start_time());
  const v1::Campaign campaign = CallOk(admin.get(), &Notices::CreateCampaign, create);
  CHECK(absl::StartsWith(campaign.campaign_id(), "cmp-"));
  CHECK(campaign.created_by() == "admin:ops-1");
  // A retry answers the same campaign; the same request id for another campaign is refused.
  CHECK(CallOk(admin.get(), &Notices::CreateCampaign, create).campaign_id() ==
        campaign.campaign_id());
  v1::CreateCampaignRequest other = create;
  other.set_name("Easter");
  testing::RequireError(StatusOf(admin.get(), &Notices::CreateCampaign, other),
                        grpc::StatusCode::INVALID_ARGUMENT, "request_id");
  v1::CreateCampaignRequest bad = create;
  bad.set_request_id("bad-1");
  bad.mutable_template_()->set_body("Your order {{order_id}}");
  testing::RequireError(StatusOf(admin.get(), &Notices::CreateCampaign, bad),
                        grpc::StatusCode::INVALID_ARGUMENT, "template.body");
  bad = create;
  bad.set_request_id("bad-2");
  bad.mutable_audience()->mutable_rfm_cell()->set_recency(9);
  testing::RequireError(StatusOf(admin.get(), &Notices::CreateCampaign, bad),
                        grpc::StatusCode::INVALID_ARGUMENT, "audience.rfm_cell.recency");
  auto agent = w.as(testing::ViaGateway(v1::ROLE_AGENT, "a7"));
  CHECK(StatusOf(agent.get(), &Notices::CreateCampaign, create).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
  v1::GetCampaignReportRequest agent_report;
  agent_report.set_campaign_id(campaign.campaign_id());
  CHECK(StatusOf(agent.get(), &Notices::GetCampaignReport, agent_report).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);

  // Three in four consent to e-mail. Registration mints customer ids at random, so customers are
  // added (20 at least) until the control group has one and someone who consented is treated.
  std::vector<std::string> ids;
  auto consents = [](size_t i) { return i % 4 != 3; };
  bool any_held_out = false, any_treated_consented = false;
  while (ids.size() < 20 || !any_held_out || !any_treated_consented) {
    REQUIRE(ids.size() < 200);
    const size_t i = ids.size();
    ids.push_back(w.Register(absl::StrCat("c", i, "@example.com"), absl::StrCat("Customer ", i)));
    if (consents(i)) w.Consent(ids.back(), v1::CHANNEL_EMAIL);
    const bool control = notifications::InControlGroup(campaign, ids.back());
    any_held_out |= control;
    any_treated_consented |= !control && consents(i);
  }
  const int audience = static_cast<int>(ids.size());
  auto profiles = w.profiles();
  v1::RefreshInsightsRequest refresh;
  CallOk(profiles.get(), &Profiles::RefreshInsights, refresh);
  w.h.clock().Advance(absl::Hours(1));

  v1::CampaignReport report;
  REQUIRE(testing::WaitUntil(
      [&] {
        report = ReportOf(admin.get(), campaign.campaign_id());
        return report.targeted() == audience && report.scheduled() == 0;
      },
      kPatience));
  CHECK(report.treated() + report.control() == audience);
  // Who is held out follows from a hash of campaign and customer: the same on every retry.
  int held_out = 0, held_out_consented = 0, consented = 0;
  std::string treated_consented, control_customer;
  for (int i = 0; i < audience; ++i) {
    const auto notices = w.NotificationsOf(ids[i]);
    REQUIRE(notices.size() == 1);
    const v1::Notification& n = notices[0];
    CHECK(n.kind() == v1::NOTIFICATION_KIND_CAMPAIGN);
    if (consents(i)) ++consented;
    CHECK((n.status() == v1::NOTIFICATION_STATUS_HELD_OUT) ==
          notifications::InControlGroup(campaign, ids[i]));
    if (n.status() == v1::NOTIFICATION_STATUS_HELD_OUT) {
      ++held_out;
      if (consents(i)) ++held_out_consented;
      control_customer = ids[i];
    } else if (consents(i)) {
      CHECK(n.status() == v1::NOTIFICATION_STATUS_SENT);
      CHECK(n.body() == absl::StrCat("Hello Customer ", i, ", our offers are here."));
      treated_consented = ids[i];
    } else {
      CHECK(n.status() == v1::NOTIFICATION_STATUS_SUPPRESSED);
      CHECK(n.status_reason() == "no marketing consent on the channel");
    }
  }
  REQUIRE(held_out > 0);
  REQUIRE(!treated_consented.empty());
  CHECK(report.control() == held_out);
  CHECK(report.sent() == consented - held_out_consented);
  CHECK(report.suppressed_no_consent() == (audience - consented) - (held_out - held_out_consented));
  const auto mails = sink.WaitForMessage(report.sent());
  CHECK(absl::StrContains(mails, "Subject: Christmas offers"));

  // The customer sees what was sent to them, and opens and clicks it once.
  auto customer = w.as(testing::CustomerCaller(treated_consented));
  v1::ListNotificationsRequest mine;
  mine.set_customer_id(treated_consented);
  const auto listed = CallOk(customer.get(), &Notices::ListNotifications, mine);
  REQUIRE(listed.notifications_size() == 1);
  v1::RecordEngagementRequest click;
  click.set_customer_id(treated_consented);
  click.set_notification_id(listed.notifications(0).notification_id());
  click.set_kind(v1::ENGAGEMENT_KIND_CLICKED);
  const auto clicked = CallOk(customer.get(), &Notices::RecordEngagement, click);
  CHECK(clicked.has_opened_time());
  CHECK(clicked.has_clicked_time());
  CallOk(customer.get(), &Notices::RecordEngagement, click);
  auto stranger = w.as(testing::CustomerCaller(control_customer));
  CHECK(StatusOf(stranger.get(), &Notices::RecordEngagement, click).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
  v1::ListNotificationsRequest theirs;
  theirs.set_customer_id(control_customer);
  CHECK(CallOk(stranger.get(), &Notices::ListNotifications, theirs).notifications_size() == 0);

  // Orders inside the conversion window count, for the treated and the control group alike.
  const absl::Time now = w.h.clock().Now();
  auto order = [&](const std::string& id, const std::string& order_id, absl::Time at) {
    v1::Event e = w.EventFor(id, "order-tracking/0/" + order_id, at);
    e.mutable_order_placed()->set_order_id(order_id);
    return e;
  };
  w.Deliver({order(treated_consented, "o1", now + absl::Hours(1)),
             order(treated_consented, "o2", now + absl::Hours(2)),
             order(control_customer, "o3", now + absl::Hours(24 * 8))});
  report = ReportOf(admin.get(), campaign.campaign_id());
  CHECK(report.opened() == 1);
  CHECK(report.clicked() == 1);
  CHECK(report.converted() == 1);
  CHECK(report.control_converted() == 0);  // 8 days on: past the 7-day window
  // An order placed inside the window whose event arrives after that later one's still counts.
  w.Deliver({order(control_customer, "o4", now + absl::Hours(3))});
  report = ReportOf(admin.get(), campaign.campaign_id());
  CHECK(report.control_converted() == 1);

  w.h.Restart();
  auto again = w.as(testing::ViaGateway(v1::ROLE_ADMIN, "ops-1"));
  CHECK(ReportOf(again.get(), campaign.campaign_id()).sent() == report.sent());
}

TEST_CASE(
    "order updates wait out quiet hours, follow the customer's choices and go once per event, and "
    "reminders are marketing") {
  testing::SmtpSink sink;
  REQUIRE_OK(sink.Start());
  World w(sink, "21:00-08:00");  // in Asia/Shanghai, the default zone
  // 22:00 in Shanghai: quiet.
  w.h.clock().Set(absl::FromUnixSeconds(1767276000));  // 2026-01-01T14:00:00Z
  const std::string quiet = w.Register("quiet@example.com", "Quiet");
  const std::string muted = w.Register("muted@example.com", "Muted");
  const std::string london = w.Register("london@example.com", "London");
  v1::NotificationSettings off;
  off.set_order_updates_off(true);
  w.SetNotificationSettings(muted, off);
  v1::NotificationSettings own;
  own.set_time_zone("Europe/London");  // 14:00 there
  w.SetNotificationSettings(london, own);
  v1::NotificationSettings bad;
  bad.set_time_zone("Mars/Olympus");
  v1::UpdatePreferencesRequest req;
  req.set_customer_id(london);
  *req.mutable_preferences()->mutable_notifications() = bad;
  req.mutable_update_mask()->add_paths("notifications");
  testing::RequireError(StatusOf(w.profiles().get(), &Profiles::UpdatePreferences, req),
                        grpc::StatusCode::INVALID_ARGUMENT, "preferences.notifications.time_zone");

  const absl::Time now = w.h.clock().Now();
  auto shipped = [&](const std::string& id, const std::string& event_id, absl::Time at) {
    v1::Event e = w.EventFor(id, event_id, at);
    auto* s = e.mutable_shipment_updated();
    s->set_order_id("o-" + id.substr(0, 6));
    s->set_package_id("p1");
    s->set_stage(v1::SHIPMENT_STAGE_SHIPPED);
    s->set_carrier("SF Express");
    s->set_tracking_number("SF123");
    return e;
  };
  w.Deliver({shipped(quiet, "order-tracking/0/1", now), shipped(muted, "order-tracking/0/2", now),
             shipped(london, "order-tracking/0/3", now),
             shipped(quiet, "order-tracking/0/1", now),  // the same event again
             shipped(london, "order-tracking/0/4", now - absl::Hours(48))});  // stale

  const std::string first = sink.WaitForMessage(1);
  CHECK(absl::StrContains(sink.Envelope(1), "london@example.com"));
  auto quiet_notices = w.NotificationsOf(quiet);
  REQUIRE(quiet_notices.size() == 1);
  CHECK(quiet_notices[0].status() == v1::NOTIFICATION_STATUS_SCHEDULED);
  // 08:00 in Shanghai the next morning.
  CHECK(api::FromTimestamp(quiet_notices[0].send_after()) == absl::FromUnixSeconds(1767312000));
  CHECK(quiet_notices[0].subject() == "您的订单已发货");
  auto muted_notices = w.NotificationsOf(muted);
  REQUIRE(muted_notices.size() == 1);
  CHECK(muted_notices[0].status() == v1::NOTIFICATION_STATUS_SUPPRESSED);
  CHECK(w.NotificationsOf(london).size() == 1);  // the stale event told nobody
  // The customer does not see a suppressed notice.
  auto muted_self = w.as(testing::CustomerCaller(muted));
  v1::ListNotificationsRequest mine;
  mine.set_customer_id(muted);
  CHECK(CallOk(muted_self.get(), &Notices::ListNotifications, mine).notifications_size() == 0);

  w.h.clock().Set(absl::FromUnixSeconds(1767312000));
  sink.WaitForMessage(2);
  CHECK(absl::StrContains(sink.Envelope(2), "quiet@example.com"));
  REQUIRE(testing::WaitUntil(
      [&] { return w.NotificationsOf(quiet)[0].status() == v1::NOTIFICATION_STATUS_SENT; },
      kPatience));

  // Reminders are marketing: consent decides, and push has no sender configured here.
  const std::string pushed = w.Register("push@example.com", "Push");
  w.Consent(pushed, v1::CHANNEL_PUSH);
  auto reminder = [&](const std::string& id, const std::string& event_id) {
    v1::Event e = w.EventFor(id, event_id, w.h.clock().Now());
    e.set_producer("recommendation");
    auto* r = e.mutable_reminder_due();
    r->set_kind(v1::REMINDER_KIND_OCCASION);
    r->set_sku("FLOWERS-1");
    r->set_title("Roses");
    r->set_reason("you bought flowers around this date last year");
    return e;
  };
  w.Deliver({reminder(pushed, "recommendation/0/1"), reminder(quiet, "recommendation/0/2")});
  REQUIRE(testing::WaitUntil(
      [&] {
        auto n = w.NotificationsOf(pushed);
        return n.size() == 1 && n[0].status() == v1::NOTIFICATION_STATUS_FAILED;
      },
      kPatience));
  const auto pushed_notice = w.NotificationsOf(pushed)[0];
  CHECK(pushed_notice.channel() == v1::CHANNEL_PUSH);
  CHECK(pushed_notice.status_reason() == "no sender is configured for CHANNEL_PUSH");
  CHECK(absl::StrContains(pushed_notice.body(), "Roses"));
  // The sweep finds the occasion due again the next day: the customer is not told twice.
  w.h.clock().Advance(absl::Hours(24));
  w.Deliver({reminder(pushed, "recommendation/0/3")});
  CHECK(w.NotificationsOf(pushed).size() == 1);
  auto quiet_now = w.NotificationsOf(quiet);
  REQUIRE(quiet_now.size() == 2);
  CHECK(quiet_now[0].kind() == v1::NOTIFICATION_KIND_REMINDER);  // newest first
  CHECK(quiet_now[0].status() == v1::NOTIFICATION_STATUS_SUPPRESSED);

  v1::EraseCustomerRequest erase;
  erase.set_customer_id(quiet);
  erase.set_request_id("e1");
  erase.set_reason("test");
  CallOk(w.profiles().get(), &Profiles::EraseCustomer, erase);
  CHECK(w.NotificationsOf(quiet).empty());
}

}  // namespace crm
