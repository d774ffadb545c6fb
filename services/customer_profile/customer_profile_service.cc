#include "services/customer_profile/customer_profile_service.h"

#include <algorithm>
#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/api/paging.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/behavior/interest.h"
#include "libs/log/log.h"
#include "libs/metrics/families.h"
#include "libs/rpc/caller_auth.h"
#include "libs/rpc/handler.h"
#include "libs/rpc/unary.h"
#include "libs/sharding/shard_map.h"
#include "libs/store/idempotency.h"
#include "services/customer_profile/contact_policy.h"
#include "services/customer_profile/profile_rules.h"
#include "services/notifications/send_policy.h"

namespace crm::customer_profile {
namespace {

using api::Invalid;
using rpc::Finish;
using rpc::FinishOn;

constexpr absl::Duration kMaxEventAge = absl::Hours(24 * 30);
constexpr absl::Duration kClockSkew = absl::Minutes(5);

// The customer as the store saves it, update time included: the answer of a call that returns the
// whole customer.
void AnswerCustomer(const v1::Customer& c, absl::Time now, v1::Customer* resp) {
  *resp = c;
  api::SetTimestamp(now, resp->mutable_update_time());
}

absl::Status ValidateChannel(absl::string_view field, v1::Channel channel) {
  if (channel == v1::CHANNEL_UNSPECIFIED || !v1::Channel_IsValid(channel)) {
    return Invalid(field, "must be EMAIL, SMS or PUSH");
  }
  return absl::OkStatus();
}

absl::Status ValidateCustomerFields(const v1::Customer& c,
                                    const google::protobuf::RepeatedPtrField<std::string>& paths,
                                    absl::Time now) {
  for (const std::string& p : paths) {
    if (p == "name") {
      CRM_RETURN_IF_ERROR(api::OptionalText("customer.name", c.name(), kMaxNameChars));
    } else if (p == "phone") {
      CRM_RETURN_IF_ERROR(ValidatePhone("customer.phone", c.phone()));
    } else if (p == "birthday") {
      CRM_RETURN_IF_ERROR(ValidateBirthday("customer.birthday", c.birthday(), now));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidatePreferences(const v1::Preferences& p,
                                 const google::protobuf::RepeatedPtrField<std::string>& paths) {
  for (const std::string& path : paths) {
    if (path == "preferred_delivery_window") {
      const auto& w = p.preferred_delivery_window();
      if (w.start_minute() < 0 || w.end_minute() > 1440 || w.start_minute() >= w.end_minute()) {
        return Invalid("preferences.preferred_delivery_window",
                       "needs 0 <= start_minute < end_minute <= 1440 (minutes since midnight)");
      }
    } else if (path == "language") {
      const std::string& l = p.language();
      const bool ok =
          l.empty() ||
          (l.size() >= 2 && l.size() <= 35 && std::all_of(l.begin(), l.end(), [](char c) {
             return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-';
           }));
      if (!ok)
        return Invalid("preferences.language", "must be a BCP 47 language tag such as zh-CN or en");
    } else if (path == "settings") {
      if (p.settings_size() > 50)
        return Invalid("preferences.settings", "holds at most 50 settings");
      for (const auto& [k, v] : p.settings()) {
        CRM_RETURN_IF_ERROR(api::RequiredId("preferences.settings key", k));
        CRM_RETURN_IF_ERROR(
            api::OptionalText(absl::StrCat("preferences.settings[", k, "]"), v, 500));
      }
    } else if (path == "contact_cap") {
      const auto& cap = p.contact_cap();
      const bool unset = cap.max_contacts() == 0 && cap.period_days() == 0;
      if (!unset && (cap.max_contacts() < 1 || cap.max_contacts() > 100 || cap.period_days() < 1 ||
                     cap.period_days() > 365)) {
        return Invalid(
            "preferences.contact_cap",
            "needs max_contacts 1-100 and period_days 1-365 (both 0 restores the default)");
      }
    } else if (path == "notifications") {
      CRM_RETURN_IF_ERROR(notifications::ValidateNotificationSettings("preferences.notifications",
                                                                      p.notifications()));
    }
  }
  return absl::OkStatus();
}

void ApplyPreferences(v1::Preferences& target, const v1::Preferences& update,
                      const google::protobuf::RepeatedPtrField<std::string>& paths) {
  for (const std::string& path : paths) {
    if (path == "preferred_delivery_window")
      *target.mutable_preferred_delivery_window() = update.preferred_delivery_window();
    if (path == "language") target.set_language(update.language());
    if (path == "settings") *target.mutable_settings() = update.settings();
    if (path == "contact_cap") *target.mutable_contact_cap() = update.contact_cap();
    if (path == "notifications") *target.mutable_notifications() = update.notifications();
  }
}

// Checks one behaviour event and resolves its time (unset means now).
absl::Status ValidateBehaviorEvent(const std::string& f, v1::BehaviorEvent& e, absl::Time now) {
  using T = v1::BehaviorEventType;
  const T type = e.type();
  if (type == v1::BEHAVIOR_EVENT_TYPE_UNSPECIFIED || !v1::BehaviorEventType_IsValid(type)) {
    return Invalid(f + ".type", "must be CATEGORY_CLICK, ITEM_VIEW, SEARCH or ADD_TO_CART");
  }
  const bool needs_category = type != v1::BEHAVIOR_EVENT_TYPE_SEARCH;
  const bool needs_sku =
      type == v1::BEHAVIOR_EVENT_TYPE_ITEM_VIEW || type == v1::BEHAVIOR_EVENT_TYPE_ADD_TO_CART;
  if (auto s = needs_category ? api::RequiredText(f + ".category", e.category(), 100)
                              : api::OptionalText(f + ".category", e.category(), 100);
      !s.ok()) {
    return s;
  }
  if (auto s = needs_sku ? api::RequiredText(f + ".sku", e.sku(), 64)
                         : api::OptionalText(f + ".sku", e.sku(), 64);
      !s.ok()) {
    return s;
  }
  if (type == v1::BEHAVIOR_EVENT_TYPE_SEARCH) {
    CRM_RETURN_IF_ERROR(api::RequiredText(f + ".query", e.query(), 200));
  } else if (!e.query().empty()) {
    return Invalid(f + ".query", "applies to searches only");
  }
  if (e.dwell_seconds() < 0 || e.dwell_seconds() > 86400)
    return Invalid(f + ".dwell_seconds", "must be 0-86400");
  if (e.has_occur_time()) {
    CRM_ASSIGN_OR_RETURN(auto t, api::ToTime(f + ".occur_time", e.occur_time()));
    if (t > now + kClockSkew) return Invalid(f + ".occur_time", "is in the future");
    if (t < now - kMaxEventAge) return Invalid(f + ".occur_time", "is more than 30 days ago");
  } else {
    api::SetTimestamp(now, e.mutable_occur_time());
  }
  return absl::OkStatus();
}

// What an import keeps beyond the request: the email normalised, and when the customer joined.
struct ImportFields {
  std::string email;
  absl::Time joined;
};

absl::StatusOr<ImportFields> ValidateImport(const v1::ImportCustomerRequest& req, absl::Time now) {
  CRM_RETURN_IF_ERROR(api::RequiredId("external_id", req.external_id()));
  ImportFields f{"", now};
  if (!req.email().empty()) {
    CRM_ASSIGN_OR_RETURN(f.email, NormalizeEmail("email", req.email()));
  }
  CRM_RETURN_IF_ERROR(api::OptionalText("name", req.name(), kMaxNameChars));
  CRM_RETURN_IF_ERROR(ValidatePhone("phone", req.phone()));
  if (req.has_create_time()) {
    CRM_ASSIGN_OR_RETURN(f.joined, api::ToTime("create_time", req.create_time()));
    if (f.joined > now + absl::Minutes(5)) return Invalid("create_time", "is in the future");
  }
  return f;
}

v1::Customer ImportedCustomer(const v1::ImportCustomerRequest& req, const ImportFields& f,
                              absl::Time now) {
  v1::Customer c;
  // Where the gateway routed the import (the email, else the external id) is where the customer
  // lives.
  c.set_customer_id(sharding::NewIdInBucket(
      "c", sharding::BucketOf(f.email.empty() ? req.external_id() : f.email)));
  c.set_external_id(req.external_id());
  c.set_email(f.email);
  c.set_name(req.name());
  c.set_phone(req.phone());
  api::SetTimestamp(f.joined, c.mutable_create_time());
  api::SetTimestamp(now, c.mutable_update_time());
  return c;
}

const char* ImportLabel(CustomerProfileStore::ImportOutcome outcome) {
  switch (outcome) {
    case CustomerProfileStore::ImportOutcome::kCreated: return "created";
    case CustomerProfileStore::ImportOutcome::kLinked: return "linked";
    case CustomerProfileStore::ImportOutcome::kErased: return "erased";
    default: return "already_imported";
  }
}

absl::Status ValidateContactRequest(const v1::RequestContactRequest& req) {
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req.customer_id()));
  CRM_RETURN_IF_ERROR(api::RequiredRequestId(req.request_id()));
  CRM_RETURN_IF_ERROR(ValidateChannel("channel", req.channel()));
  return api::RequiredText("purpose", req.purpose(), 100);
}

// The events of a behaviour call, each valid, and not too many for one call.
absl::StatusOr<std::vector<v1::BehaviorEvent>> ValidBehaviorEvents(
    const v1::RecordBehaviorEventsRequest& req, absl::Time now) {
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req.customer_id()));
  CRM_RETURN_IF_ERROR(api::RequiredRequestId(req.request_id()));
  if (req.events_size() == 0) return Invalid("events", "must hold at least one event");
  if (req.events_size() > kMaxBehaviorEventsPerCall) {
    return Invalid("events", absl::StrCat("holds ", req.events_size(), " events; at most ",
                                          kMaxBehaviorEventsPerCall, " per call"));
  }
  std::vector<v1::BehaviorEvent> events(req.events().begin(), req.events().end());
  for (size_t i = 0; i < events.size(); ++i) {
    CRM_RETURN_IF_ERROR(ValidateBehaviorEvent(absl::StrCat("events[", i, "]"), events[i], now));
  }
  return events;
}

}  // namespace

