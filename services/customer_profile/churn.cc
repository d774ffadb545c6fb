#include "services/customer_profile/churn.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libs/api/text_format.h"
#include "libs/base/logistic.h"
#include "libs/base/status_macros.h"
#include "libs/text/file.h"

namespace crm::customer_profile {

extern const char kBuiltInChurnModelText[];

namespace {

constexpr std::array<absl::string_view, kChurnFeatureCount> kNames = {
    "days_since_last_order", "buying_days",  "buying_days_last_30", "buying_days_last_90",
    "buying_rate",           "overdue",      "value_12m",           "return_share",
    "open_complaints",       "sla_breaches", "delivery_trouble",
};

int FeatureOf(absl::string_view name) {
  for (int i = 0; i < kChurnFeatureCount; ++i) {
    if (kNames[i] == name) return i;
  }
  return -1;
}

// What a feature that raised the score says to a person, in the customer's own numbers.
std::string Reason(ChurnFeature f, const ChurnFacts& facts, absl::Time now,
                   const ChurnFeatures& x) {
  const double since = std::expm1(x[kDaysSinceLastOrder]);
  const int days = static_cast<int>(std::lround(std::expm1(x[kBuyingDays])));
  switch (f) {
    case kDaysSinceLastOrder: return absl::StrFormat("%.0f days since the last order", since);
    case kOverdue:
      return absl::StrFormat("%.0f days since the last order, usually every %.0f days", since,
                             1 / std::exp(x[kBuyingRate]));
    case kBuyingDays:
      return absl::StrFormat("ordered on %d day%s so far", days, days == 1 ? "" : "s");
    case kBuyingRate:
      return absl::StrFormat("orders rarely: every %.0f days on average",
                             1 / std::exp(x[kBuyingRate]));
    case kBuyingDaysLast30:
    case kBuyingDaysLast90: {
      const int window = f == kBuyingDaysLast30 ? 30 : 90;
      const int recent = static_cast<int>(std::lround(std::expm1(x[f])));
      return recent == 0 ? absl::StrFormat("no order in the last %d days", window)
                         : absl::StrFormat("ordered on only %d day%s in the last %d days", recent,
                                           recent == 1 ? "" : "s", window);
    }
    case kValue12m:
      return absl::StrFormat("spent little in the last 12 months (%.0f)", std::expm1(x[kValue12m]));
    case kReturnShare:
      return absl::StrFormat("%d return(s) from %d recent order(s)", facts.returns,
                             facts.orders_180d);
    case kOpenComplaints: return absl::StrFormat("%d open complaint(s)", facts.open_complaints);
    case kSlaBreaches: return absl::StrFormat("%d missed service promise(s)", facts.sla_breaches);
    case kDeliveryTrouble:
      return absl::StrFormat("%d failed or late deliveries", facts.failed_or_late_deliveries);
    case kChurnFeatureCount: break;
  }
  return "";
}

// Solves a x = b in place (Gaussian elimination with partial pivoting); false when singular.
bool Solve(std::vector<std::vector<double>>& a, std::vector<double>& b) {
  const size_t n = b.size();
  for (size_t col = 0; col < n; ++col) {
    size_t pivot = col;
    for (size_t r = col + 1; r < n; ++r) {
      if (std::abs(a[r][col]) > std::abs(a[pivot][col])) pivot = r;
    }
    if (std::abs(a[pivot][col]) < 1e-12) return false;
    std::swap(a[col], a[pivot]);
    std::swap(b[col], b[pivot]);
    for (size_t r = 0; r < n; ++r) {
      if (r == col) continue;
      const double f = a[r][col] / a[col][col];
      if (f == 0) continue;
      for (size_t c = col; c < n; ++c) a[r][c] -= f * a[col][c];
      b[r] -= f * b[col];
    }
  }
  for (size_t i = 0; i < n; ++i) b[i] /= a[i][i];
  return true;
}

}  // namespace

absl::string_view ChurnFeatureName(ChurnFeature feature) { return kNames[feature]; }

absl::StatusOr<ChurnFeature> ChurnFeatureByName(absl::string_view name) {
  const int f = FeatureOf(name);
  if (f < 0)
    return absl::InvalidArgumentError(absl::StrCat("no churn feature is called \"", name, "\""));
  return static_cast<ChurnFeature>(f);
}

ChurnFeatures ChurnFeaturesOf(const ChurnFacts& facts, absl::Time now) {
  ChurnFeatures x{};
  // Buying days in UTC: orders the same day are one visit.
  std::set<int64_t> days;
  for (absl::Time t : facts.order_times) {
    if (t <= now) days.insert(absl::ToUnixSeconds(t) / 86400);
  }
  const int64_t today = absl::ToUnixSeconds(now) / 86400;
  if (!days.empty()) {
    const double since = static_cast<double>(today - *days.rbegin());
    const double tenure = static_cast<double>(today - *days.begin());
    const double rate = static_cast<double>(days.size()) / (tenure + 30);
    int last_30 = 0, last_90 = 0;
    for (int64_t d : days) {
      last_30 += today - d < 30;
      last_90 += today - d < 90;
    }
    x[kDaysSinceLastOrder] = std::log1p(since);
    x[kBuyingDays] = std::log1p(static_cast<double>(days.size()));
    x[kBuyingDaysLast30] = std::log1p(last_30);
    x[kBuyingDaysLast90] = std::log1p(last_90);
    x[kBuyingRate] = std::log(rate);
    x[kOverdue] = std::log1p(since * rate);
  }
  x[kValue12m] = std::log1p(std::max<double>(0, static_cast<double>(facts.value_12m_minor) / 100));
  x[kReturnShare] = facts.orders_180d > 0
                        ? std::min(1.0, static_cast<double>(facts.returns) / facts.orders_180d)
                        : 0;
  x[kOpenComplaints] = facts.open_complaints;
  x[kSlaBreaches] = facts.sla_breaches;
  x[kDeliveryTrouble] = facts.failed_or_late_deliveries;
  return x;
}

absl::StatusOr<internal::ChurnModel> ParseChurnModel(absl::string_view text) {
  internal::ChurnModel model;
  CRM_RETURN_IF_ERROR(api::ParseTextProto("churn model", text, &model));
  std::set<std::string> seen;
  for (const auto& t : model.terms()) {
    const std::string where = api::LineOf(text, absl::StrCat("\"", t.feature(), "\""));
    if (FeatureOf(t.feature()) < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("churn model: ", where, "unknown feature \"", t.feature(), "\""));
    }
    if (!seen.insert(t.feature()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("churn model: ", where, "feature \"", t.feature(), "\" appears twice"));
    }
    if (!(t.scale() > 0) || !std::isfinite(t.mean()) || !std::isfinite(t.weight())) {
      return absl::InvalidArgumentError(
          absl::StrCat("churn model: ", where, "feature \"", t.feature(),
                       "\" needs a finite mean and weight and a scale > 0"));
    }
  }
  if (!std::isfinite(model.bias()))
    return absl::InvalidArgumentError("churn model: bias must be finite");
  if (model.horizon_days() <= 0) {
    return absl::InvalidArgumentError("churn model: horizon_days must be positive");
  }
  return model;
}

