// crm.v1.NotificationService, served by the process that owns consent, contact data and the
// contact cap (customer-profile):
//   - campaigns: each shard walks its customers in the campaign's audience (RunCampaigns), holds a
//     random share out as the control group and schedules the message to the rest, through consent
//     on the campaign's channel and the contact cap;
//   - order updates (ShipmentUpdated, OrderDelivered) and reminders (ReminderDue) become
//     notifications in the serving process's event transaction (OnEvent);
//   - every notification waits out the customer's quiet hours, then DeliverDue hands it to the
//     channel's Sender, retrying with backoff;
//   - opens and clicks (RecordEngagement) and orders (OrderPlaced within the conversion window) are
//     counted back to the campaign, for the treated and the control group alike.
//
// This library does not know customer-profile: reading customers, the marketing contact decision
// (which records the contact against the cap) and the audience come in as a CustomerAccess the
// serving process implements on its own store, in the same transaction.
//
// Thread-safe. RunCampaigns and DeliverDue are meant for one periodic thread each.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/v1/customer_profile.pb.h"
#include "crm/v1/events.pb.h"
#include "crm/v1/notifications.grpc.pb.h"
#include "libs/clock/clock.h"
#include "libs/events/subscription.h"
#include "libs/notify/sender.h"
#include "libs/rpc/executor.h"
#include "libs/store/store.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "services/notifications/notification_store.h"
#include "services/notifications/send_policy.h"

namespace crm::notifications {

// How a due notification's delivery ended: without an attempt (and why), or with the sender's
// answer.
struct DeliveryEnd {
  enum class Kind { kAttempted, kCampaignCancelled, kConsentWithdrawn, kNoSender, kNoAddress };
  Kind kind = Kind::kAttempted;
  notify::SendResult answer;
  // The customer's, for when a retry may go.
  v1::NotificationSettings settings;
};

// A marketing contact's outcome: the decision, and the channel it was decided on.
struct MarketingContact {
  v1::ContactDecision decision;
  v1::Channel channel = v1::CHANNEL_UNSPECIFIED;
};

// A page of an audience: customer ids in id order.
struct AudiencePage {
  // False while the audience is not computed yet (the serving process just started).
  bool ready = false;
  std::vector<std::string> customer_ids;
  // The last customer id looked at; empty when the audience has no more.
  std::string continue_after;
};

struct CustomerAccess {
  // The customer, locked until `txn` ends; NOT_FOUND when unknown (or erased).
  std::function<absl::StatusOr<v1::Customer>(store::Transaction& txn,
                                             absl::string_view customer_id)>
      lock_customer;
  // Tries `channels` in order: the first one with consent and room under the cap is recorded as a
  // contact for `purpose` in `txn`. Not allowed: the most telling refusal (the cap over no
  // consent).
  std::function<absl::StatusOr<MarketingContact>(
      store::Transaction& txn, absl::string_view customer_id,
      const std::vector<v1::Channel>& channels, absl::string_view purpose, absl::Time now)>
      contact;
  // INVALID_ARGUMENT naming the field ("audience.rfm_cell.recency") for a bad filter.
  std::function<absl::Status(const v1::AudienceFilter& filter)> validate_audience;
  // Up to `limit` customers of the audience after `after` (their consent checked now).
  std::function<absl::StatusOr<AudiencePage>(const v1::AudienceFilter& filter,
                                             absl::string_view after, int limit)>
      audience;
};

struct NotificationOptions {
  QuietHoursDefaults quiet;
  // Channel -> its sender; a channel without one fails its notifications with that reason.
  std::map<v1::Channel, std::shared_ptr<notify::Sender>> senders;
  // Attempts before a notification the sender keeps refusing for now is FAILED.
  int max_attempts = 8;
};

class NotificationService final : public v1::NotificationService::CallbackService {
 public:
  // Not owned; all must outlive the service.
  NotificationService(NotificationStore* store, CustomerAccess customers,
                      NotificationOptions options, Clock* clock, rpc::Executor* writes,
                      prometheus::Registry& registry);

  // The events OnEvent acts on.
  static events::Subscription EventsHandled() {
    using E = events::Subscription::EventType;
    return {E::kShipmentUpdated, E::kOrderDelivered, E::kReminderDue, E::kOrderPlaced};
  }
  // An event the serving process consumes, inside its transaction: ShipmentUpdated and
  // OrderDelivered (order updates), ReminderDue (reminders), OrderPlaced (conversions); others are
  // ignored.
  absl::Status OnEvent(store::Transaction& txn, const v1::Event& event);

