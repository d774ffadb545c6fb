#include "libs/rpc/backends.h"

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(std::string, customer_profile_address, "127.0.0.1:50051",
          "customer-profile: host:port (shards '|', replicas ',')");
ABSL_FLAG(std::string, order_tracking_address, "127.0.0.1:50052",
          "order-tracking: host:port (shards '|', replicas ',')");
ABSL_FLAG(std::string, loyalty_address, "127.0.0.1:50053",
          "loyalty: host:port (shards '|', replicas ',')");
ABSL_FLAG(std::string, complaint_ticket_address, "127.0.0.1:50054",
          "complaint-ticket: host:port (shards '|', replicas ',')");
ABSL_FLAG(std::string, recommendation_address, "127.0.0.1:50055",
          "recommendation: host:port (shards '|', replicas ',')");
ABSL_FLAG(std::string, customer_profile_shard_map, "",
          "bucket ranges per customer-profile shard; empty: equal ranges");
ABSL_FLAG(std::string, order_tracking_shard_map, "",
          "bucket ranges per order-tracking shard; empty: equal ranges");
ABSL_FLAG(std::string, loyalty_shard_map, "",
          "bucket ranges per loyalty shard; empty: equal ranges");
ABSL_FLAG(std::string, complaint_ticket_shard_map, "",
          "bucket ranges per complaint-ticket shard; empty: equal ranges");
ABSL_FLAG(std::string, recommendation_shard_map, "",
          "bucket ranges per recommendation shard; empty: equal ranges");

namespace crm::rpc {

const std::vector<ServiceInfo>& DataServices() {
  static const std::vector<ServiceInfo> services = {
      {"customer-profile", "crm.v1.CustomerProfileService", 50051, 9151,
       "customer-profile: profiles, addresses, consent, behaviour and privacy of customers"},
      {"order-tracking", "crm.v1.OrderTrackingService", 50052, 9152,
       "order-tracking: order lifecycle, split shipments, carrier tracking, returns and reviews"},
      {"loyalty", "crm.v1.LoyaltyService", 50053, 9153,
       "loyalty: membership tiers, growth value, points ledger and trade credit"},
      {"complaint-ticket", "crm.v1.ComplaintTicketService", 50054, 9154,
       "complaint-ticket: complaints from every channel, severity, routing, SLAs, compensation, "
       "CSAT"},
      {"recommendation", "crm.v1.RecommendationService", 50055, 9155,
       "recommendation: item-to-item, bundles, category affinity, best sellers, occasions and "
       "upgrades"},
  };
  return services;
}

const ServiceInfo* FindService(absl::string_view name) {
  for (const auto& s : DataServices()) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

namespace {

std::pair<std::string, std::string> FlagsFor(absl::string_view service) {
  if (service == "customer-profile") {
    return {absl::GetFlag(FLAGS_customer_profile_address),
            absl::GetFlag(FLAGS_customer_profile_shard_map)};
  }
  if (service == "order-tracking") {
    return {absl::GetFlag(FLAGS_order_tracking_address),
            absl::GetFlag(FLAGS_order_tracking_shard_map)};
  }
  if (service == "loyalty")
    return {absl::GetFlag(FLAGS_loyalty_address), absl::GetFlag(FLAGS_loyalty_shard_map)};
  if (service == "complaint-ticket") {
    return {absl::GetFlag(FLAGS_complaint_ticket_address),
            absl::GetFlag(FLAGS_complaint_ticket_shard_map)};
  }
  if (service == "recommendation") {
    return {absl::GetFlag(FLAGS_recommendation_address),
            absl::GetFlag(FLAGS_recommendation_shard_map)};
  }
  return {"", ""};
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
