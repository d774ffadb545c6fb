// Runs one service in-process exactly as its main() would (the same rpc::ServiceRuntime) on a free
// loopback port, over a real RocksDB in a temporary directory, with a ManualClock the test moves.
// Restart() closes everything and reopens the same data directory, as a process restart would. Its
// port admits only signed callers, as in production (loopback, no TLS): channel() calls as a
// process of the system (any method); ChannelAs() as a given caller, e.g. a customer through the
// gateway.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "grpcpp/channel.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "libs/clock/clock.h"
#include "libs/events/producer.h"
#include "libs/metrics/metrics.h"
#include "libs/rpc/service_runtime.h"
#include "libs/store/store.h"
#include "tests/support/caller.h"
#include "tests/support/temp_dir.h"

namespace crm::testing {

// "127.0.0.1:<port>": where a harness (or any in-process server of a test) listens, as
// Options::backends and Backends::SetAddress take it.
inline std::string LoopbackAddress(int port) { return "127.0.0.1:" + std::to_string(port); }

// ComponentT: a service's Component with its static Spec() (name, column families, how to build
// it).
template <typename ComponentT>
class ServiceHarness {
 public:
  struct Options {
    // Serve /metrics on a free port (costs ~2 s at shutdown: prometheus-cpp's web server polls).
    bool serve_metrics = false;
    // --event_sinks for the service under test: hermetic by default.
    std::string event_sinks = "none";
    // Addresses of other services (Backends::SetAddress), e.g. {"customer-profile",
    // "127.0.0.1:1234"}.
    std::vector<std::pair<std::string, std::string>> backends;
    int shard_index = 0;
    // RocksDB memory: small by default so many harnesses fit in one test process; bulk loads want
    // more.
    size_t block_cache_bytes = 8 << 20;
    size_t memtable_budget_bytes = 8 << 20;
    // StoreOptions::disk_reserve_bytes: writes are refused while the data volume has less free
    // (0: none, as a test's temporary directory has no volume of its own).
    uint64_t disk_reserve_bytes = 0;
  };

  explicit ServiceHarness(Options options) : options_(std::move(options)) { Start(); }
  ~ServiceHarness() { Stop(); }

  void Restart() {
    Stop();
    Start();
  }
  // Restores a backup as an operator would: stop, make the checkpoint folder the data folder,
  // start.
  void RestoreFrom(const std::string& checkpoint_dir) {
    Stop();
    data_dir_ = checkpoint_dir;
    Start();
  }

  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  std::shared_ptr<grpc::Channel> ChannelAs(const auth::Caller& caller) const {
    return ChannelAs(caller, port());
  }
  static std::shared_ptr<grpc::Channel> ChannelAs(const auth::Caller& caller, int port) {
    return testing::ChannelAs(LoopbackAddress(port), caller);
  }
  ManualClock& clock() { return clock_; }
  ComponentT& component() { return static_cast<ComponentT&>(runtime_->component()); }
  // Other services' channels as this service sees them.
  rpc::Backends& backends() { return runtime_->backends(); }
  store::Store& store() { return *runtime_->store(); }
  metrics::Metrics& metrics() { return runtime_->metrics(); }
  int port() const { return runtime_->port(); }
  const std::string& data_dir() const { return data_dir_; }

 private:
  void Start() {
    if (data_dir_.empty()) data_dir_ = dir_.Sub("data");
    rpc::RuntimeOptions o;
    o.store.path = data_dir_;
    o.store.block_cache_bytes = options_.block_cache_bytes;
    o.store.memtable_budget_bytes = options_.memtable_budget_bytes;
    o.store.disk_reserve_bytes = options_.disk_reserve_bytes;
    o.backup_dir = dir_.Sub("backups");
    if (options_.serve_metrics) o.metrics_listen = "127.0.0.1:0";
    o.server.listen_address = "127.0.0.1:0";
    o.server.drain_grace = absl::Seconds(2);
    o.shard_index = options_.shard_index;
    o.clock = &clock_;
    // Hermetic: a service the test does not name is unreachable (port 1), never a local run's
    // default port.
    for (const auto& info : rpc::DataServices())
      o.backend_addresses.emplace_back(info.name, "127.0.0.1:1");
    for (const auto& address : options_.backends) o.backend_addresses.push_back(address);
    absl::SetFlag(&FLAGS_event_sinks, options_.event_sinks);
    // A consumer that comes back is found within half a second, not ten.
    absl::SetFlag(&FLAGS_event_max_backoff_ms, 500);
    auto runtime = rpc::ServiceRuntime::Start(ComponentT::Spec(), std::move(o));
    if (!runtime.ok()) throw std::runtime_error(runtime.status().ToString());
    runtime_ = std::move(*runtime);
    channel_ = ChannelAs(InternalCaller(), port());
  }

  void Stop() {
    if (!runtime_) return;
    runtime_->Stop();
    runtime_.reset();
    channel_.reset();
  }

  Options options_;
  TempDir dir_;
  std::string data_dir_;
  ManualClock clock_;
  std::unique_ptr<rpc::ServiceRuntime> runtime_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace crm::testing
