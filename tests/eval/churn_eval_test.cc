// How well the churn model ranks customers who are about to stop buying, on data it was not fitted
// on: synthetic histories with known churners, and the real Online Retail transactions scored by
// rolling origin against the baselines (tests/eval/churn_eval.h). Prints the figures README
// records.
#include "tests/eval/churn_eval.h"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "catch2/catch.hpp"
#include "services/customer_profile/churn.h"

namespace crm {
namespace {

using customer_profile::ChurnFacts;
using customer_profile::ScoreChurn;

constexpr char kOnlineRetail[] =
    CRM_SOURCE_ROOT "/tests/data/online-retail/transactions-2010-12-to-2011-09.csv.gz";

absl::Time Day(int y, int m, int d) {
  return absl::FromCivil(absl::CivilDay(y, m, d), absl::UTCTimeZone());
}

TEST_CASE(
    "churn score ranks synthetic churners (their rhythm stops) above stayers with an AUC of at "
    "least 0.8") {
  absl::BitGen gen(std::seed_seq{20261123});
  const absl::Time cutoff = absl::FromCivil(absl::CivilDay(2026, 10, 1), absl::UTCTimeZone());
  std::vector<std::pair<double, bool>> model, recency;
  for (int c = 0; c < 3000; ++c) {
    const bool churner = absl::Bernoulli(gen, 0.3);
    const double gap_days = absl::Uniform(gen, 7.0, 90.0);
    const double basket = absl::Uniform(gen, 20.0, 200.0);
    absl::Time t = cutoff - absl::Hours(24 * absl::Uniform(gen, 400.0, 900.0));
    // A churner's rhythm stops some time before the cut-off; a stayer keeps buying up to it.
    const absl::Time stop =
        churner ? cutoff - absl::Hours(24 * absl::Uniform(gen, 20.0, 240.0)) : cutoff;
    ChurnFacts facts;
    while (t < stop) {
      facts.order_times.push_back(t);
      if (t >= cutoff - absl::Hours(24 * 365))
        facts.value_12m_minor += static_cast<int64_t>(basket * 100);
      t += absl::Hours(24 * gap_days * absl::Uniform(gen, 0.5, 1.5));
    }
    if (facts.order_times.empty()) continue;
    // Things going wrong are more common before someone leaves.
    const double trouble = churner ? 0.4 : 0.1;
    if (absl::Bernoulli(gen, trouble)) facts.open_complaints = 1;
    if (absl::Bernoulli(gen, trouble)) facts.failed_or_late_deliveries = absl::Uniform(gen, 1, 3);
    if (absl::Bernoulli(gen, trouble / 2)) facts.sla_breaches = 1;
    model.emplace_back(ScoreChurn(facts, cutoff).score, churner);
    recency.emplace_back(absl::ToDoubleHours(cutoff - facts.order_times.back()), churner);
  }
  const double auc = eval::Auc(model), base = eval::Auc(recency);
  std::printf("churn, synthetic (%zu customers): AUC %.3f, recency-only baseline %.3f\n",
              model.size(), auc, base);
  CHECK(auc >= 0.8);
  // Not required to beat recency here: in this planted world a churner is by definition someone
  // whose orders stopped, so recency is nearly perfect (0.97), while the shipped weights are the
  // Online Retail shop's, where a frequent buyer's silence rarely meant leaving. A shop refits on
  // its own history.

  // A customer gone quiet with an open complaint: riskier than the same customer in the week after
  // their last order, and the reasons name what raised the score, in the customer's own numbers.
  ChurnFacts quiet;
  quiet.order_times = {cutoff - absl::Hours(24 * 150), cutoff - absl::Hours(24 * 120)};
  quiet.value_12m_minor = 60'00;
  quiet.open_complaints = 1;
  const auto s = ScoreChurn(quiet, cutoff);
  const auto fresh = ScoreChurn(quiet, cutoff - absl::Hours(24 * 113));
  CHECK(s.score > 0.5);
  CHECK(s.score > fresh.score);
  REQUIRE(s.reasons.size() >= 2);
  CHECK(std::count(s.reasons.begin(), s.reasons.end(), "no order in the last 90 days") == 1);
  CHECK(std::count(s.reasons.begin(), s.reasons.end(), "1 open complaint(s)") == 1);
}

TEST_CASE(
    "churn on the real Online Retail customers, rolling origin: the model beats recency, order "
    "count and an "
    "RFM logistic at every cut-off, calibrated better, and its at-risk order captures more of the "
    "value lost") {
  auto data = eval::OnlineRetail(kOnlineRetail, 100);
  REQUIRE(data.ok());
  const eval::ChurnEvalOptions protocol = eval::ChurnProtocolFor(*data);
  const eval::ChurnReport report =
      eval::EvaluateChurn(*data, protocol, customer_profile::BuiltInChurnModel());
  std::printf("%s\n", report.Markdown().c_str());
  REQUIRE(report.rows.size() == protocol.cutoffs.size());
  for (const auto& r : report.rows) {
    INFO(absl::FormatTime("%Y-%m-%d", r.cutoff, absl::UTCTimeZone()));
    CHECK(r.customers > 2000);
    CHECK(r.training_windows >= 3);
    // Ahead of each baseline, fitted on the same windows by the same fitter where they need
    // fitting.
    CHECK(r.model_auc > r.BestBaselineAuc());
    CHECK(r.model_auc >= r.recency_auc + 0.05);
    CHECK(r.model_auc >= r.orders_auc + 0.02);
    CHECK(r.model_brier < r.rfm_brier);
    CHECK(r.shipped_brier < r.rfm_brier);
    // Ranked by probability x value, the top fifth holds more of the lost value than by value
    // alone.
    CHECK(r.value_capture_20 > r.value_only_capture_20);
  }
}

TEST_CASE("the shipped churn model is what crm-churn-fit fits on the shipped data") {
  auto data = eval::OnlineRetail(kOnlineRetail, 100);
  REQUIRE(data.ok());
  const eval::ChurnEvalOptions protocol = eval::ChurnProtocolFor(*data);
  // The cut-offs come from the data's own dates: for this file, those the model was fitted with.
  CHECK(protocol.cutoffs ==
        std::vector<absl::Time>{Day(2011, 5, 1), Day(2011, 6, 1), Day(2011, 7, 1)});
  CHECK(protocol.first_training_cutoff == Day(2011, 1, 1));
  CHECK(
      eval::MonthlyCutoffs(*data, 4, absl::Hours(24 * 30)) ==
      std::vector<absl::Time>{Day(2011, 6, 1), Day(2011, 7, 1), Day(2011, 8, 1), Day(2011, 9, 1)});
  const auto refit = eval::FitOnWindows(
      *data, protocol, eval::TrainingCutoffs(*data, protocol, absl::InfiniteFuture()), "refit");
  const auto& shipped = customer_profile::BuiltInChurnModel();
  CHECK(shipped.horizon_days() == protocol.horizon_days);
  CHECK(shipped.bias() == Approx(refit.bias()).margin(1e-9));
  REQUIRE(shipped.terms_size() == refit.terms_size());
  for (int i = 0; i < refit.terms_size(); ++i) {
    INFO(refit.terms(i).feature());
    CHECK(shipped.terms(i).feature() == refit.terms(i).feature());
    CHECK(shipped.terms(i).fitted() == refit.terms(i).fitted());
    CHECK(shipped.terms(i).weight() == Approx(refit.terms(i).weight()).margin(1e-9));
    CHECK(shipped.terms(i).mean() == Approx(refit.terms(i).mean()).margin(1e-9));
  }
}

TEST_CASE(
    "another shop's transactions in the same format: the data's end, held-out month and the "
    "cut-offs of both evaluations come from its own dates") {
  // One customer orders on the 15th of each month from March 2019, the last order on 10 February
  // 2020; another once, in April 2019.
  std::string path = std::filesystem::temp_directory_path() / "crm-other-shop-XXXXXX";
  const int fd = mkstemp(path.data());
  REQUIRE(fd >= 0);
  close(fd);
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  gzputs(f, "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n");
  int invoice = 100000;
  for (absl::CivilDay day(2019, 3, 15); day < absl::CivilDay(2020, 2, 1);
       day = absl::CivilDay(absl::CivilMonth(day) + 1) + 14) {
    gzprintf(f, "%d,21001,TEA CUP,2,%04d-%02d-%02d 10:00:00,1.50,12345.0,Norway\n", ++invoice,
             static_cast<int>(day.year()), day.month(), day.day());
  }
  gzprintf(f, "%d,21002,TEA POT,1,2019-04-20 09:00:00,9.90,23456.0,Norway\n", ++invoice);
  gzprintf(f, "%d,21001,TEA CUP,3,2020-02-10 16:30:00,1.50,12345.0,Norway\n", ++invoice);
  gzclose(f);
  auto data = eval::OnlineRetail(path, 100);
  std::remove(path.c_str());
  INFO(data.status().ToString());
  REQUIRE(data.ok());
  CHECK(data->orders.size() == 13);
  CHECK(data->end == Day(2020, 2, 11));
  CHECK(data->split == Day(2020, 1, 12));
  CHECK(eval::MonthlyCutoffs(*data, 4, absl::Hours(24 * 30)) ==
        std::vector<absl::Time>{Day(2019, 10, 1), Day(2019, 11, 1), Day(2019, 12, 1),
                                Day(2020, 1, 1)});
  const eval::ChurnEvalOptions protocol = eval::ChurnProtocolFor(*data);
  CHECK(protocol.cutoffs ==
        std::vector<absl::Time>{Day(2019, 9, 1), Day(2019, 10, 1), Day(2019, 11, 1)});
  CHECK(protocol.first_training_cutoff == Day(2019, 5, 1));
  // Shorter data gives fewer cut-offs, never one without its horizon of data after it.
  CHECK(eval::MonthlyCutoffs(*data, 20, absl::Hours(24 * 30)).size() == 10);  // April to January
  CHECK(eval::MonthlyCutoffs(*data, 20, absl::Hours(24 * 400)).empty());
}

}  // namespace
}  // namespace crm
