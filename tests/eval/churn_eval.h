// Rolling-origin evaluation of the churn model against simple baselines, on histories built the way
// customer-profile builds them (events folded by FoldEvent, summarised by Summarise).
//
// At each evaluated cut-off, every customer with an order before it is scored as of the cut-off; a
// churner is one with no order in the `horizon_days` after it. The model is refitted on training
// windows whose horizon ended before the cut-off (every `training_step` from
// `first_training_cutoff`), so nothing it learns has seen the outcome it is scored on; the RFM
// logistic baseline is fitted by the same fitter on the same windows. Recency and order count need
// no fitting. The shipped model is scored beside them (it was fitted on windows up to the end of
// the data, so on this data it is partly in-sample).
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "crm/internal/customer_profile_storage.pb.h"
#include "services/customer_profile/churn.h"
#include "tests/eval/datasets.h"

namespace crm::eval {

struct ChurnCase {
  std::string customer_id;
  customer_profile::ChurnFacts facts;
  customer_profile::ChurnFeatures features{};
  int orders = 0;              // orders before the cut-off (invoices, as the baseline counts them)
  double days_since_last = 0;  // whole days
  double value_12m = 0;        // major units
  bool churned = false;
};

// Every customer with an order before `cutoff`, as customer-profile would see them at that moment.
std::vector<ChurnCase> ChurnCasesAt(const Dataset& data, absl::Time cutoff, int horizon_days);

struct ChurnEvalOptions {
  int horizon_days = 90;
  std::vector<absl::Time> cutoffs;
  absl::Time first_training_cutoff;
  absl::Duration training_step = absl::Hours(24 * 14);
  std::vector<customer_profile::ChurnFeature> features;
  double l2 = 1.0;
};

struct ChurnCutoffRow {
  absl::Time cutoff;
  int customers = 0, training_windows = 0;
  double churn_rate = 0;
  double model_auc = 0, model_brier = 0;      // refitted on earlier windows
  double shipped_auc = 0, shipped_brier = 0;  // the model file as shipped
  double recency_auc = 0, orders_auc = 0, rfm_auc = 0, rfm_brier = 0;
  // Ranked by expected value lost (probability x 12-month value): the share of the value of those
  // who churned that the top 20% of customers holds; beside it the same share when ranked by value
  // alone.
  double value_capture_20 = 0, value_only_capture_20 = 0;

  double BestBaselineAuc() const;
};

struct ChurnReport {
  std::string dataset;
  std::vector<ChurnCutoffRow> rows;
  std::string Markdown() const;
};

ChurnReport EvaluateChurn(const Dataset& data, const ChurnEvalOptions& options,
                          const internal::ChurnModel& shipped);

// The training windows (cut-offs) that `options` allows for a model scored at `cutoff`; all of them
// whose horizon ends by `data.end` when `cutoff` is InfiniteFuture (the shipped model's windows).
std::vector<absl::Time> TrainingCutoffs(const Dataset& data, const ChurnEvalOptions& options,
                                        absl::Time cutoff);

// Fits the model on the given windows.
internal::ChurnModel FitOnWindows(const Dataset& data, const ChurnEvalOptions& options,
                                  const std::vector<absl::Time>& windows,
                                  const std::string& provenance);

// The features the shipped model uses, and the evaluation protocol for `data`: the last three
// firsts of a month with 90 days of data after them, windows fitted every 14 days from the first
// first of a month a month into the data. For the shipped Online Retail file: May to July 2011,
// from January.
ChurnEvalOptions ChurnProtocolFor(const Dataset& data);

// Area under the ROC curve: the chance that a random positive scores above a random negative (ties
// half).
double Auc(std::vector<std::pair<double, bool>> scored);

}  // namespace crm::eval
