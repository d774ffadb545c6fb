#include "libs/metrics/metrics.h"

#include <exception>

#include "absl/strings/str_cat.h"
#include "libs/log/log.h"

namespace crm::metrics {

const std::vector<double>& LatencyBuckets() {
  static const std::vector<double> buckets = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                              0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                              0.5,     1,      2.5,     5,      10};
  return buckets;
}

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      server_rpc_(std::make_unique<RpcMetrics>(*registry_, RpcMetrics::Side::kServer)),
      client_rpc_(std::make_unique<RpcMetrics>(*registry_, RpcMetrics::Side::kClient)),
      process_(std::make_shared<ProcessCollector>()) {
  collectables_.push_back(process_);
}

Metrics::~Metrics() = default;

absl::Status Metrics::Serve(const std::string& address) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address, /*num_threads=*/2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot listen on ", address, ": ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  for (const auto& c : collectables_) exposer_->RegisterCollectable(c);
  log::Info("metrics serving", {{"address", address}, {"port", port()}});
  return absl::OkStatus();
}

int Metrics::port() const {
  if (!exposer_) return 0;
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

void Metrics::AddCollectable(std::shared_ptr<prometheus::Collectable> collectable) {
  collectables_.push_back(collectable);
  if (exposer_) exposer_->RegisterCollectable(collectable);
}

}  // namespace crm::metrics
