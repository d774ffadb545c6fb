// Runs one service in-process exactly as its main() would (same Component, same libs/rpc Server) on a
// free loopback port, over a real RocksDB in a temporary directory, with a ManualClock the test moves.
// Restart() closes everything and reopens the same data directory, as a process restart would.
// Its port admits only signed callers, as in production (loopback, no TLS): channel() calls as a process of
// the system (any method); ChannelAs() as a given caller, e.g. a customer through the gateway.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "grpcpp/channel.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "absl/flags/flag.h"
#include "libs/clock/clock.h"
#include "libs/events/producer.h"
#include "libs/metrics/metrics.h"
#include "libs/metrics/rocksdb_collector.h"
#include "libs/rpc/server.h"
#include "libs/rpc/service_main.h"
#include "libs/rpc/store_admin.h"
#include "libs/store/store.h"
#include "tests/support/caller.h"
#include "tests/support/temp_dir.h"

namespace crm::testing {

template <typename ComponentT>
class ServiceHarness {
 public:
  struct Options {
    std::string service_name = "test-service";
    std::vector<std::string> column_families;
    // Serve /metrics on a free port (costs ~2 s at shutdown: prometheus-cpp's web server polls).
    bool serve_metrics = false;
    // --event_sinks for the service under test: hermetic by default.
    std::string event_sinks = "none";
    // Addresses of other services (Backends::SetAddress), e.g. {"customer-profile", "127.0.0.1:1234"}.
    std::vector<std::pair<std::string, std::string>> backends;
    int shard_index = 0;
    // RocksDB memory: small by default so many harnesses fit in one test process; bulk loads want more.
    size_t block_cache_bytes = 8 << 20;
    size_t memtable_budget_bytes = 8 << 20;
  };

  explicit ServiceHarness(Options options) : options_(std::move(options)) { Start(); }
  ~ServiceHarness() { Stop(); }

  void Restart() {
    Stop();
    Start();
  }
  // Restores a backup as an operator would: stop, make the checkpoint folder the data folder, start.
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
    return testing::ChannelAs("127.0.0.1:" + std::to_string(port), caller);
  }
  ManualClock& clock() { return clock_; }
  ComponentT& component() { return *component_; }
  // Other services' channels as this service sees them.
  rpc::Backends& backends() { return *backends_; }
  store::Store& store() { return *store_; }
  metrics::Metrics& metrics() { return *metrics_; }
  int port() const { return server_->port(); }
  const std::string& data_dir() const { return data_dir_; }

 private:
  void Start() {
    if (data_dir_.empty()) data_dir_ = dir_.Sub("data");
    metrics_ = std::make_unique<metrics::Metrics>();
    if (options_.serve_metrics && !metrics_->Serve("127.0.0.1:0").ok()) throw std::runtime_error("metrics");
    store::StoreOptions so;
    so.path = data_dir_;
    so.block_cache_bytes = options_.block_cache_bytes;
    so.memtable_budget_bytes = options_.memtable_budget_bytes;
    auto store = store::Store::Open(so, options_.column_families);
    if (!store.ok()) throw std::runtime_error(store.status().ToString());
    store_ = std::move(*store);
    metrics_->AddCollectable(std::make_shared<metrics::RocksDbCollector>(store_.get()));
    backends_ = std::make_unique<rpc::Backends>(metrics_.get());
    // Hermetic: a service the test does not name is unreachable (port 1), never a local run's default port.
    for (const auto& info : rpc::DataServices()) backends_->SetAddress(info.name, "127.0.0.1:1");
    for (const auto& [name, address] : options_.backends) backends_->SetAddress(name, address);
    absl::SetFlag(&FLAGS_event_sinks, options_.event_sinks);
    // A consumer that comes back is found within half a second, not ten.
    absl::SetFlag(&FLAGS_event_max_backoff_ms, 500);
    rpc::ServiceContext context{options_.service_name, store_.get(), metrics_.get(), &clock_, backends_.get(),
                                options_.shard_index};
    auto component = ComponentT::Create(context);
    if (!component.ok()) throw std::runtime_error(component.status().ToString());
    component_ = std::move(*component);
    rpc::ServerOptions server_options;
    server_options.listen_address = "127.0.0.1:0";
    server_options.drain_grace = absl::Seconds(2);
    server_options.metrics = metrics_.get();
    server_options.authenticate_callers = true;
    server_ = std::make_unique<rpc::Server>(server_options);
    component_->Register(*server_);
    store_admin_ = std::make_unique<rpc::StoreAdminService>(options_.service_name, options_.shard_index, store_.get(),
                                                            dir_.Sub("backups"));
    server_->AddService(store_admin_.get(), "crm.v1.StoreAdminService");
    auto s = server_->Start();
    if (!s.ok()) throw std::runtime_error(s.ToString());
    component_->Start();
    server_->SetServing(true);
    channel_ = ChannelAs(InternalCaller(), server_->port());
  }

  void Stop() {
    if (!server_) return;
    server_->Shutdown();
    component_->Stop();
    component_.reset();
    server_.reset();
    store_admin_.reset();
    store_.reset();
    backends_.reset();
    metrics_.reset();
    channel_.reset();
  }

  Options options_;
  TempDir dir_;
  std::string data_dir_;
  ManualClock clock_;
  std::unique_ptr<metrics::Metrics> metrics_;
  std::unique_ptr<rpc::Backends> backends_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<ComponentT> component_;
  std::unique_ptr<rpc::StoreAdminService> store_admin_;
  std::unique_ptr<rpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace crm::testing
