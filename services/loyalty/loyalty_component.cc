#include "services/loyalty/loyalty_component.h"

#include "absl/flags/flag.h"
#include "absl/functional/bind_front.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "services/loyalty/loyalty_rules.h"

ABSL_FLAG(std::string, rules_file, "",
          "loyalty rules in protobuf text format (crm.v1.LoyaltyRules); empty: built-in rules");
ABSL_FLAG(int, maintenance_interval_s, 3600,
          "how often points expiry and tier re-evaluation run by themselves");

namespace crm::loyalty {

rpc::ServiceSpec LoyaltyComponent::Spec() {
  return rpc::ServiceSpec::Of<LoyaltyComponent>("loyalty", LoyaltyStore::ColumnFamilies());
}

absl::StatusOr<std::unique_ptr<LoyaltyComponent>> LoyaltyComponent::Create(
    const rpc::ServiceContext& context) {
  auto c = std::unique_ptr<LoyaltyComponent>(new LoyaltyComponent(context));
  const std::string rules_file = absl::GetFlag(FLAGS_rules_file);
  v1::LoyaltyRules rules = DefaultRules();
  if (!rules_file.empty()) {
    CRM_ASSIGN_OR_RETURN(rules, ReadRulesFile(rules_file));
  }
  c->rules_ = std::make_unique<RulesHolder>(std::move(rules));
  c->store_ = std::make_unique<LoyaltyStore>(context.store);
  c->service_ = std::make_unique<LoyaltyService>(c->store_.get(), c->rules_.get(), rules_file,
                                                 context.clock, c->writes("loyalty-writes", 32),
                                                 context.backends, context.metrics->registry());
  c->Serve(c->service_.get());
  c->ConsumeEvents(LoyaltyService::EventsHandled(),
                   absl::bind_front(&LoyaltyService::HandleEvent, c->service_.get()));
  c->RunEvery(absl::Seconds(absl::GetFlag(FLAGS_maintenance_interval_s)),
              [raw = c.get()] { raw->Maintain(); });
  return c;
}

void LoyaltyComponent::Maintain() {
  v1::RunMaintenanceResponse result;
  if (absl::Status s = service_->Maintain(&result); !s.ok()) {
    log::Warning("loyalty maintenance failed", {{"error", s.ToString()}});
    return;
  }
  log::Info("loyalty maintenance", {{"points_expired", result.points_expired()},
                                    {"tier_changes", static_cast<int64_t>(result.tier_changes())}});
}

}  // namespace crm::loyalty
