#include "services/loyalty/loyalty_component.h"

#include "absl/flags/flag.h"
#include "absl/functional/bind_front.h"
#include "absl/strings/str_cat.h"
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
  auto c = std::unique_ptr<LoyaltyComponent>(new LoyaltyComponent());
  const std::string rules_file = absl::GetFlag(FLAGS_rules_file);
  v1::LoyaltyRules rules = DefaultRules();
  if (!rules_file.empty()) {
    auto parsed = ReadRulesFile(rules_file);
    if (!parsed.ok()) return parsed.status();
    rules = *std::move(parsed);
  }
  c->rules_ = std::make_unique<RulesHolder>(std::move(rules));
  c->store_ = std::make_unique<LoyaltyStore>(context.store);
  c->writes_ = std::make_unique<rpc::Executor>("loyalty-writes", 32);
  c->service_ = std::make_unique<LoyaltyService>(c->store_.get(), c->rules_.get(), rules_file,
                                                 context.clock, c->writes_.get(), context.backends,
                                                 context.metrics->registry());
  c->consumer_ = std::make_unique<events::EventConsumer>(
      context.store, absl::bind_front(&LoyaltyService::HandleEvent, c->service_.get()),
      c->writes_.get(), context.metrics->registry());
  c->maintenance_interval_ = absl::Seconds(absl::GetFlag(FLAGS_maintenance_interval_s));
  return c;
}

LoyaltyComponent::~LoyaltyComponent() { Stop(); }

void LoyaltyComponent::Register(rpc::Server& server) {
  server.AddService(service_.get(), v1::LoyaltyService::service_full_name());
  server.AddService(consumer_.get(), v1::EventSink::service_full_name());
}

void LoyaltyComponent::Start() {
  service_->CountMembers();
  maintenance_.Start(
      maintenance_interval_,
      [this] {
        v1::RunMaintenanceResponse result;
        if (absl::Status s = service_->Maintain(&result); !s.ok()) {
          log::Warning("loyalty maintenance failed", {{"error", s.ToString()}});
        } else {
          log::Info("loyalty maintenance",
                    {{"points_expired", result.points_expired()},
                     {"tier_changes", static_cast<int64_t>(result.tier_changes())}});
        }
      },
      rpc::PeriodicTask::FirstRun::kAfterInterval);
}

void LoyaltyComponent::Stop() { maintenance_.Stop(); }

}  // namespace crm::loyalty
