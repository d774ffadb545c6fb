// crm.v1.CustomerProfileService over gRPC's callback API: each handler validates the request,
// applies the profile rules (profile_rules.h, affinity.h, contact_policy.h) through
// CustomerProfileStore, and maps the result to a status. Reads finish on gRPC's thread; writes that
// wait for a synced WAL run on the write executor so that concurrent writers share fsyncs.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "libs/clock/clock.h"
#include "libs/events/consumer.h"
#include "libs/events/producer.h"
#include "libs/events/subscription.h"
#include "libs/rpc/executor.h"
#include "libs/rpc/handler.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/registry.h"
#include "services/customer_profile/audience.h"
#include "services/customer_profile/customer_profile_store.h"
#include "services/customer_profile/insights_refresher.h"

namespace crm::customer_profile {

inline constexpr int kMaxBehaviorEventsPerCall = 500;
inline constexpr int kMaxExternalIdsPerLookup = 1000;

// Business metrics of the service, each defined once here.
struct ProfileMetrics {
  explicit ProfileMetrics(prometheus::Registry& registry);
  prometheus::Counter& registered;
  // Imported customers, by outcome: created, already_imported (a re-run), linked (email registered
  // before).
  prometheus::Family<prometheus::Counter>& imported;
  prometheus::Counter& erased;
  prometheus::Family<prometheus::Counter>& behavior_events;
  prometheus::Family<prometheus::Counter>& contact_decisions;
};

class CustomerProfileService final : public v1::CustomerProfileService::CallbackService {
 public:
  // Not owned; all must outlive the service.
  CustomerProfileService(CustomerProfileStore* store, InsightsRefresher* insights, Clock* clock,
                         rpc::Executor* writes, prometheus::Registry& registry);

  // Another service's event (orders, deliveries, refunds, reviews, tickets): folded into the
  // customer's history, inside the consumer's transaction.
  absl::Status HandleEvent(store::Transaction& txn, const v1::Event& event);
  // The events HandleEvent acts on; producers send this service no others.
  static events::Subscription EventsHandled() {
    using E = events::Subscription::EventType;
    return {E::kOrderPlaced,       E::kOrderDelivered, E::kOrderRefunded, E::kDeliveryFailed,
            E::kReviewSubmitted,   E::kOrderCancelled, E::kTicketOpened,  E::kTicketResolved,
            E::kSatisfactionRated, E::kSlaBreached};
  }

