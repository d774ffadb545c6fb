// Outside systems' subscriptions to one producer's events (crm.v1.EventAdminService's
// CreateWebhook, ListWebhooks, DeleteWebhook), kept in the producer's own store beside its outbox
// (keys under "webhook" in the outbox's meta family) and delivered by its Dispatcher, one lane
// each.
//
// --webhook_allowed_hosts (env CRM_WEBHOOK_ALLOWED_HOSTS): the hosts a webhook URL may name,
// comma-separated, compared exactly (lower case; an IPv6 address without brackets). Empty, the
// default, refuses every webhook: a service that POSTs wherever an admin says could otherwise be
// aimed at internal addresses (metadata endpoints, other services' ports). A subscription whose
// host leaves the list is not delivered to after the next start (ListWebhooks says why).
// --webhook_max_subscriptions (default 50) bounds the live subscriptions, hence the lanes' threads
// and the metrics' series.
//
// A webhook's id and secret are derived from the request_id under the deployment's internal key
// (auth::InternalKeys), so every shard of a sharded producer, each asked by the gateway, makes the
// same webhook with the same secret, and a retry returns them again.
//
// Thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "crm/v1/events.pb.h"
#include "libs/clock/clock.h"
#include "libs/events/dispatcher.h"
#include "libs/events/outbox.h"

ABSL_DECLARE_FLAG(std::string, webhook_allowed_hosts);
ABSL_DECLARE_FLAG(int, webhook_max_subscriptions);

namespace crm::events {

struct WebhookOptions {
  // Lower case host names or addresses.
  std::vector<std::string> allowed_hosts;
  int max_subscriptions = 50;
};

WebhookOptions WebhookOptionsFromFlags();

// INVALID_ARGUMENT naming `field` (e.g. "event_types[1]") unless every name is a payload field of
// crm.v1.Event.
absl::Status ValidateEventTypes(absl::string_view field,
                                const google::protobuf::RepeatedPtrField<std::string>& names);

class Webhooks {
 public:
  // Reads the stored subscriptions and gives `dispatcher` a lane for each one still allowed.
  static absl::StatusOr<std::unique_ptr<Webhooks>> Open(Outbox* outbox, Dispatcher* dispatcher,
                                                        Clock* clock, WebhookOptions options);

  absl::StatusOr<v1::CreateWebhookResponse> Create(const v1::CreateWebhookRequest& request);
  absl::StatusOr<v1::ListWebhooksResponse> List() const;
  absl::Status Delete(absl::string_view webhook_id);

 private:
  Webhooks(Outbox* outbox, Dispatcher* dispatcher, Clock* clock, WebhookOptions options);
  // Empty when `url`'s host is allowed, else why not.
  std::string Disallowed(const WebhookUrl& url) const;
  absl::StatusOr<std::shared_ptr<const WebhookTarget>> TargetOf(const v1::Webhook& webhook) const;
  absl::StatusOr<std::vector<v1::Webhook>> Stored() const;
  // CreateWebhook's checks of the request alone, before its webhook id is derived.
  absl::Status CheckCreateRequest(const v1::CreateWebhookRequest& request) const;
  // One synced write of the record, its signing key and its delivery cursor, then its lane.
  absl::Status StoreAndDeliver(const v1::Webhook& webhook, const std::string& signing_key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Outbox* const outbox_;
  store::Store* const store_;
  Dispatcher* const dispatcher_;
  Clock* const clock_;
  const WebhookOptions options_;
  // Serializes changes (a check of the request_id and the write that follows).
  absl::Mutex mu_;
};

}  // namespace crm::events
