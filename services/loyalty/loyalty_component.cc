#include "services/loyalty/loyalty_component.h"

#include "absl/flags/flag.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "services/loyalty/loyalty_rules.h"

ABSL_FLAG(std::string, rules_file, "",
          "loyalty rules in protobuf text format (crm.v1.LoyaltyRules); empty: built-in rules");
ABSL_FLAG(int, maintenance_interval_s, 3600,
          "how often points expiry and tier re-evaluation run by themselves");

namespace crm::loyalty {
namespace {

// Expires points and re-evaluates tiers (also callable as RunMaintenance).
void Maintain(LoyaltyService& service) {
  v1::RunMaintenanceResponse result;
  if (absl::Status s = service.Maintain(&result); !s.ok()) {
    log::Warning("loyalty maintenance failed", {{"error", s.ToString()}});
    return;
  }
  log::Info("loyalty maintenance", {{"points_expired", result.points_expired()},
                                    {"tier_changes", static_cast<int64_t>(result.tier_changes())}});
}

absl::Status Wire(LoyaltyComponent& c, const rpc::ServiceContext& context) {
  const std::string rules_file = absl::GetFlag(FLAGS_rules_file);
  v1::LoyaltyRules rules = DefaultRules();
  if (!rules_file.empty()) {
    CRM_ASSIGN_OR_RETURN(rules, ReadRulesFile(rules_file));
  }
  auto* rules_holder = c.Make<RulesHolder>(std::move(rules));
  auto* store = c.Make<LoyaltyStore>(context.store);
  LoyaltyService* service = c.Serve(std::make_unique<LoyaltyService>(
      store, rules_holder, rules_file, context.clock, c.writes("loyalty-writes", 32),
      context.backends, context.metrics->registry()));
  c.ConsumeEvents();
  c.OnStart([service] { service->CountMembers(); });
  c.RunEvery(absl::Seconds(absl::GetFlag(FLAGS_maintenance_interval_s)),
             [service] { Maintain(*service); });
  return absl::OkStatus();
}

}  // namespace

rpc::ServiceSpec LoyaltySpec() {
  return LoyaltyComponent::SpecOf("loyalty", LoyaltyStore::ColumnFamilies(), &Wire);
}

}  // namespace crm::loyalty
