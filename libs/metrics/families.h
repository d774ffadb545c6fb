// Registering a metric in one line: the family's name and help on a registry, and for a metric
// without labels its one child. prometheus-cpp's builders, without their five-line chains.
// Thread-safe as prometheus::Registry is; the registry owns what it returns.
#pragma once

#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace crm::metrics {

prometheus::Family<prometheus::Counter>& CounterFamily(prometheus::Registry& registry,
                                                       const std::string& name,
                                                       const std::string& help);
prometheus::Family<prometheus::Gauge>& GaugeFamily(prometheus::Registry& registry,
                                                   const std::string& name,
                                                   const std::string& help);
prometheus::Family<prometheus::Histogram>& HistogramFamily(prometheus::Registry& registry,
                                                           const std::string& name,
                                                           const std::string& help);

// A counter or gauge without labels.
prometheus::Counter& Counter(prometheus::Registry& registry, const std::string& name,
                             const std::string& help);
prometheus::Gauge& Gauge(prometheus::Registry& registry, const std::string& name,
                         const std::string& help);

}  // namespace crm::metrics
