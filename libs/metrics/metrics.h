// A process's Prometheus registry and its /metrics endpoint (prometheus-cpp). Every metric of the
// process registers on registry(); Serve() exposes them over HTTP. Non-copyable; thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "libs/metrics/process_collector.h"
#include "libs/metrics/rpc_metrics.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"

namespace crm::metrics {

// Latency buckets in seconds, from 50µs to 10s: covers a cached point read through a slow fsync.
const std::vector<double>& LatencyBuckets();

class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  prometheus::Registry& registry() { return *registry_; }
  // Per-RPC metrics of the calls this process serves and of the calls it makes.
  RpcMetrics& server_rpc() { return *server_rpc_; }
  RpcMetrics& client_rpc() { return *client_rpc_; }
  // process_* gauges (memory, CPU, file descriptors), registered from construction.
  ProcessCollector& process() { return *process_; }

  // Starts serving GET /metrics on `address` ("0.0.0.0:9464", port 0 picks a free port).
  absl::Status Serve(const std::string& address);
  // The port /metrics listens on, or 0 when not serving.
  int port() const;
  // Adds a collector read at scrape time (e.g. RocksDB gauges). Kept alive by this object.
  void AddCollectable(std::shared_ptr<prometheus::Collectable> collectable);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<RpcMetrics> server_rpc_;
  std::unique_ptr<RpcMetrics> client_rpc_;
  std::shared_ptr<ProcessCollector> process_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace crm::metrics