  // Walks the audiences of started campaigns, at most `budget` customers in all. Returns how many
  // customers it reached.
  absl::StatusOr<int> RunCampaigns(int budget);
  // Delivers up to `limit` notifications due now. Returns how many were handed to a sender.
  absl::StatusOr<int> DeliverDue(int limit);

  using Ctx = grpc::CallbackServerContext;
  using Reactor = grpc::ServerUnaryReactor;
  Reactor* CreateCampaign(Ctx*, const v1::CreateCampaignRequest*, v1::Campaign*) override;
  Reactor* CancelCampaign(Ctx*, const v1::CancelCampaignRequest*, v1::Campaign*) override;
  Reactor* GetCampaign(Ctx*, const v1::GetCampaignRequest*, v1::Campaign*) override;
  Reactor* GetCampaignReport(Ctx*, const v1::GetCampaignReportRequest*,
                             v1::CampaignReport*) override;
  Reactor* ListNotifications(Ctx*, const v1::ListNotificationsRequest*,
                             v1::ListNotificationsResponse*) override;
  Reactor* RecordEngagement(Ctx*, const v1::RecordEngagementRequest*, v1::Notification*) override;

 private:
  struct Metrics {
    explicit Metrics(prometheus::Registry& registry);
    prometheus::Family<prometheus::Counter>& notifications;
    prometheus::Family<prometheus::Counter>& deliveries;
    prometheus::Family<prometheus::Counter>& engagements;
    prometheus::Gauge& due;
  };
  // What a new notification is: kind, reference, message and where it may go.
  struct Draft {
    v1::NotificationKind kind = v1::NOTIFICATION_KIND_UNSPECIFIED;
    std::string campaign_id;
    std::string reference;
    std::string subject;
    std::string body;
  };

  absl::StatusOr<v1::Campaign> Create(const v1::CreateCampaignRequest& req,
                                      const std::string& campaign_id, const std::string& actor,
                                      uint64_t fingerprint, absl::Time now);
  // One customer of a campaign's audience, once.
  absl::Status Reach(store::Transaction& txn, const v1::Campaign& campaign,
                     const std::string& customer_id, absl::Time now);
  // Walks one campaign; returns the customers reached.
  absl::StatusOr<int> RunCampaign(const internal::CampaignRecord& record, int budget,
                                  absl::Time now);
  absl::Status OnShipment(store::Transaction& txn, const v1::Event& event);
  absl::Status OnReminder(store::Transaction& txn, const v1::Event& event);
  absl::Status OnOrderPlaced(store::Transaction& txn, const v1::Event& event);
  // A service message on each of the customer's order-update channels, once per event.
  absl::Status NotifyOrderUpdate(store::Transaction& txn, const v1::Event& event,
                                 const std::map<std::string, std::string>& values,
                                 absl::string_view order_id, absl::string_view what);
  // The notification for `source`, scheduled past quiet hours, or suppressed with `reason`.
  v1::Notification Make(const v1::Customer& customer, const std::string& source,
                        v1::Channel channel, Draft draft, absl::Time now) const;
  // Whether a campaign is cancelled, as read during one delivery pass.
  using CancelledCampaigns = absl::flat_hash_map<std::string, bool>;
  // One delivery attempt of a due notification.
  absl::Status Deliver(const NotificationStore::Due& due, absl::Time now,
                       CancelledCampaigns& cancelled);
  // The campaign `campaign_id` names, for an admin caller (PERMISSION_DENIED otherwise).
  absl::StatusOr<internal::CampaignRecord> AdminReads(const grpc::ServerContextBase& ctx,
                                                      absl::string_view campaign_id) const;
  // Records how a due notification's delivery ended.
  absl::Status Settle(const v1::Notification& sent, const DeliveryEnd& end, absl::Time now);
  void Count(store::Transaction& txn, const v1::Notification& n, absl::string_view result);

  NotificationStore* const store_;
  const CustomerAccess customers_;
  const NotificationOptions options_;
  Clock* const clock_;
  rpc::Executor* const writes_;
  Metrics metrics_;
};

}  // namespace crm::notifications
