// Reads a metric straight from a prometheus-cpp registry in the test's process: the sum of the
// counter and gauge values of every series of `name` whose labels include `labels`.
#pragma once

#include <map>
#include <string>

#include "prometheus/registry.h"

namespace crm::testing {

inline double MetricValue(prometheus::Registry& registry, const std::string& name,
                          const std::map<std::string, std::string>& labels = {}) {
  double total = 0;
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      bool match = true;
      for (const auto& [k, v] : labels) {
        bool found = false;
        for (const auto& l : m.label) found = found || (l.name == k && l.value == v);
        match = match && found;
      }
      if (match) total += m.counter.value + m.gauge.value;
    }
  }
  return total;
}

}  // namespace crm::testing