absl::StatusOr<internal::ChurnModel> ReadChurnModelFile(const std::string& path) {
  CRM_ASSIGN_OR_RETURN(auto contents, text::ReadFile(path));
  auto model = ParseChurnModel(contents);
  if (!model.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", model.status().message()));
  }
  return model;
}

namespace {
const text::BuiltIn<internal::ChurnModel>& ShippedChurnModel() {
  static const auto* model = new text::BuiltIn<internal::ChurnModel>(
      "churn model", kBuiltInChurnModelText, ParseChurnModel);
  return *model;
}
}  // namespace

const absl::StatusOr<internal::ChurnModel>& ParseBuiltInChurnModel() {
  return ShippedChurnModel().parsed();
}

const internal::ChurnModel& BuiltInChurnModel() { return ShippedChurnModel().value(); }

ChurnScore ScoreChurn(const internal::ChurnModel& model, const ChurnFacts& facts, absl::Time now) {
  ChurnScore out;
  if (facts.order_times.empty()) {
    out.reasons.push_back("no order yet");
    return out;
  }
  const ChurnFeatures x = ChurnFeaturesOf(facts, now);
  double z = model.bias();
  std::vector<std::pair<double, ChurnFeature>> parts;
  for (const auto& t : model.terms()) {
    const auto f = static_cast<ChurnFeature>(FeatureOf(t.feature()));
    const double contribution = t.weight() * (x[f] - t.mean()) / t.scale();
    z += contribution;
    parts.emplace_back(contribution, f);
  }
  out.score = Logistic(z);
  // Strongest first; equal contributions in feature order, so the same facts give the same reasons.
  std::stable_sort(parts.begin(), parts.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [contribution, f] : parts) {
    if (contribution <= 0.05 || out.reasons.size() == 3) break;
    out.reasons.push_back(Reason(f, facts, now, x));
  }
  return out;
}

double LogisticFit::Probability(const std::vector<double>& row) const {
  double eta = bias;
  for (size_t j = 0; j < weight.size(); ++j) eta += weight[j] * (row[j] - mean[j]) / scale[j];
  return Logistic(eta);
}

