#include "services/customer_profile/churn.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace crm::customer_profile {
namespace {

// Weights of the logistic score. Chosen by hand for readability and checked on a synthetic population with
// known churners and on the real Online Retail transactions (tests/eval/churn_eval_test.cc).
constexpr double kBias = -2.0;
constexpr double kOverdue = 1.6;    // per doubling of (days since last order / usual gap)
constexpr double kSlowing = 1.2;    // 1 when orders stopped entirely compared with the half-year before
constexpr double kComplaint = 0.6;  // per open complaint
constexpr double kBreach = 0.5;     // per missed promise
constexpr double kDelivery = 0.4;   // per failed or late delivery
constexpr double kReturn = 0.2;     // per return
constexpr double kLoyalty = 0.5;    // per doubling of orders in the last year: frequent buyers come back

double Days(absl::Duration d) { return absl::ToDoubleHours(d) / 24; }

}  // namespace

ChurnScore ScoreChurn(const ChurnFacts& facts, absl::Time now, absl::Duration typical_gap) {
  std::vector<absl::Time> times = facts.order_times;
  std::sort(times.begin(), times.end());
  std::vector<std::pair<double, std::string>> parts;
  double z = kBias;

  if (!times.empty()) {
    absl::Duration gap = typical_gap;
    // Two or three orders say little about a rhythm; from four on the customer's own median gap counts,
    // shrunk toward the population's.
    if (times.size() >= 4) {
      std::vector<absl::Duration> gaps;
      for (size_t i = 1; i < times.size(); ++i) gaps.push_back(times[i] - times[i - 1]);
      std::nth_element(gaps.begin(), gaps.begin() + gaps.size() / 2, gaps.end());
      const double own = static_cast<double>(times.size() - 1);
      gap = std::max((gaps[gaps.size() / 2] * own + typical_gap * 3) / (own + 3), absl::Hours(24));
    }
    const double since = std::max(0.0, Days(now - times.back()));
    const double overdue = kOverdue * std::log2(std::max(since, 1.0) / std::max(Days(gap), 1.0));
    z += overdue;
    parts.emplace_back(overdue, absl::StrFormat("%.0f days since the last order, usually every %.0f days", since,
                                                Days(gap)));
    int recent = 0, before = 0;
    for (absl::Time t : times) {
      if (t >= now - absl::Hours(24 * 180)) {
        ++recent;
      } else if (t >= now - absl::Hours(24 * 360)) {
        ++before;
      }
    }
    const double loyalty = kLoyalty * std::log2(1.0 + recent + before);
    z -= loyalty;
    if (before > 0) {
      const double slowing = kSlowing * std::clamp(1.0 - static_cast<double>(recent) / before, -1.0, 1.0);
      z += slowing;
      parts.emplace_back(slowing, absl::StrFormat("%d orders in the last 6 months against %d in the 6 before",
                                                  recent, before));
    }
  } else {
    z += kOverdue;  // registered, never bought
    parts.emplace_back(kOverdue, "no order yet");
  }
  auto trouble = [&](int count, double weight, const char* what) {
    if (count <= 0) return;
    z += weight * count;
    parts.emplace_back(weight * count, absl::StrFormat("%d %s", count, what));
  };
  trouble(facts.open_complaints, kComplaint, "open complaint(s)");
  trouble(facts.sla_breaches, kBreach, "missed service promise(s)");
  trouble(facts.failed_or_late_deliveries, kDelivery, "failed or late deliveries");
  trouble(facts.returns, kReturn, "return(s)");

  ChurnScore out;
  out.score = 1 / (1 + std::exp(-z));
  std::sort(parts.begin(), parts.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [weight, why] : parts) {
    if (weight > 0 && out.reasons.size() < 3) out.reasons.push_back(why);
  }
  return out;
}

}  // namespace crm::customer_profile