  using Ctx = grpc::CallbackServerContext;
  using Reactor = grpc::ServerUnaryReactor;
  Reactor* RegisterCustomer(Ctx*, const v1::RegisterCustomerRequest*, v1::Customer*) override;
  Reactor* ImportCustomer(Ctx*, const v1::ImportCustomerRequest*,
                          v1::ImportCustomerResponse*) override;
  Reactor* LookupCustomers(Ctx*, const v1::LookupCustomersRequest*,
                           v1::LookupCustomersResponse*) override;
  Reactor* GetCustomer(Ctx*, const v1::GetCustomerRequest*, v1::Customer*) override;
  Reactor* GetCustomerByEmail(Ctx*, const v1::GetCustomerByEmailRequest*, v1::Customer*) override;
  Reactor* ListCustomers(Ctx*, const v1::ListCustomersRequest*,
                         v1::ListCustomersResponse*) override;
  Reactor* UpdateCustomer(Ctx*, const v1::UpdateCustomerRequest*, v1::Customer*) override;
  Reactor* AddAddress(Ctx*, const v1::AddAddressRequest*, v1::Address*) override;
  Reactor* UpdateAddress(Ctx*, const v1::UpdateAddressRequest*, v1::Address*) override;
  Reactor* RemoveAddress(Ctx*, const v1::RemoveAddressRequest*, google::protobuf::Empty*) override;
  Reactor* SetDefaultAddress(Ctx*, const v1::SetDefaultAddressRequest*, v1::Customer*) override;
  Reactor* AddPaymentMethod(Ctx*, const v1::AddPaymentMethodRequest*, v1::PaymentMethod*) override;
  Reactor* RemovePaymentMethod(Ctx*, const v1::RemovePaymentMethodRequest*,
                               google::protobuf::Empty*) override;
  Reactor* SetDefaultPaymentMethod(Ctx*, const v1::SetDefaultPaymentMethodRequest*,
                                   v1::Customer*) override;
  Reactor* UpdatePreferences(Ctx*, const v1::UpdatePreferencesRequest*, v1::Preferences*) override;
  Reactor* SetMarketingConsent(Ctx*, const v1::SetMarketingConsentRequest*,
                               v1::MarketingConsent*) override;
  Reactor* GetContactPermission(Ctx*, const v1::GetContactPermissionRequest*,
                                v1::ContactDecision*) override;
  Reactor* RequestContact(Ctx*, const v1::RequestContactRequest*, v1::ContactDecision*) override;
  Reactor* RecordBehaviorEvents(Ctx*, const v1::RecordBehaviorEventsRequest*,
                                v1::RecordBehaviorEventsResponse*) override;
  Reactor* ListBehaviorEvents(Ctx*, const v1::ListBehaviorEventsRequest*,
                              v1::ListBehaviorEventsResponse*) override;
  Reactor* GetCategoryAffinity(Ctx*, const v1::GetCategoryAffinityRequest*,
                               v1::GetCategoryAffinityResponse*) override;
  Reactor* ExportCustomerData(Ctx*, const v1::ExportCustomerDataRequest*,
                              v1::CustomerDataExport*) override;
  Reactor* EraseCustomer(Ctx*, const v1::EraseCustomerRequest*,
                         v1::EraseCustomerResponse*) override;
  // Segments, churn and retention (insights_handlers.cc).
  Reactor* GetCustomerInsights(Ctx*, const v1::GetCustomerInsightsRequest*,
                               v1::CustomerInsights*) override;
  Reactor* GetCustomerViewSections(Ctx*, const v1::GetCustomerViewSectionsRequest*,
                                   v1::CustomerViewSections*) override;
  Reactor* ListAtRiskCustomers(Ctx*, const v1::ListAtRiskCustomersRequest*,
                               v1::ListAtRiskCustomersResponse*) override;
  Reactor* RecordRetentionAction(Ctx*, const v1::RecordRetentionActionRequest*,
                                 v1::RetentionAction*) override;
  Reactor* ListRetentionActions(Ctx*, const v1::ListRetentionActionsRequest*,
                                v1::ListRetentionActionsResponse*) override;
  Reactor* RefreshInsights(Ctx*, const v1::RefreshInsightsRequest*,
                           v1::RefreshInsightsResponse*) override;
  // Audiences for marketing (audience_handlers.cc).
  Reactor* ListAudience(Ctx*, const v1::ListAudienceRequest*, v1::ListAudienceResponse*) override;
  Reactor* CountAudience(Ctx*, const v1::CountAudienceRequest*,
                         v1::CountAudienceResponse*) override;
  Reactor* ExportAudienceCsv(Ctx*, const v1::ExportAudienceCsvRequest*,
                             v1::ExportAudienceCsvResponse*) override;

  // One page of an audience after page.after: the refresh's rows matching `selector`, each checked
  // against the customer's consent and contacts now; a token when rows remain, and the last id
  // looked at (`examined_through`, may be null).
  absl::Status SelectAudience(const AudienceSelector& selector, const rpc::PageRequest& page,
                              std::vector<v1::AudienceMember>* out, std::string* next_page_token,
                              std::string* examined_through = nullptr);

 private:
  // The customer's insights as of now, against the last population figures.
  absl::StatusOr<v1::CustomerInsights> AssessNow(absl::string_view customer_id, absl::Time now);
  // Runs `change` on the customer on the write executor, made at `now`, and finishes the call with
  // its status: for changes that repeat harmlessly, so without a request id.
  Reactor* ChangeCustomer(Ctx* ctx, const std::string& customer_id, absl::Time now,
                          google::protobuf::MessageLite* resp,
                          absl::AnyInvocable<absl::Status(v1::Customer&)> change);
  // ChangeCustomer, answering the whole customer as changed.
  Reactor* ChangeAndAnswerCustomer(Ctx* ctx, const std::string& customer_id, absl::Time now,
                                   v1::Customer* resp,
                                   absl::AnyInvocable<absl::Status(v1::Customer&)> change);

  CustomerProfileStore* const store_;
  InsightsRefresher* const insights_;
  Clock* const clock_;
  rpc::Executor* const writes_;
  ProfileMetrics metrics_;
};

}  // namespace crm::customer_profile
