#include "libs/rpc/backends.h"

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

// --<service>_address and --<service>_shard_map for each data service; an empty address is the
// local run's: 127.0.0.1 and the service's default port from the table below.
#define CRM_SERVICE_ADDRESS_FLAGS(flag_prefix, service)                         \
  ABSL_FLAG(std::string, flag_prefix##_address, "",                             \
            service                                                             \
            ": host:port (shards '|', replicas ','); empty: 127.0.0.1 and its " \
            "default port");                                                    \
  ABSL_FLAG(std::string, flag_prefix##_shard_map, "",                           \
            "bucket ranges per " service " shard; empty: equal ranges")

CRM_SERVICE_ADDRESS_FLAGS(customer_profile, "customer-profile");
CRM_SERVICE_ADDRESS_FLAGS(order_tracking, "order-tracking");
CRM_SERVICE_ADDRESS_FLAGS(loyalty, "loyalty");
CRM_SERVICE_ADDRESS_FLAGS(complaint_ticket, "complaint-ticket");
CRM_SERVICE_ADDRESS_FLAGS(recommendation, "recommendation");

namespace crm::rpc {

const std::vector<ServiceInfo>& DataServices() {
  static const std::vector<ServiceInfo> services = {
      {"customer-profile",
       "crm.v1.CustomerProfileService",
       50051,
       9151,
       "customer-profile: profiles, addresses, consent, behaviour and privacy of customers",
       &FLAGS_customer_profile_address,
       &FLAGS_customer_profile_shard_map,
       {"crm.v1.SurveyService", "crm.v1.NotificationService"}},
      {"order-tracking", "crm.v1.OrderTrackingService", 50052, 9152,
       "order-tracking: order lifecycle, split shipments, carrier tracking, returns and reviews",
       &FLAGS_order_tracking_address, &FLAGS_order_tracking_shard_map},
      {"loyalty", "crm.v1.LoyaltyService", 50053, 9153,
       "loyalty: membership tiers, growth value, points ledger and trade credit",
       &FLAGS_loyalty_address, &FLAGS_loyalty_shard_map},
      {"complaint-ticket",
       "crm.v1.ComplaintTicketService",
       50054,
       9154,
       "complaint-ticket: complaints from every channel, severity, routing, SLAs, compensation, "
       "CSAT",
       &FLAGS_complaint_ticket_address,
       &FLAGS_complaint_ticket_shard_map,
       {"crm.v1.KnowledgeBaseService"}},
      {"recommendation", "crm.v1.RecommendationService", 50055, 9155,
       "recommendation: item-to-item, bundles, category affinity, best sellers, occasions and "
       "upgrades",
       &FLAGS_recommendation_address, &FLAGS_recommendation_shard_map},
  };
  return services;
}

const ServiceInfo* FindService(absl::string_view name) {
  for (const auto& s : DataServices()) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

const ServiceInfo* FindServiceServing(absl::string_view proto) {
  for (const auto& s : DataServices()) {
    if (s.proto == proto) return &s;
    for (const auto& also : s.also_serves) {
      if (also == proto) return &s;
    }
  }
  return nullptr;
}

namespace {

// The address and shard map flags of a service in the table (empty when it is not).
std::pair<std::string, std::string> FlagsFor(absl::string_view service) {
  const ServiceInfo* info = FindService(service);
  if (info == nullptr) return {"", ""};
  std::string address = absl::GetFlag(*info->address_flag);
  if (address.empty()) address = absl::StrCat("127.0.0.1:", info->default_port);
  return {std::move(address), absl::GetFlag(*info->shard_map_flag)};
}

}  // namespace

void Backends::SetAddress(absl::string_view service, std::string spec, std::string shard_map) {
  absl::MutexLock lock(&mu_);
  overrides_[std::string(service)] = {std::move(spec), std::move(shard_map)};
  sets_.erase(std::string(service));
}

std::string Backends::AddressOf(absl::string_view service) {
  absl::MutexLock lock(&mu_);
  auto it = overrides_.find(service);
  return it != overrides_.end() ? it->second.first : FlagsFor(service).first;
}

absl::StatusOr<ChannelSet*> Backends::Get(absl::string_view service) {
  absl::MutexLock lock(&mu_);
  auto it = sets_.find(service);
  if (it != sets_.end()) return it->second.get();
  const ServiceInfo* info = FindService(service);
  if (info == nullptr)
    return absl::NotFoundError(absl::StrCat("unknown service \"", service, "\""));
  auto o = overrides_.find(service);
  const auto [spec, map] = o != overrides_.end() ? o->second : FlagsFor(service);
  auto set = ChannelSet::Create(info->proto, spec, metrics_, map);
  if (!set.ok()) return set.status();
  ChannelSet* raw = set->get();
  sets_.emplace(std::string(service), std::move(*set));
  return raw;
}

}  // namespace crm::rpc
