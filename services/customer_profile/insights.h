// Segments, churn risk and business KPIs from what customer-profile learns through events. Pure:
// the store feeds it histories, the refresher keeps the population figures.
//
//   FoldEvent   an order / delivery / refund / review / ticket event into the customer's history
//   Summarise   a history as of now: counts, 12-month value, rhythm, trouble (the facts of the API)
//   Population  cut points over every customer: RFM quintiles, key-customer threshold
//   Assess      one customer's RFM scores and segment, buyer level, key flag and churn risk
//   Kpis        the operational KPIs over every customer
#pragma once

#include <array>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/internal/customer_profile_storage.pb.h"
#include "crm/v1/customer_profile.pb.h"
#include "crm/v1/events.pb.h"
#include "services/customer_profile/churn.h"

namespace crm::customer_profile {

// The newest orders and tickets kept per customer; older ones count only in the totals.
inline constexpr int kMaxOrdersKept = 400;
inline constexpr int kMaxTicketsKept = 100;

// Folds one event into the history. Returns false for events that change nothing here (unknown
// payloads, a repeat of an already folded fact such as a second OrderPlaced for the same order).
bool FoldEvent(const v1::Event& event, internal::CustomerHistory& history);

// Segment rules with defaults filled in; INVALID_ARGUMENT naming the field when a rule makes no
// sense.
absl::StatusOr<internal::SegmentRules> ValidateSegmentRules(internal::SegmentRules rules);
internal::SegmentRules DefaultSegmentRules();
absl::StatusOr<internal::SegmentRules> ReadSegmentRulesFile(const std::string& path);

// One customer's history as of `now`.
struct Summary {
  v1::PurchaseFacts facts;
  std::vector<absl::Time> order_times;  // placed, not cancelled, oldest first
  int64_t value_12m_minor = 0;          // net spend over the last 12 months
  double days_since_last_order = -1;    // whole days; -1 without orders
  ChurnFacts churn;
};
Summary Summarise(const internal::CustomerHistory& history, absl::Time now);

// Figures over the whole customer base (of this shard), recomputed by the refresher.
struct Population {
  absl::Time computed = absl::InfinitePast();
  // Customers with a purchase the cut points were computed over.
  int64_t buyers = 0;
  // Ascending cut points at the 20th/40th/60th/80th percentile among customers with a purchase.
  std::array<double, 4> days_since_cuts{};  // recency: fewer days score higher
  std::array<double, 4> frequency_cuts{};
  std::array<double, 4> monetary_cuts{};
  // 12-month value at or above which a customer is a key customer (0: no key customers yet).
  int64_t key_customer_min_value = 0;
};

// Collects the few numbers per customer the population needs (a scan of a million customers keeps
// ~20 MB, not their summaries), then builds it.
class PopulationBuilder {
 public:
  void Add(const Summary& summary);
  Population Build(const internal::SegmentRules& rules, absl::Time now);

 private:
  std::vector<float> days_since_;
  std::vector<int32_t> frequency_;
  std::vector<int64_t> monetary_;
};

// Days after an order during which the customer is never at risk (churn flag, AT_RISK / HIBERNATING
// segments): the order answers the question those ask, and a retention offer days after a purchase
// is noise.
inline constexpr double kJustOrderedDays = 7;

v1::BuyerLevel LevelOf(const Summary& summary, const internal::SegmentRules& rules);
v1::RfmScores RfmOf(const Summary& summary, const Population& population);
v1::CustomerInsights Assess(absl::string_view customer_id, const Summary& summary,
                            const Population& population, const internal::SegmentRules& rules,
                            const internal::ChurnModel& churn_model, absl::Time now);

// Outcome of a retention action given the customer's orders: RETAINED when an order was placed
// after the action and within the window, LOST when the window passed without one.
void JudgeRetention(const Summary& summary, absl::Time now, v1::RetentionAction& action);

// KPIs over the customer base: each a ratio in 0..1 (CSAT: 1..5), NaN-free (0 when undefined).
struct Kpis {
  double repeat_purchase_rate = 0;  // of customers who bought, the share who bought at least twice
  double retention_90d_rate =
      0;  // of customers who bought 90-180 days ago, the share who bought in the last 90
  double csat_average = 0;  // over rated complaints opened in the last 90 days
  double on_time_delivery_rate =
      0;  // of orders delivered in the last 90 days, inside the agreed window
  double sla_compliance_rate =
      0;  // of complaints resolved in the last 90 days, without a missed promise
  int64_t at_risk_customers = 0;
  int64_t customers = 0;
};

// Adds one customer to running KPI sums; Finish turns them into ratios.
class KpiAccumulator {
 public:
  explicit KpiAccumulator(absl::Time now) : now_(now) {}
  void Add(const internal::CustomerHistory& history, const Summary& summary, bool at_risk);
  Kpis Finish() const;

 private:
  absl::Time now_;
  int64_t customers_ = 0, buyers_ = 0, repeat_buyers_ = 0, cohort_ = 0, retained_ = 0;
  int64_t csat_sum_ = 0, csat_count_ = 0, delivered_ = 0, on_time_ = 0, resolved_ = 0,
          compliant_ = 0;
  int64_t at_risk_ = 0;
};

}  // namespace crm::customer_profile
