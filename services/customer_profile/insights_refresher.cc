#include "services/customer_profile/insights_refresher.h"

#include <algorithm>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "libs/metrics/families.h"

namespace crm::customer_profile {
namespace {

const char* ActionName(v1::RetentionActionType t) {
  switch (t) {
    case v1::RETENTION_ACTION_TYPE_COUPON: return "coupon";
    case v1::RETENTION_ACTION_TYPE_DEDICATED_AGENT: return "dedicated_agent";
    case v1::RETENTION_ACTION_TYPE_POINTS: return "points";
    default: return "unspecified";
  }
}

const char* OutcomeName(v1::RetentionOutcome o) {
  switch (o) {
    case v1::RETENTION_OUTCOME_RETAINED: return "retained";
    case v1::RETENTION_OUTCOME_LOST: return "lost";
    default: return "pending";
  }
}

}  // namespace

InsightsRefresher::InsightsRefresher(CustomerProfileStore* store, Clock* clock,
                                     internal::SegmentRules rules, internal::ChurnModel churn_model,
                                     prometheus::Registry& r)
    : store_(store),
      clock_(clock),
      rules_(std::move(rules)),
      churn_model_(std::move(churn_model)),
      repeat_purchase_(
          metrics::Gauge(r, "crm_kpi_repeat_purchase_rate",
                         "Of customers who bought, the share who bought at least twice.")),
      retention_90d_(
          metrics::Gauge(r, "crm_kpi_retention_90d_rate",
                         "Of customers who bought 90-180 days ago, the share who bought again in "
                         "the last 90 days.")),
      csat_(metrics::Gauge(r, "crm_kpi_csat_average",
                           "Average satisfaction (1-5) of complaints opened in the last 90 days.")),
      on_time_(metrics::Gauge(
          r, "crm_kpi_on_time_delivery_rate",
          "Of orders delivered in the last 90 days, the share delivered inside the agreed "
          "window (early is not on time).")),
      sla_compliance_(metrics::Gauge(
          r, "crm_kpi_sla_compliance_rate",
          "Of complaints resolved in the last 90 days, the share without a missed SLA promise.")),
      at_risk_(metrics::Gauge(r, "crm_kpi_at_risk_customers",
                              "Customers whose churn score is at or above the at-risk threshold.")),
      retention_actions_(metrics::GaugeFamily(
          r, "crm_retention_actions",
          "Retention actions by action and outcome (pending, retained, lost).")),
      retention_rate_(
          metrics::GaugeFamily(r, "crm_kpi_retention_action_rate",
                               "Per action, the share of decided retention actions after which the "
                               "customer ordered again within the window.")),
      refreshed_(metrics::Gauge(r, "crm_insights_refresh_timestamp_seconds",
                                "When segments and KPIs were last recomputed.")),
      snapshot_(std::make_shared<Snapshot>()) {}

InsightsRefresher::~InsightsRefresher() { Stop(); }

std::shared_ptr<const InsightsRefresher::Snapshot> InsightsRefresher::snapshot() const {
  absl::MutexLock lock(&mu_);
  return snapshot_;
}

absl::Status InsightsRefresher::Refresh() {
  absl::MutexLock one_at_a_time(&refresh_mu_);
  const absl::Time now = clock_->Now();
  const absl::Time started = absl::Now();  // wall time, for pacing early refreshes
  // Orders committed from here on may be missed by the scan: they count toward the next refresh.
  early_.Began();
  // A failed refresh runs again after a backoff when orders were waiting for it, not only on the
  // schedule.
  absl::Cleanup failed = [this] {
    if (const auto at = early_.Failed(absl::Now())) periodic_.RunAt(*at);
  };
  auto next = std::make_shared<Snapshot>();
  next->computed = true;
  std::vector<AudienceRow> scored;
  CRM_RETURN_IF_ERROR(ScoreCustomers(now, *next, scored));
  CRM_RETURN_IF_ERROR(BuildAudience(now, std::move(scored), *next));
  CRM_ASSIGN_OR_RETURN(const RetentionCounts retention, CountRetentionOutcomes(now));
  PublishGauges(next->kpis, retention, now);
  std::move(failed).Cancel();
  early_.Ended(next->population.buyers, started, absl::Now());
  {
    absl::MutexLock lock(&mu_);
    snapshot_ = std::move(next);
  }
  return absl::OkStatus();
}

absl::Status InsightsRefresher::ScoreCustomers(absl::Time now, Snapshot& next,
                                               std::vector<AudienceRow>& scored) const {
  // Two passes: the population's cut points first, then each customer scored against them.
  PopulationBuilder builder;
  CRM_RETURN_IF_ERROR(
      store_->ScanHistories([&](absl::string_view, const internal::CustomerHistory& h) {
        builder.Add(Summarise(h, now));
        return true;
      }));
  next.population = builder.Build(rules_, now);
  KpiAccumulator kpis(now);
  CRM_RETURN_IF_ERROR(store_->ScanHistories([&](absl::string_view customer_id,
                                                const internal::CustomerHistory& h) {
    const Summary summary = Summarise(h, now);
    const v1::CustomerInsights insights =
        Assess(customer_id, summary, next.population, rules_, churn_model_, now);
    kpis.Add(h, summary, insights.churn().at_risk());
    // Consent and contacts are filled in by BuildAudience.
    scored.push_back(RowOf(std::string(customer_id), insights, 0, absl::InfinitePast()));
    if (insights.churn().at_risk()) {
      AtRisk& a = next.at_risk.emplace_back();
      a.customer_id = std::string(customer_id);
      a.score = static_cast<float>(insights.churn().score());
      a.priority = insights.churn().score() * static_cast<double>(summary.value_12m_minor) / 100.0;
      a.segment = insights.rfm().segment();
      a.level = insights.buyer_level();
      a.key_customer = insights.key_customer();
    }
    return true;
  }));
  std::sort(next.at_risk.begin(), next.at_risk.end(), [](const AtRisk& a, const AtRisk& b) {
    if (a.priority != b.priority) return a.priority > b.priority;
    if (a.score != b.score) return a.score > b.score;
    return a.customer_id < b.customer_id;
  });
  next.kpis = kpis.Finish();
  return absl::OkStatus();
}

absl::Status InsightsRefresher::BuildAudience(absl::Time now, std::vector<AudienceRow> scored,
                                              Snapshot& next) const {
  absl::flat_hash_map<std::string, absl::Time> last_contacts;
  CRM_RETURN_IF_ERROR(store_->ScanLastContacts(
      [&](absl::string_view customer_id, absl::Time last) { last_contacts[customer_id] = last; }));
  // Customers who never ordered nor complained all assess the same: one empty history.
  const v1::CustomerInsights no_history = Assess("", Summarise(internal::CustomerHistory(), now),
                                                 next.population, rules_, churn_model_, now);
  // Histories and customers are both keyed by customer id, so one pass joins them.
  size_t s = 0;
  return store_->ScanCustomers([&](const v1::Customer& c) {
    while (s < scored.size() && scored[s].customer_id < c.customer_id()) ++s;
    const auto contact = last_contacts.find(c.customer_id());
    const absl::Time last = contact == last_contacts.end() ? absl::InfinitePast() : contact->second;
    if (s < scored.size() && scored[s].customer_id == c.customer_id()) {
      AudienceRow row = std::move(scored[s]);
      row.consents = ConsentBits(c);
      row.last_contact = last;
      next.audience.push_back(std::move(row));
    } else {
      next.audience.push_back(RowOf(c.customer_id(), no_history, ConsentBits(c), last));
    }
    return true;
  });
}

absl::StatusOr<InsightsRefresher::RetentionCounts> InsightsRefresher::CountRetentionOutcomes(
    absl::Time now) const {
  // Judged against each customer's orders as of now.
  RetentionCounts outcomes;
  std::string last_customer;
  Summary summary;
  CRM_RETURN_IF_ERROR(store_->ScanRetentionActions([&](const v1::RetentionAction& stored) {
    if (stored.customer_id() != last_customer) {
      auto history = store_->History(stored.customer_id());
      summary = history.ok() ? Summarise(*history, now) : Summary{};
      last_customer = stored.customer_id();
    }
    v1::RetentionAction action = stored;
    JudgeRetention(summary, now, action);
    ++outcomes[{action.type(), action.outcome()}];
    return true;
  }));
  return outcomes;
}

void InsightsRefresher::PublishGauges(const Kpis& k, const RetentionCounts& outcomes,
                                      absl::Time now) {
  repeat_purchase_.Set(k.repeat_purchase_rate);
  retention_90d_.Set(k.retention_90d_rate);
  csat_.Set(k.csat_average);
  on_time_.Set(k.on_time_delivery_rate);
  sla_compliance_.Set(k.sla_compliance_rate);
  at_risk_.Set(static_cast<double>(k.at_risk_customers));
  for (auto type : {v1::RETENTION_ACTION_TYPE_COUPON, v1::RETENTION_ACTION_TYPE_DEDICATED_AGENT,
                    v1::RETENTION_ACTION_TYPE_POINTS}) {
    int64_t decided = 0, retained = 0;
    for (auto outcome : {v1::RETENTION_OUTCOME_PENDING, v1::RETENTION_OUTCOME_RETAINED,
                         v1::RETENTION_OUTCOME_LOST}) {
      const auto found = outcomes.find({type, outcome});
      const int64_t n = found == outcomes.end() ? 0 : found->second;
      retention_actions_.Add({{"action", ActionName(type)}, {"outcome", OutcomeName(outcome)}})
          .Set(static_cast<double>(n));
      if (outcome != v1::RETENTION_OUTCOME_PENDING) decided += n;
      if (outcome == v1::RETENTION_OUTCOME_RETAINED) retained += n;
    }
    retention_rate_.Add({{"action", ActionName(type)}})
        .Set(decided == 0 ? 0.0 : static_cast<double>(retained) / static_cast<double>(decided));
  }
  refreshed_.Set(absl::ToDoubleSeconds(now - absl::UnixEpoch()));
}

void InsightsRefresher::NoteNewOrder() {
  if (const auto at = early_.Note(1, absl::Now())) periodic_.RunAt(*at);
}

void InsightsRefresher::Start(absl::Duration interval) {
  periodic_.Start(interval, [this] {
    if (absl::Status s = Refresh(); !s.ok())
      log::Warning("insights refresh failed", {{"error", s.ToString()}});
  });
}

void InsightsRefresher::Stop() { periodic_.Stop(); }

}  // namespace crm::customer_profile
