// The whole life of a service process in one call, so every main.cc is wiring only:
// flags (+ environment), JSON logs, /metrics, the RocksDB store under --data_dir, the gRPC server,
// then on SIGTERM or SIGINT: NOT_SERVING, drain in-flight calls, stop background work, close the
// store.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/clock/clock.h"
#include "libs/metrics/metrics.h"
#include "libs/rpc/backends.h"
#include "libs/rpc/server.h"
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
};

struct ServiceSpec {
  // Process name in logs and the default data folder, e.g. "customer-profile".
  std::string name;
  std::string usage;
  std::string default_listen;
  std::string default_metrics_listen;
  // Column families of its store; empty means no store (the gateway).
  std::vector<std::string> column_families;
  std::function<absl::StatusOr<std::unique_ptr<Component>>(ServiceContext&)> build;
  // The process forwards other services' calls and records their metrics itself (the gateway): no
  // per-call interceptors on its server or on its channels to the services.
  bool forwards_calls = false;
  // When set, the process's gRPC server listens here (loopback: health, reflection, reached through
  // the component) and the component serves --listen itself (the gateway's front door).
  std::string internal_listen;
};

// Runs the service until SIGTERM/SIGINT; returns the process exit code.
int RunService(int argc, char** argv, const ServiceSpec& spec);

// The process's trust settings from flags: the internal key (--internal_key_file, required), its
// name as a caller, and TLS (--tls_dir). FAILED_PRECONDITION / INVALID_ARGUMENT naming the flag
// otherwise.
absl::Status SetUpTrust(const std::string& process_name);

// Store options from --data_dir (default ./data/<name>), --block_cache_mb, --memtable_mb,
// --verify_store_on_start, --write_stop_wait_ms and --disk_reserve_mb. INVALID_ARGUMENT naming the
// flag when the memtables would not fit in the block cache they are charged to.
absl::StatusOr<store::StoreOptions> StoreOptionsFromFlags(const std::string& service_name);

}  // namespace crm::rpc
