// Where the other services are. Every process knows the five services by name; their addresses come
// from flags (or CRM_* environment) with defaults that match the local run, and each gets one
// ChannelSet, created on first use and shared by everything in the process. Thread-safe.
//
//   --customer_profile_address   127.0.0.1:50051        --customer_profile_shard_map   ""
//   --order_tracking_address     127.0.0.1:50052        ... (one pair per service)
//   --loyalty_address            127.0.0.1:50053
//   --complaint_ticket_address   127.0.0.1:50054
//   --recommendation_address     127.0.0.1:50055
// An address may name shards and replicas: "a0:50051,a1:50051|b0:50051" (see ChannelSet).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "libs/metrics/metrics.h"
#include "libs/rpc/client.h"

namespace crm::rpc {

struct ServiceInfo {
  std::string name;   // "customer-profile"
  std::string proto;  // "crm.v1.CustomerProfileService"
  int default_port;   // 50051
  int default_metrics_port;
  // What it does, for --help: "customer-profile: profiles, addresses, ...".
  std::string usage;
  // --<name>_address and --<name>_shard_map.
  const absl::Flag<std::string>* address_flag;
  const absl::Flag<std::string>* shard_map_flag;
  // Further gRPC services the same process serves, sharded as `proto` is (e.g. customer-profile
  // serves crm.v1.SurveyService beside its own, since surveys need its consent and contact cap).
  std::vector<std::string> also_serves = {};
};

// The five data services, in port order.
const std::vector<ServiceInfo>& DataServices();
const ServiceInfo* FindService(absl::string_view name);
// The data service whose process serves the gRPC service `proto` ("crm.v1.SurveyService"), as its
// own or among also_serves; null when none does.
const ServiceInfo* FindServiceServing(absl::string_view proto);

class Backends {
 public:
  explicit Backends(metrics::Metrics* metrics) : metrics_(metrics) {}
  // Channels to `service` (a name from DataServices()), from its address flag.
  absl::StatusOr<ChannelSet*> Get(absl::string_view service);
  // Overrides the address of a service (tests); must precede the first Get of it.
  void SetAddress(absl::string_view service, std::string spec, std::string shard_map = "");
  // The configured address spec of a service.
  std::string AddressOf(absl::string_view service);

 private:
  metrics::Metrics* metrics_;
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<ChannelSet>, std::less<>> sets_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::pair<std::string, std::string>, std::less<>> overrides_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace crm::rpc
