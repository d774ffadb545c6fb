// The whole life of a service process in one call, so every main.cc is wiring only: flags (+
// environment), JSON logs, /metrics, the RocksDB store under --data_dir, the gRPC server, then on
// SIGTERM or SIGINT: NOT_SERVING, drain in-flight calls, stop background work, close the store.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "libs/rpc/service_runtime.h"
#include "libs/store/store.h"

namespace crm::rpc {

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
