// Churn early warning: the probability that a customer places no order within the model's horizon
// (90 days), from their own buying rhythm and from what went wrong for them, with the signals that
// raised it most. Pure: the store feeds it the facts.
//
// The model is a logistic regression over named features (ChurnFeature) whose weights are data
// (internal::ChurnModel): fitted by crm-churn-fit on a shop's history at several cut-offs
// (FitChurnModel), shipped as services/customer_profile/churn-model.textproto and replaceable with
// --churn_model_file. Why these features: in purchase histories the risk is carried by how
// recently, on how many separate days and how regularly someone buys, so days are counted rather
// than invoices (a wholesaler's three invoices in one morning are one visit), and silence is also
// measured against the customer's own rate. Complaints, missed promises and delivery trouble are
// signals a retention team acts on; shop histories without them cannot fit their weights, so the
// file marks those as priors (`fitted: false`).
#pragma once

#include <array>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/internal/customer_profile_storage.pb.h"

namespace crm::customer_profile {

struct ChurnFacts {
  std::vector<absl::Time> order_times;  // placed, not cancelled
  int64_t value_12m_minor = 0;          // net spend over the last 12 months
  int orders_180d = 0;                  // orders placed in the last 180 days, cancelled or not
  int returns = 0;                      // returns of those orders
  int open_complaints = 0;
  int sla_breaches = 0;               // in the last 180 days
  int failed_or_late_deliveries = 0;  // in the last 180 days
};

enum ChurnFeature : int {
  kDaysSinceLastOrder,  // log(1 + days since the last order)
  kBuyingDays,          // log(1 + distinct days with an order)
  kBuyingDaysLast30,    // log(1 + distinct days with an order in the last 30 days)
  kBuyingDaysLast90,    // log(1 + the same over 90 days)
  kBuyingRate,          // log(buying days per day of tenure, tenure + 30 days)
  kOverdue,             // log(1 + days since the last order x buying rate): silence in own gaps
  kValue12m,            // log(1 + 12-month net spend in major units)
  kReturnShare,         // returns / orders over the last 180 days
  kOpenComplaints,      // counts
  kSlaBreaches,
  kDeliveryTrouble,
  kChurnFeatureCount,
};
using ChurnFeatures = std::array<double, kChurnFeatureCount>;

// The stable name used in model files ("days_since_last_order", ...).
absl::string_view ChurnFeatureName(ChurnFeature feature);
// INVALID_ARGUMENT for a name no feature has.
absl::StatusOr<ChurnFeature> ChurnFeatureByName(absl::string_view name);

// The feature values of a customer with at least one order, as of `now`.
ChurnFeatures ChurnFeaturesOf(const ChurnFacts& facts, absl::Time now);

// Parses and checks a model in text format: every term names a known feature once, scales are
// positive, weights finite, horizon positive; errors name the line.
absl::StatusOr<internal::ChurnModel> ParseChurnModel(absl::string_view text);
// Reads and checks a model file; NOT_FOUND when it cannot be read, errors name the path and line.
absl::StatusOr<internal::ChurnModel> ReadChurnModelFile(const std::string& path);
// The model this binary was built with (services/customer_profile/churn-model.textproto), parsed
// once per process: or INTERNAL naming the line (the service refuses to start); BuiltInChurnModel
// is the same, empty if it did not parse (for tests and tools).
const absl::StatusOr<internal::ChurnModel>& ParseBuiltInChurnModel();
const internal::ChurnModel& BuiltInChurnModel();

struct ChurnScore {
  double score = 0;  // probability of no order within the model's horizon, 0..1
  // The signals that raised the score most, strongest first, e.g. "38 days since the last order,
  // usually every 9 days".
  std::vector<std::string> reasons;
};

// A customer without orders scores 0 with the reason "no order yet": a prospect cannot stop buying.
ChurnScore ScoreChurn(const internal::ChurnModel& model, const ChurnFacts& facts, absl::Time now);
inline ChurnScore ScoreChurn(const ChurnFacts& facts, absl::Time now) {
  return ScoreChurn(BuiltInChurnModel(), facts, now);
}

// One training example: a customer's features at a cut-off and whether they churned after it.
struct ChurnExample {
  ChurnFeatures features{};
  bool churned = false;
};

struct ChurnFitOptions {
  // The features to fit; `priors`' terms marked `fitted: false` for other features are kept as they
  // are.
  std::vector<ChurnFeature> features;
  // L2 penalty on standardised weights (the bias is not penalised).
  double l2 = 1.0;
  int horizon_days = 90;
  std::string provenance;
};

// L2-penalised logistic regression (Newton's method) on standardised columns: the churn model's
// fitter, also used by the evaluation for its baselines so that both are fitted the same way.
// Deterministic.
struct LogisticFit {
  std::vector<double> mean, scale, weight;  // per column
  double bias = 0;
  double Probability(const std::vector<double>& row) const;
};
LogisticFit FitLogistic(const std::vector<std::vector<double>>& rows,
                        const std::vector<bool>& labels, double l2,
                        const std::vector<double>& offsets = {});

// The churn model over `options.features` fitted on `examples`.
internal::ChurnModel FitChurnModel(const std::vector<ChurnExample>& examples,
                                   const ChurnFitOptions& options,
                                   const internal::ChurnModel& priors = {});

}  // namespace crm::customer_profile
