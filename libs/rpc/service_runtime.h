// One service's parts, built, started and stopped in the order a process needs them: /metrics,
// the RocksDB store, channels to the other services, the service's Component, the gRPC server
// (with health, reflection and the store admin), then on Stop: NOT_SERVING, drain in-flight calls,
// stop background work, close the store. RunService (libs/rpc/service_main.h) drives it from flags;
// the tests' ServiceHarness drives the same code with temporary folders and a manual clock, so a
// test runs a service exactly as its binary does.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/clock/clock.h"
#include "libs/metrics/metrics.h"
#include "libs/rpc/backends.h"
#include "libs/rpc/server.h"
#include "libs/rpc/store_admin.h"
#include "libs/store/store.h"

namespace crm::rpc {

// What a service builds once its store is open. Destroyed after the server has drained and before
// the store closes.
class Component {
 public:
  virtual ~Component() = default;
  // Adds the component's gRPC services (and shutdown hooks) to the server.
  virtual void Register(Server& server) = 0;
  // Called once the server is serving: start background work (event dispatch, sweeps).
  virtual void Start() {}
  // Called after the server has drained: stop background work.
  virtual void Stop() {}
  // For a component that serves --listen itself (ServiceSpec::internal_listen): the port it serves
  // on.
  virtual int PublicPort() const { return 0; }
};

struct ServiceContext {
  std::string service_name;
  store::Store* store = nullptr;  // null when the service has no column families
  metrics::Metrics* metrics = nullptr;
  Clock* clock = nullptr;
  // Channels to the other services.
  Backends* backends = nullptr;
  // This process's shard of its service (--shard_index), part of every event id it writes.
  int shard_index = 0;
  // Threads of the service's write pool (--write_threads); 0: the service's own number.
  int write_threads = 0;
};

struct ServiceSpec {
  // Process name in logs and the default data folder, e.g. "customer-profile".
  std::string name;
  std::string usage;
  std::string default_listen;
  std::string default_metrics_listen;
  // Column families of its store; empty means no store (the gateway).
  std::vector<std::string> column_families;
  // Merge operators of some of those families, by name (store::CounterSum for counter rows).
  std::map<std::string, std::shared_ptr<rocksdb::MergeOperator>> merge_operators;
  std::function<absl::StatusOr<std::unique_ptr<Component>>(ServiceContext&)> build;
  // The process forwards other services' calls and records their metrics itself (the gateway): no
  // per-call interceptors on its server or on its channels to the services.
  bool forwards_calls = false;
  // When set, the process's gRPC server listens here (loopback: health, reflection, reached through
  // the component) and the component serves --listen itself (the gateway's front door).
  std::string internal_listen;

  // Name, usage and default listen addresses of a data service; aborts on a name DataServices()
  // does not have (a wiring mistake). A data service's whole spec: events::DataService::SpecOf.
  static ServiceSpec ForDataService(const std::string& name);
};

// How one run of a service is set up (RunService fills it from flags, tests from their harness).
struct RuntimeOptions {
  // Used when the spec has column families; `store.path` is the data folder.
  store::StoreOptions store;
  // Where checkpoints go; empty: DefaultBackupDir(store.path).
  std::string backup_dir;
  // Where /metrics is served (host:port, port 0 picks one); empty: not served.
  std::string metrics_listen;
  // Listen address, message limit, drain grace and health port. The runtime sets the rest from the
  // spec (metrics, interceptors, caller authentication).
  ServerOptions server;
  int shard_index = 0;
  // Threads of the write pool; 0: the service's own number (ServiceContext::write_threads).
  int write_threads = 0;
  // The service's clock; not owned, must outlive the runtime.
  Clock* clock = nullptr;
  // Addresses of other services that replace their flags (Backends::SetAddress), applied before
  // the component is built.
  std::vector<std::pair<std::string, std::string>> backend_addresses;
};

// Owns everything it starts; not thread-safe (one owner starts and stops it).
class ServiceRuntime {
 public:
  // Builds and starts the service; it is SERVING when this returns. The error names the step that
  // failed ("cannot open store: ...").
  static absl::StatusOr<std::unique_ptr<ServiceRuntime>> Start(const ServiceSpec& spec,
                                                               RuntimeOptions options);
  ~ServiceRuntime();
  ServiceRuntime(const ServiceRuntime&) = delete;
  ServiceRuntime& operator=(const ServiceRuntime&) = delete;

  // NOT_SERVING, drain in-flight calls, stop background work, close the store. Idempotent.
  void Stop();

  Component& component() { return *component_; }
  // Null when the service has no store.
  store::Store* store() { return store_.get(); }
  metrics::Metrics& metrics() { return *metrics_; }
  Backends& backends() { return *backends_; }
  // The gRPC server's port.
  int port() const { return server_->port(); }
  // The port clients call: the component's own front door if it serves one, else port().
  int public_port() const;

 private:
  ServiceRuntime() = default;
  absl::Status Build(const ServiceSpec& spec, RuntimeOptions options);

  std::unique_ptr<metrics::Metrics> metrics_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Backends> backends_;
  std::unique_ptr<Component> component_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<StoreAdminService> store_admin_;
};

}  // namespace crm::rpc