namespace {

// Each of the `n` columns' mean and standard deviation (1 for a constant column), so the fit works
// on standardised values.
void Standardise(const std::vector<std::vector<double>>& rows, size_t n, LogisticFit& fit) {
  const size_t count = rows.size();
  fit.mean.assign(n, 0);
  fit.scale.assign(n, 1);
  for (size_t j = 0; j < n; ++j) {
    double sum = 0, squares = 0;
    for (const auto& r : rows) sum += r[j];
    fit.mean[j] = sum / static_cast<double>(count);
    for (const auto& r : rows) squares += (r[j] - fit.mean[j]) * (r[j] - fit.mean[j]);
    const double sd = std::sqrt(squares / static_cast<double>(count));
    fit.scale[j] = sd > 1e-9 ? sd : 1;
  }
}

}  // namespace

LogisticFit FitLogistic(const std::vector<std::vector<double>>& rows,
                        const std::vector<bool>& labels, double l2,
                        const std::vector<double>& offsets) {
  LogisticFit fit;
  const size_t n = rows.empty() ? 0 : rows[0].size(), count = rows.size();
  Standardise(rows, n, fit);
  // Weights 0..n-1, the bias last (unpenalised).
  std::vector<double> w(n + 1, 0), z(n + 1, 1);
  for (int iteration = 0; iteration < 50 && count > 0; ++iteration) {
    std::vector<double> gradient(n + 1, 0);
    std::vector<std::vector<double>> hessian(n + 1, std::vector<double>(n + 1, 0));
    for (size_t i = 0; i < count; ++i) {
      double eta = w[n] + (offsets.empty() ? 0 : offsets[i]);
      for (size_t j = 0; j < n; ++j) {
        z[j] = (rows[i][j] - fit.mean[j]) / fit.scale[j];
        eta += w[j] * z[j];
      }
      const double p = Logistic(eta);
      const double residual = p - (labels[i] ? 1 : 0), curvature = p * (1 - p);
      for (size_t a = 0; a <= n; ++a) {
        gradient[a] += residual * z[a];
        for (size_t b = a; b <= n; ++b) hessian[a][b] += curvature * z[a] * z[b];
      }
    }
    for (size_t a = 0; a <= n; ++a) {
      for (size_t b = 0; b < a; ++b) hessian[a][b] = hessian[b][a];
    }
    for (size_t j = 0; j < n; ++j) {
      gradient[j] += l2 * w[j];
      hessian[j][j] += l2;
    }
    if (!Solve(hessian, gradient)) break;
    double step = 0;
    for (size_t a = 0; a <= n; ++a) {
      w[a] -= gradient[a];
      step = std::max(step, std::abs(gradient[a]));
    }
    if (step < 1e-9) break;
  }
  fit.weight.assign(w.begin(), w.begin() + static_cast<long>(n));
  fit.bias = w[n];
  return fit;
}

internal::ChurnModel FitChurnModel(const std::vector<ChurnExample>& examples,
                                   const ChurnFitOptions& options,
                                   const internal::ChurnModel& priors) {
  // Priors (terms not fitted) for features not fitted now are kept and weigh in as a fixed offset.
  std::vector<internal::ChurnModel::Term> fixed;
  for (const auto& t : priors.terms()) {
    const int f = FeatureOf(t.feature());
    if (f >= 0 && !t.fitted() &&
        std::find(options.features.begin(), options.features.end(), f) == options.features.end()) {
      fixed.push_back(t);
    }
  }
  std::vector<std::vector<double>> rows;
  std::vector<bool> labels;
  std::vector<double> offsets;
  for (const auto& e : examples) {
    auto& row = rows.emplace_back();
    for (ChurnFeature f : options.features) row.push_back(e.features[f]);
    labels.push_back(e.churned);
    double offset = 0;
    for (const auto& t : fixed)
      offset += t.weight() * (e.features[FeatureOf(t.feature())] - t.mean()) / t.scale();
    offsets.push_back(offset);
  }
  const LogisticFit fit = FitLogistic(rows, labels, options.l2, offsets);
  internal::ChurnModel model;
  model.set_horizon_days(options.horizon_days);
  model.set_provenance(options.provenance);
  model.set_bias(fit.bias);
  for (size_t j = 0; j < options.features.size(); ++j) {
    auto* t = model.add_terms();
    t->set_feature(std::string(kNames[options.features[j]]));
    t->set_mean(fit.mean[j]);
    t->set_scale(fit.scale[j]);
    t->set_weight(fit.weight[j]);
    t->set_fitted(true);
  }
  for (const auto& t : fixed) *model.add_terms() = t;
  return model;
}

}  // namespace crm::customer_profile