ProfileMetrics::ProfileMetrics(prometheus::Registry& registry)
    : registered(
          metrics::Counter(registry, "crm_customers_registered_total", "Customers registered.")),
      imported(metrics::CounterFamily(
          registry, "crm_customers_imported_total",
          "Customers imported from a shop's history, by outcome (created, already_imported, linked "
          "to a registered email, erased: skipped).")),
      erased(metrics::Counter(registry, "crm_customers_erased_total",
                              "Customers erased on request (privacy).")),
      behavior_events(metrics::CounterFamily(registry, "crm_behavior_events_total",
                                             "Browsing events recorded, by type.")),
      contact_decisions(metrics::CounterFamily(
          registry, "crm_contact_decisions_total",
          "Marketing contact requests answered, by reason (allowed, no_consent, frequency_cap).")) {
}

CustomerProfileService::CustomerProfileService(CustomerProfileStore* store,
                                               InsightsRefresher* insights, Clock* clock,
                                               rpc::Executor* writes,
                                               prometheus::Registry& registry)
    : store_(store), insights_(insights), clock_(clock), writes_(writes), metrics_(registry) {}

grpc::ServerUnaryReactor* CustomerProfileService::RegisterCustomer(
    Ctx* ctx, const v1::RegisterCustomerRequest* req, v1::Customer* resp) {
  const absl::Time now = clock_->Now();
  if (auto s = api::RequiredRequestId(req->request_id()); !s.ok()) return Finish(ctx, s);
  auto email = NormalizeEmail("email", req->email());
  if (!email.ok()) return Finish(ctx, email.status());
  if (auto s = api::OptionalText("name", req->name(), kMaxNameChars); !s.ok())
    return Finish(ctx, s);
  if (auto s = ValidatePhone("phone", req->phone()); !s.ok()) return Finish(ctx, s);
  if (auto s = ValidateBirthday("birthday", req->birthday(), now); !s.ok()) return Finish(ctx, s);
  return rpc::FinishRequestOn(
      *writes_, ctx, req->request_id(),
      [this, req, resp, now, email = *std::move(email)](const std::string& request_id) {
        v1::Customer c;
        // The id falls in the email's bucket, so both live on the shard that registration was
        // routed to.
        c.set_customer_id(sharding::NewIdInBucket("c", sharding::BucketOf(email)));
        c.set_email(email);
        c.set_name(req->name());
        c.set_phone(req->phone());
        if (req->has_birthday() && req->birthday().year() != 0)
          *c.mutable_birthday() = req->birthday();
        api::SetTimestamp(now, c.mutable_create_time());
        api::SetTimestamp(now, c.mutable_update_time());
        absl::Status s =
            store_->Register(c, request_id, store::RequestFingerprint(*req), now, resp);
        if (s.ok() && resp->customer_id() == c.customer_id()) metrics_.registered.Increment();
        return s;
      });
}

