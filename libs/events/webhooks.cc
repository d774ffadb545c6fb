#include "libs/events/webhooks.h"

#include <algorithm>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/protobuf/descriptor.h"
#include "libs/api/validate.h"
#include "libs/auth/internal_keys.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "libs/store/key.h"

ABSL_FLAG(std::string, webhook_allowed_hosts, "",
          "hosts webhook URLs may name, comma-separated (empty: webhooks refused)");
ABSL_FLAG(int, webhook_max_subscriptions, 50, "most live webhook subscriptions on this service");

namespace crm::events {
namespace {

constexpr absl::string_view kWebhookIdPurpose = "crm webhook id v1";
constexpr absl::string_view kWebhookSecretPurpose = "crm webhook secret v1";
constexpr size_t kDescriptionChars = 200;

std::string RecordKey(absl::string_view id) { return store::Key().Str("webhook").Str(id).Build(); }
std::string SigningKeyKey(absl::string_view id) {
  return store::Key().Str("webhook_key").Str(id).Build();
}

const google::protobuf::OneofDescriptor& Payload() {
  return *v1::Event::descriptor()->FindOneofByName("payload");
}

std::string EventTypeNames() {
  std::vector<std::string> names;
  for (int i = 0; i < Payload().field_count(); ++i) names.push_back(Payload().field(i)->name());
  return absl::StrJoin(names, ", ");
}

bool SameSubscription(const v1::Webhook& stored, const v1::CreateWebhookRequest& request) {
  return stored.url() == request.url() &&
         std::equal(stored.event_types().begin(), stored.event_types().end(),
                    request.event_types().begin(), request.event_types().end()) &&
         stored.description() == request.description();
}

// True when `request` is a retry of the one that made webhook `id` (among `stored`), false when
// no such webhook exists yet; a request_id whose webhook was deleted or made otherwise is refused.
absl::StatusOr<bool> MadeBefore(const std::vector<v1::Webhook>& stored, const std::string& id,
                                const v1::CreateWebhookRequest& request) {
  for (const v1::Webhook& w : stored) {
    if (w.webhook_id() != id) continue;
    if (w.has_delete_time()) {
      return absl::FailedPreconditionError(absl::StrCat("request_id: it made webhook ", id,
                                                        ", since deleted; use a new request_id"));
    }
    if (!SameSubscription(w, request)) {
      return api::Invalid("request_id", absl::StrCat("already made webhook ", id,
                                                     " with another url, event_types or "
                                                     "description"));
    }
    return true;
  }
  return false;
}

}  // namespace

WebhookOptions WebhookOptionsFromFlags() {
  WebhookOptions options;
  for (absl::string_view host :
       absl::StrSplit(absl::GetFlag(FLAGS_webhook_allowed_hosts), ',', absl::SkipWhitespace())) {
    host = absl::StripAsciiWhitespace(host);
    absl::ConsumePrefix(&host, "[");
    absl::ConsumeSuffix(&host, "]");
    if (!host.empty()) options.allowed_hosts.push_back(absl::AsciiStrToLower(host));
  }
  options.max_subscriptions = absl::GetFlag(FLAGS_webhook_max_subscriptions);
  return options;
}

absl::Status ValidateEventTypes(absl::string_view field,
                                const google::protobuf::RepeatedPtrField<std::string>& names) {
  for (int i = 0; i < names.size(); ++i) {
    const auto* f = v1::Event::descriptor()->FindFieldByName(names[i]);
    if (f == nullptr || f->containing_oneof() != &Payload()) {
      return api::Invalid(
          absl::StrCat(field, "[", i, "]"),
          absl::StrCat("\"", names[i], "\" is not an event type; one of ", EventTypeNames()));
    }
  }
  return absl::OkStatus();
}

Webhooks::Webhooks(Outbox* outbox, Dispatcher* dispatcher, Clock* clock, WebhookOptions options)
    : outbox_(outbox),
      store_(outbox->store()),
      dispatcher_(dispatcher),
      clock_(clock),
      options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<Webhooks>> Webhooks::Open(Outbox* outbox, Dispatcher* dispatcher,
                                                         Clock* clock, WebhookOptions options) {
  std::unique_ptr<Webhooks> w(new Webhooks(outbox, dispatcher, clock, std::move(options)));
  CRM_ASSIGN_OR_RETURN(const std::vector<v1::Webhook> stored, w->Stored());
  for (const v1::Webhook& webhook : stored) {
    if (webhook.has_delete_time()) continue;
    auto target = w->TargetOf(webhook);
    if (!target.ok()) return target.status();
    if (const std::string why = w->Disallowed((*target)->url); !why.empty()) {
      log::Error("webhook not delivered to",
                 {{"webhook_id", webhook.webhook_id()}, {"url", webhook.url()}, {"reason", why}});
      continue;
    }
    dispatcher->AddWebhook(*std::move(target));
  }
  return w;
}

std::string Webhooks::Disallowed(const WebhookUrl& url) const {
  if (std::find(options_.allowed_hosts.begin(), options_.allowed_hosts.end(), url.host) !=
      options_.allowed_hosts.end()) {
    return "";
  }
  return absl::StrCat("host ", url.host, " is not in this service's --webhook_allowed_hosts");
}

absl::StatusOr<std::shared_ptr<const WebhookTarget>> Webhooks::TargetOf(
    const v1::Webhook& webhook) const {
  CRM_ASSIGN_OR_RETURN(WebhookUrl url, ParseWebhookUrl("url", webhook.url()));
  CRM_ASSIGN_OR_RETURN(
      auto key, store_->Get(store_->cf(Outbox::kMetaFamily), SigningKeyKey(webhook.webhook_id())));
  if (!key.has_value()) {
    return absl::DataLossError(
        absl::StrCat("webhook ", webhook.webhook_id(), ": its signing key is not stored"));
  }
  v1::Subscription types;
  *types.mutable_event_types() = webhook.event_types();
  return std::make_shared<const WebhookTarget>(WebhookTarget{
      webhook.webhook_id(), std::move(url), *std::move(key),
      webhook.event_types().empty() ? Subscription::All() : Subscription::FromProto(types)});
}

absl::StatusOr<std::vector<v1::Webhook>> Webhooks::Stored() const {
  std::vector<v1::Webhook> out;
  absl::Status parse;
  CRM_RETURN_IF_ERROR(
      store_->ScanPrefix(store_->cf(Outbox::kMetaFamily), store::Key().Str("webhook").Build(),
                         [&](absl::string_view, absl::string_view v) {
                           v1::Webhook w;
                           if (!w.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
                             parse = absl::DataLossError("a stored webhook does not parse");
                             return false;
                           }
                           out.push_back(std::move(w));
                           return true;
                         }));
  if (!parse.ok()) return parse;
  return out;
}

absl::Status Webhooks::CheckCreateRequest(const v1::CreateWebhookRequest& request) const {
  CRM_RETURN_IF_ERROR(api::RequiredRequestId(request.request_id()));
  if (options_.allowed_hosts.empty()) {
    return absl::FailedPreconditionError(
        "webhooks are off on this service: its --webhook_allowed_hosts is empty (the operator "
        "lists there the hosts webhooks may call)");
  }
  CRM_ASSIGN_OR_RETURN(const WebhookUrl url, ParseWebhookUrl("url", request.url()));
  if (const std::string why = Disallowed(url); !why.empty()) return api::Invalid("url", why);
  CRM_RETURN_IF_ERROR(ValidateEventTypes("event_types", request.event_types()));
  return api::OptionalText("description", request.description(), kDescriptionChars);
}

absl::Status Webhooks::StoreAndDeliver(const v1::Webhook& webhook, const std::string& signing_key) {
  const std::string& id = webhook.webhook_id();
  rocksdb::WriteBatch batch;
  auto* cf = store_->cf(Outbox::kMetaFamily);
  batch.Put(cf, RecordKey(id), webhook.SerializeAsString());
  batch.Put(cf, SigningKeyKey(id), signing_key);
  dispatcher_->PutWebhookCursor(batch, id);
  CRM_RETURN_IF_ERROR(store_->Write(&batch, store::Durability::kSynced));
  CRM_ASSIGN_OR_RETURN(auto target, TargetOf(webhook));
  dispatcher_->AddWebhook(std::move(target));
  return absl::OkStatus();
}

absl::StatusOr<v1::CreateWebhookResponse> Webhooks::Create(
    const v1::CreateWebhookRequest& request) {
  CRM_RETURN_IF_ERROR(CheckCreateRequest(request));

  // The same on every shard and for every retry: see the header.
  const std::string seed = absl::StrCat(outbox_->producer(), "\n", request.request_id());
  const auto keys = auth::InternalKeys::Current();
  const std::string id =
      absl::StrCat("wh_", absl::BytesToHexString(keys->Mac(kWebhookIdPurpose, seed).substr(0, 10)));
  const std::string signing_key = keys->Mac(kWebhookSecretPurpose, seed);
  v1::CreateWebhookResponse response;
  response.set_webhook_id(id);
  response.set_secret(WebhookSecretFromKey(signing_key));

  absl::MutexLock lock(&mu_);
  CRM_ASSIGN_OR_RETURN(const std::vector<v1::Webhook> stored, Stored());
  CRM_ASSIGN_OR_RETURN(const bool retry, MadeBefore(stored, id, request));
  if (retry) return response;
  const int live = static_cast<int>(std::count_if(
      stored.begin(), stored.end(), [](const v1::Webhook& w) { return !w.has_delete_time(); }));
  if (live >= options_.max_subscriptions) {
    return absl::FailedPreconditionError(
        absl::StrCat("this service has ", live,
                     " webhooks, the most its --webhook_max_subscriptions allows; delete one"));
  }
  v1::Webhook webhook;
  webhook.set_webhook_id(id);
  webhook.set_url(request.url());
  *webhook.mutable_event_types() = request.event_types();
  webhook.set_description(request.description());
  api::SetTimestamp(clock_->Now(), webhook.mutable_create_time());
  CRM_RETURN_IF_ERROR(StoreAndDeliver(webhook, signing_key));
  log::Info("webhook created", {{"webhook_id", id}, {"url", request.url()}});
  return response;
}

absl::StatusOr<v1::ListWebhooksResponse> Webhooks::List() const {
  CRM_ASSIGN_OR_RETURN(const std::vector<v1::Webhook> stored, Stored());
  v1::ListWebhooksResponse out;
  for (const v1::Webhook& w : stored) {
    if (w.has_delete_time()) continue;
    v1::Webhook* listed = out.add_webhooks();
    *listed = w;
    auto url = ParseWebhookUrl("url", w.url());
    listed->set_disabled_reason(url.ok() ? Disallowed(*url) : std::string(url.status().message()));
  }
  return out;
}

absl::Status Webhooks::Delete(absl::string_view webhook_id) {
  CRM_RETURN_IF_ERROR(api::RequiredId("webhook_id", webhook_id));
  absl::MutexLock lock(&mu_);
  auto* cf = store_->cf(Outbox::kMetaFamily);
  v1::Webhook webhook;
  CRM_ASSIGN_OR_RETURN(const bool found, store_->GetProto(cf, RecordKey(webhook_id), &webhook));
  if (!found) {
    return absl::NotFoundError(absl::StrCat("webhook_id: no webhook \"", webhook_id, "\""));
  }
  if (webhook.has_delete_time()) return absl::OkStatus();
  // The lane first: nothing is POSTed once this call returns.
  dispatcher_->RemoveWebhook(std::string(webhook_id));
  api::SetTimestamp(clock_->Now(), webhook.mutable_delete_time());
  rocksdb::WriteBatch batch;
  batch.Put(cf, RecordKey(webhook_id), webhook.SerializeAsString());
  batch.Delete(cf, SigningKeyKey(webhook_id));
  dispatcher_->RemoveWebhookCursor(batch, std::string(webhook_id));
  CRM_RETURN_IF_ERROR(store_->Write(&batch, store::Durability::kSynced));
  log::Info("webhook deleted", {{"webhook_id", std::string(webhook_id)}});
  return absl::OkStatus();
}

}  // namespace crm::events
