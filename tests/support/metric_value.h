// Reads a metric straight from a prometheus-cpp registry in the test's process: the sum of the
// counter and gauge values of every series of `name` whose labels include `labels`, or a
// histogram's count and sum.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "prometheus/registry.h"

namespace crm::testing {

// Calls `each` with every series of `name` whose labels include `labels`.
template <typename Each>
void ForEachSeries(prometheus::Registry& registry, const std::string& name,
                   const std::map<std::string, std::string>& labels, Each each) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      bool match = true;
      for (const auto& [k, v] : labels) {
        bool found = false;
        for (const auto& l : m.label) found = found || (l.name == k && l.value == v);
        match = match && found;
      }
      if (match) each(m);
    }
  }
}

inline double MetricValue(prometheus::Registry& registry, const std::string& name,
                          const std::map<std::string, std::string>& labels = {}) {
  double total = 0;
  ForEachSeries(registry, name, labels, [&](const prometheus::ClientMetric& m) {
    total += m.counter.value + m.gauge.value;
  });
  return total;
}

// A histogram's observations over the matching series: how many, and their sum.
struct HistogramTotals {
  uint64_t count = 0;
  double sum = 0;
};
inline HistogramTotals HistogramValue(prometheus::Registry& registry, const std::string& name,
                                      const std::map<std::string, std::string>& labels = {}) {
  HistogramTotals totals;
  ForEachSeries(registry, name, labels, [&](const prometheus::ClientMetric& m) {
    totals.count += m.histogram.sample_count;
    totals.sum += m.histogram.sample_sum;
  });
  return totals;
}

}  // namespace crm::testing