grpc::ServerUnaryReactor* CustomerProfileService::ImportCustomer(
    Ctx* ctx, const v1::ImportCustomerRequest* req, v1::ImportCustomerResponse* resp) {
  const absl::Time now = clock_->Now();
  auto fields = ValidateImport(*req, now);
  if (!fields.ok()) return Finish(ctx, fields.status());
  return FinishOn(*writes_, ctx, [this, req, resp, now, f = *fields]() -> absl::Status {
    CustomerProfileStore::ImportOutcome outcome;
    CRM_RETURN_IF_ERROR(
        store_->Import(ImportedCustomer(*req, f, now), resp->mutable_customer(), &outcome));
    resp->set_created(outcome == CustomerProfileStore::ImportOutcome::kCreated);
    resp->set_erased(outcome == CustomerProfileStore::ImportOutcome::kErased);
    metrics_.imported.Add({{"outcome", ImportLabel(outcome)}}).Increment();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CustomerProfileService::LookupCustomers(
    Ctx* ctx, const v1::LookupCustomersRequest* req, v1::LookupCustomersResponse* resp) {
  if (req->external_ids().empty() || req->external_ids_size() > kMaxExternalIdsPerLookup) {
    return Finish(ctx, Invalid("external_ids",
                               absl::StrCat("must hold 1-", kMaxExternalIdsPerLookup, " ids")));
  }
  std::vector<std::string> ids;
  for (int i = 0; i < req->external_ids_size(); ++i) {
    if (auto s = api::RequiredId(absl::StrCat("external_ids[", i, "]"), req->external_ids(i));
        !s.ok()) {
      return Finish(ctx, s);
    }
    ids.push_back(req->external_ids(i));
  }
  return rpc::FinishWith(ctx, store_->LookupExternalIds(ids), resp->mutable_customers());
}

grpc::ServerUnaryReactor* CustomerProfileService::GetCustomer(Ctx* ctx,
                                                              const v1::GetCustomerRequest* req,
                                                              v1::Customer* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  return rpc::FinishWith(ctx, store_->Get(req->customer_id()), resp);
}

grpc::ServerUnaryReactor* CustomerProfileService::GetCustomerByEmail(
    Ctx* ctx, const v1::GetCustomerByEmailRequest* req, v1::Customer* resp) {
  auto email = NormalizeEmail("email", req->email());
  if (!email.ok()) return Finish(ctx, email.status());
  return rpc::FinishWith(ctx, store_->GetByEmail(*email), resp);
}

grpc::ServerUnaryReactor* CustomerProfileService::ListCustomers(Ctx* ctx,
                                                                const v1::ListCustomersRequest* req,
                                                                v1::ListCustomersResponse* resp) {
  const std::string prefix = absl::AsciiStrToLower(absl::StripAsciiWhitespace(req->email_prefix()));
  if (auto s = api::OptionalText("email_prefix", prefix, 254); !s.ok()) return Finish(ctx, s);
  auto page = rpc::PageOf(req->page_size(), req->page_token(), absl::StrCat("customers/", prefix),
                          {50, 1000});
  if (!page.ok()) return Finish(ctx, page.status());
  std::vector<v1::Customer> customers;
  bool more = false;
  if (auto s = store_->List(prefix, page->after, page->size, &customers, &more); !s.ok())
    return Finish(ctx, s);
  for (auto& c : customers) *resp->add_customers() = std::move(c);
  // A page resumes after the last customer's email, the key the listing is ordered by.
  if (more && resp->customers_size() > 0) {
    resp->set_next_page_token(
        api::EncodePageToken(page->scope, resp->customers(resp->customers_size() - 1).email()));
  }
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* CustomerProfileService::UpdateCustomer(
    Ctx* ctx, const v1::UpdateCustomerRequest* req, v1::Customer* resp) {
  const absl::Time now = clock_->Now();
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s =
          api::CheckFieldMask("update_mask", req->update_mask(), {"name", "phone", "birthday"});
      !s.ok()) {
    return Finish(ctx, s);
  }
  if (auto s = ValidateCustomerFields(req->customer(), req->update_mask().paths(), now); !s.ok()) {
    return Finish(ctx, s);
  }
  return ChangeAndAnswerCustomer(ctx, req->customer_id(), now, resp, [req](v1::Customer& c) {
    ApplyCustomerUpdate(c, req->customer(), req->update_mask().paths());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CustomerProfileService::AddAddress(Ctx* ctx,
                                                             const v1::AddAddressRequest* req,
                                                             v1::Address* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredRequestId(req->request_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = ValidateAddress("address", req->address()); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return rpc::FinishRequestOn(
      *writes_, ctx, req->request_id(), [this, req, resp, now](const std::string& request_id) {
        return store_->UpdateCustomer(
            req->customer_id(), "AddAddress", request_id, store::RequestFingerprint(*req), now,
            resp, [&](v1::Customer& c) {
              v1::Address a = req->address();
              a.set_address_id(sharding::NewId("a"));
              *resp = a;
              return customer_profile::AddAddress(c, std::move(a), req->set_default());
            });
      });
}

grpc::ServerUnaryReactor* CustomerProfileService::UpdateAddress(Ctx* ctx,
                                                                const v1::UpdateAddressRequest* req,
                                                                v1::Address* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredId("address.address_id", req->address().address_id()); !s.ok())
    return Finish(ctx, s);
  if (auto s = api::CheckFieldMask("update_mask", req->update_mask(),
                                   {"recipient_name", "phone", "country_code", "province", "city",
                                    "district", "street", "postal_code", "label"});
      !s.ok()) {
    return Finish(ctx, s);
  }
  return ChangeCustomer(
      ctx, req->customer_id(), clock_->Now(), resp, [req, resp](v1::Customer& c) -> absl::Status {
        auto updated =
            customer_profile::UpdateAddress(c, req->address(), req->update_mask().paths());
        if (!updated.ok()) return updated.status();
        *resp = *std::move(updated);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerProfileService::RemoveAddress(Ctx* ctx,
                                                                const v1::RemoveAddressRequest* req,
                                                                google::protobuf::Empty* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredId("address_id", req->address_id()); !s.ok()) return Finish(ctx, s);
  return ChangeCustomer(ctx, req->customer_id(), clock_->Now(), resp, [req](v1::Customer& c) {
    return customer_profile::RemoveAddress(c, req->address_id());
  });
}

grpc::ServerUnaryReactor* CustomerProfileService::SetDefaultAddress(
    Ctx* ctx, const v1::SetDefaultAddressRequest* req, v1::Customer* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredId("address_id", req->address_id()); !s.ok()) return Finish(ctx, s);
  return ChangeAndAnswerCustomer(
      ctx, req->customer_id(), clock_->Now(), resp,
      [req](v1::Customer& c) { return customer_profile::SetDefaultAddress(c, req->address_id()); });
}

grpc::ServerUnaryReactor* CustomerProfileService::AddPaymentMethod(
    Ctx* ctx, const v1::AddPaymentMethodRequest* req, v1::PaymentMethod* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredRequestId(req->request_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = ValidatePaymentMethod("payment_method", req->payment_method()); !s.ok())
    return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return rpc::FinishRequestOn(
      *writes_, ctx, req->request_id(), [this, req, resp, now](const std::string& request_id) {
        return store_->UpdateCustomer(
            req->customer_id(), "AddPaymentMethod", request_id, store::RequestFingerprint(*req),
            now, resp, [&](v1::Customer& c) {
              v1::PaymentMethod m = req->payment_method();
              m.set_payment_method_id(sharding::NewId("pm"));
              *resp = m;
              return customer_profile::AddPaymentMethod(c, std::move(m), req->set_default());
            });
      });
}

grpc::ServerUnaryReactor* CustomerProfileService::RemovePaymentMethod(
    Ctx* ctx, const v1::RemovePaymentMethodRequest* req, google::protobuf::Empty* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredId("payment_method_id", req->payment_method_id()); !s.ok())
    return Finish(ctx, s);
  return ChangeCustomer(ctx, req->customer_id(), clock_->Now(), resp, [req](v1::Customer& c) {
    return customer_profile::RemovePaymentMethod(c, req->payment_method_id());
  });
}

grpc::ServerUnaryReactor* CustomerProfileService::SetDefaultPaymentMethod(
    Ctx* ctx, const v1::SetDefaultPaymentMethodRequest* req, v1::Customer* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredId("payment_method_id", req->payment_method_id()); !s.ok())
    return Finish(ctx, s);
  return ChangeAndAnswerCustomer(
      ctx, req->customer_id(), clock_->Now(), resp, [req](v1::Customer& c) {
        return customer_profile::SetDefaultPaymentMethod(c, req->payment_method_id());
      });
}

grpc::ServerUnaryReactor* CustomerProfileService::UpdatePreferences(
    Ctx* ctx, const v1::UpdatePreferencesRequest* req, v1::Preferences* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::CheckFieldMask(
          "update_mask", req->update_mask(),
          {"preferred_delivery_window", "language", "settings", "contact_cap", "notifications"});
      !s.ok()) {
    return Finish(ctx, s);
  }
  if (auto s = ValidatePreferences(req->preferences(), req->update_mask().paths()); !s.ok())
    return Finish(ctx, s);
  return ChangeCustomer(
      ctx, req->customer_id(), clock_->Now(), resp, [req, resp](v1::Customer& c) -> absl::Status {
        ApplyPreferences(*c.mutable_preferences(), req->preferences(), req->update_mask().paths());
        *resp = c.preferences();
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerProfileService::SetMarketingConsent(
    Ctx* ctx, const v1::SetMarketingConsentRequest* req, v1::MarketingConsent* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = ValidateChannel("channel", req->channel()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::OptionalText("source", req->source(), 64); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return ChangeCustomer(ctx, req->customer_id(), now, resp,
                        [req, resp, now](v1::Customer& c) -> absl::Status {
                          *resp = SetConsent(c, req->channel(), req->granted(), req->source(), now);
                          return absl::OkStatus();
                        });
}

grpc::ServerUnaryReactor* CustomerProfileService::GetContactPermission(
    Ctx* ctx, const v1::GetContactPermissionRequest* req, v1::ContactDecision* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = ValidateChannel("channel", req->channel()); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  auto c = store_->Get(req->customer_id());
  if (!c.ok()) return Finish(ctx, c.status());
  const auto cap = EffectiveCap(c->preferences());
  auto contacts = store_->Contacts(req->customer_id(), now - absl::Hours(24) * cap.period_days());
  if (!contacts.ok()) return Finish(ctx, contacts.status());
  std::vector<absl::Time> times;
  for (const auto& r : *contacts) times.push_back(api::FromTimestamp(r.contact_time()));
  *resp = DecideContact(*c, req->channel(), times, now);
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* CustomerProfileService::RequestContact(
    Ctx* ctx, const v1::RequestContactRequest* req, v1::ContactDecision* resp) {
  if (auto s = ValidateContactRequest(*req); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return rpc::FinishRequestOn(
      *writes_, ctx, req->request_id(),
      [this, req, resp, now](const std::string& request_id) -> absl::Status {
        v1::ContactRecord record;
        record.set_channel(req->channel());
        record.set_purpose(req->purpose());
        api::SetTimestamp(now, record.mutable_contact_time());
        // The longest cap period bounds the contacts the decision needs to see.
        CRM_RETURN_IF_ERROR(store_->RequestContact(
            req->customer_id(), request_id, store::RequestFingerprint(*req), now,
            now - absl::Hours(24 * 365), record,
            [&](const v1::Customer& c, const std::vector<absl::Time>& times) {
              return DecideContact(c, req->channel(), times, now);
            },
            resp));
        metrics_.contact_decisions
            .Add({{"reason", absl::AsciiStrToLower(
                                 v1::ContactDecision::Reason_Name(resp->reason()).substr(7))}})
            .Increment();
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerProfileService::RecordBehaviorEvents(
    Ctx* ctx, const v1::RecordBehaviorEventsRequest* req, v1::RecordBehaviorEventsResponse* resp) {
  const absl::Time now = clock_->Now();
  auto events = ValidBehaviorEvents(*req, now);
  if (!events.ok()) return Finish(ctx, events.status());
  auto caller = rpc::CallerOf(*ctx);
  if (!caller.ok()) return Finish(ctx, caller.status());
  // Behaviour is written without fsync, so it finishes quickly enough for gRPC's own thread.
  absl::Status s =
      store_->RecordBehavior(req->customer_id(), rpc::ScopedRequestId(*caller, req->request_id()),
                             store::RequestFingerprint(*req), *events, now, resp);
  if (s.ok()) {
    for (const auto& e : *events) {
      metrics_.behavior_events
          .Add({{"type", absl::AsciiStrToLower(v1::BehaviorEventType_Name(e.type()).substr(20))}})
          .Increment();
    }
  }
  return Finish(ctx, s);
}

grpc::ServerUnaryReactor* CustomerProfileService::ListBehaviorEvents(
    Ctx* ctx, const v1::ListBehaviorEventsRequest* req, v1::ListBehaviorEventsResponse* resp) {
  auto page = rpc::CustomerPageOf(*req, "behavior", {50, 1000});
  if (!page.ok()) return Finish(ctx, page.status());
  // An unknown customer is NOT_FOUND rather than an empty page.
  if (auto c = store_->Get(req->customer_id()); !c.ok()) return Finish(ctx, c.status());
  return Finish(ctx, rpc::ReadPage(*page,
                                   std::bind_front(&CustomerProfileStore::ListBehavior, store_,
                                                   req->customer_id()),
                                   resp->mutable_events(), resp->mutable_next_page_token()));
}

grpc::ServerUnaryReactor* CustomerProfileService::GetCategoryAffinity(
    Ctx* ctx, const v1::GetCategoryAffinityRequest* req, v1::GetCategoryAffinityResponse* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  auto limit = api::PageSize("limit", req->limit(), 10, 100);
  if (!limit.ok()) return Finish(ctx, limit.status());
  if (auto c = store_->Get(req->customer_id()); !c.ok()) return Finish(ctx, c.status());
  auto stored = store_->Affinities(req->customer_id());
  if (!stored.ok()) return Finish(ctx, stored.status());
  const absl::Time now = clock_->Now();
  std::vector<v1::CategoryAffinity> current;
  for (const auto& a : *stored) current.push_back(behavior::AffinityAsOf(a, now));
  std::sort(current.begin(), current.end(), [](const auto& a, const auto& b) {
    return a.score() != b.score() ? a.score() > b.score() : a.category() < b.category();
  });
  for (size_t i = 0; i < current.size() && static_cast<int>(i) < *limit; ++i)
    *resp->add_affinities() = current[i];
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* CustomerProfileService::ExportCustomerData(
    Ctx* ctx, const v1::ExportCustomerDataRequest* req, v1::CustomerDataExport* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  if (auto s = store_->Export(req->customer_id(), resp); !s.ok()) return Finish(ctx, s);
  for (auto& a : *resp->mutable_category_affinities()) a = behavior::AffinityAsOf(a, now);
  api::SetTimestamp(now, resp->mutable_export_time());
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* CustomerProfileService::EraseCustomer(Ctx* ctx,
                                                                const v1::EraseCustomerRequest* req,
                                                                v1::EraseCustomerResponse* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredRequestId(req->request_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::OptionalText("reason", req->reason(), 500); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return rpc::FinishAsCallerOn(*writes_, ctx, [this, req, resp, now](const auth::Caller& caller) {
    absl::Status s =
        store_->Erase(req->customer_id(), rpc::ScopedRequestId(caller, req->request_id()),
                      store::RequestFingerprint(*req), now, resp);
    if (s.ok()) {
      metrics_.erased.Increment();
      // Who erased whom, and why: the record an erasure leaves (the customer's data is gone).
      log::Info(
          "customer erased",
          {{"customer_id", req->customer_id()}, {"by", caller.Name()}, {"reason", req->reason()}});
    }
    return s;
  });
}

grpc::ServerUnaryReactor* CustomerProfileService::ChangeCustomer(
    Ctx* ctx, const std::string& customer_id, absl::Time now, google::protobuf::MessageLite* resp,
    absl::AnyInvocable<absl::Status(v1::Customer&)> change) {
  return FinishOn(*writes_, ctx,
                  [this, customer_id, now, resp, change = std::move(change)]() mutable {
                    return store_->UpdateCustomer(customer_id, "", "", 0, now, resp,
                                                  [&](v1::Customer& c) { return change(c); });
                  });
}

grpc::ServerUnaryReactor* CustomerProfileService::ChangeAndAnswerCustomer(
    Ctx* ctx, const std::string& customer_id, absl::Time now, v1::Customer* resp,
    absl::AnyInvocable<absl::Status(v1::Customer&)> change) {
  return ChangeCustomer(ctx, customer_id, now, resp,
                        [resp, now, change = std::move(change)](v1::Customer& c) mutable {
                          CRM_RETURN_IF_ERROR(change(c));
                          AnswerCustomer(c, now, resp);
                          return absl::OkStatus();
                        });
}

}  // namespace crm::customer_profile
