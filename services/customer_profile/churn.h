// Churn early warning: how likely a customer is to stop buying, from their own purchase rhythm and from
// what went wrong for them, with the reasons that weigh most. Pure: the store feeds it the facts.
//
// The model is a logistic score over a few signals a retention team can act on:
//  - overdue: days since the last order relative to the customer's own typical gap between orders (a weekly
//    buyer silent for a month is more worrying than a quarterly buyer silent for a month);
//  - slowing: orders in the last 180 days against the 180 before;
//  - loyalty (lowers the score): how many orders in the last year;
//  - trouble: open complaints, missed service promises (SLA breaches), failed or late deliveries, returns.
// Customers with a single order have no rhythm of their own; the population's typical gap stands in.
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace crm::customer_profile {

struct ChurnFacts {
  std::vector<absl::Time> order_times;  // any order
  int open_complaints = 0;
  int sla_breaches = 0;  // in the last 180 days
  int failed_or_late_deliveries = 0;  // in the last 180 days
  int returns = 0;  // in the last 180 days
};

struct ChurnScore {
  double score = 0;  // 0..1
  // The signals that raised the score most, strongest first, e.g. "38 days since the last order, usually
  // every 9 days".
  std::vector<std::string> reasons;
};

// `typical_gap`: the population's median gap between orders, for customers with fewer than two orders.
ChurnScore ScoreChurn(const ChurnFacts& facts, absl::Time now, absl::Duration typical_gap = absl::Hours(24 * 45));

}  // namespace crm::customer_profile
