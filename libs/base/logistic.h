// The logistic function, 1 / (1 + e^-z): a log-odds as a probability, for the models fitted by
// logistic regression (customer-profile's churn score, complaint-ticket's severity model).
// Saturates to 0 or 1 for large |z| (e^-z overflows to infinity, which IEEE arithmetic divides
// through). Pure; thread-safe.
#pragma once

#include <cmath>

namespace crm {

inline double Logistic(double z) { return 1 / (1 + std::exp(-z)); }

}  // namespace crm
