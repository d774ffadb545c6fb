// Keeps what needs the whole customer base: the population figures behind RFM quintiles and key
// customers, the at-risk list in retention order, the KPI gauges, the retention rate per action and
// the audience rows (one per customer).
// A refresh scans every stored history twice (population first, then each customer against it); it
// runs at start, every --insights_refresh_s, on RefreshInsights, and soon after the customer base's
// orders have grown enough to move the cut points (a new shop's first orders, an import:
// NoteNewOrder). Between refreshes readers use the last snapshot: one customer's own figures
// (facts, churn, level) are always current, only the cut points age. Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "libs/clock/clock.h"
#include "libs/rpc/early_refresh.h"
#include "libs/rpc/periodic.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "services/customer_profile/audience.h"
#include "services/customer_profile/customer_profile_store.h"
#include "services/customer_profile/insights.h"

namespace crm::customer_profile {

class InsightsRefresher {
 public:
  // One at-risk customer as of the refresh: compact, since a large base has many.
  struct AtRisk {
    std::string customer_id;
    double priority = 0;  // churn score x 12-month value in major units
    float score = 0;
    v1::RfmSegment segment = v1::RFM_SEGMENT_UNSPECIFIED;
    v1::BuyerLevel level = v1::BUYER_LEVEL_UNSPECIFIED;
    bool key_customer = false;
  };
  struct Snapshot {
    Population population;
    // Highest priority first; ties by customer id.
    std::vector<AtRisk> at_risk;
    Kpis kpis;
    // Every customer, in customer id order: what audiences select from.
    std::vector<AudienceRow> audience;
    // False until the first refresh (the process just started): campaigns wait for it.
    bool computed = false;
  };

  // Not owned; must outlive the refresher.
  InsightsRefresher(CustomerProfileStore* store, Clock* clock, internal::SegmentRules rules,
                    internal::ChurnModel churn_model, prometheus::Registry& registry);
  ~InsightsRefresher();

  absl::Status Refresh();
  std::shared_ptr<const Snapshot> snapshot() const;
  const internal::SegmentRules& rules() const { return rules_; }
  const internal::ChurnModel& churn_model() const { return churn_model_; }

  // Refreshes every `interval` on a thread of its own until Stop.
  void Start(absl::Duration interval);
  void Stop();

  // A new order was committed. Once orders since the last refresh reach a tenth of the buyers it
  // counted (every order while there are fewer than 1,000), a refresh runs when the burst has been
  // quiet for 2 s (at most 30 s after it began), and never so often that refreshing takes more than
  // a twentieth of the time.
  void NoteNewOrder();

 private:
  // Refresh's steps: the population's cut points, every customer's insights, the at-risk list and
  // the KPIs into `next`; the retention actions' outcomes; the gauges.
  using RetentionCounts =
      std::map<std::pair<v1::RetentionActionType, v1::RetentionOutcome>, int64_t>;
  // `scored` gets the audience rows of customers with a history, in customer id order.
  absl::Status ScoreCustomers(absl::Time now, Snapshot& next,
                              std::vector<AudienceRow>& scored) const;
  // Every customer's audience row: `scored` joined with the profiles (consent) and the contacts.
  absl::Status BuildAudience(absl::Time now, std::vector<AudienceRow> scored, Snapshot& next) const;
  absl::StatusOr<RetentionCounts> CountRetentionOutcomes(absl::Time now) const;
  void PublishGauges(const Kpis& kpis, const RetentionCounts& outcomes, absl::Time now);

  CustomerProfileStore* const store_;
  Clock* const clock_;
  const internal::SegmentRules rules_;
  const internal::ChurnModel churn_model_;
  prometheus::Gauge& repeat_purchase_;
  prometheus::Gauge& retention_90d_;
  prometheus::Gauge& csat_;
  prometheus::Gauge& on_time_;
  prometheus::Gauge& sla_compliance_;
  prometheus::Gauge& at_risk_;
  prometheus::Family<prometheus::Gauge>& retention_actions_;
  prometheus::Family<prometheus::Gauge>& retention_rate_;
  prometheus::Gauge& refreshed_;

  absl::Mutex refresh_mu_;  // one refresh at a time
  // Counts orders against the buyers the last refresh counted.
  rpc::EarlyRefresh early_{{.small_base = 1000}};
  mutable absl::Mutex mu_;
  std::shared_ptr<const Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  rpc::PeriodicTask periodic_;
};

}  // namespace crm::customer_profile
