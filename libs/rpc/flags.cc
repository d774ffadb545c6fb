#include "libs/rpc/flags.h"

#include <cstdio>
#include <cstdlib>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/base/flags_help.h"

// Where the process answers and who may call it.
ABSL_FLAG(std::string, listen, "",
          "gRPC listen address host:port (default: the service's own port on 127.0.0.1)");
ABSL_FLAG(std::string, metrics_listen, "",
          "address of the Prometheus /metrics endpoint, host:port; \"off\" disables it");
ABSL_FLAG(std::string, health_listen, "",
          "plaintext address serving only grpc.health.v1 (for Kubernetes gRPC probes when "
          "--tls_dir is set)");
ABSL_FLAG(std::string, tls_dir, "",
          "folder with tls.crt, tls.key and ca.crt (cert-manager's layout): mutual TLS between the "
          "processes; without it a service accepts calls from loopback only");
ABSL_FLAG(std::string, internal_key_file, "",
          "the deployment's internal secret (one or more lines of 32+ bytes, the first signs): "
          "signs caller assertions between the processes and page tokens; required");
ABSL_FLAG(int, max_message_bytes, 4 << 20,
          "largest request or response message accepted, in bytes");

// Connections and shutdown.
// 5 minutes: a replica the autoscaler adds gets its share of the connections within minutes,
// while a reconnect (a TLS handshake) every few minutes per client costs nothing measurable.
ABSL_FLAG(int, max_connection_age_s, 300,
          "after this long (+-10% jitter) a client connection to the gRPC server is asked to go "
          "away, so clients reconnect and spread over replicas added since (a Kubernetes Service "
          "balances per connection); 0 = never");
// Unlimited: calls on the old connection (server streams such as WatchOrder, relayed by the
// gateway for up to an hour) end on their own instead of being cut every few minutes; they take
// no new calls, so the balance is not held back.
ABSL_FLAG(int, max_connection_age_grace_s, 0,
          "how long calls running on a connection asked to go away may still finish before it is "
          "closed under them; 0 = until they end");
ABSL_FLAG(int, drain_seconds, 10,
          "on SIGTERM, how long in-flight calls may finish before they are cancelled");

// The service's store (libs/store).
ABSL_FLAG(std::string, data_dir, "",
          "directory of this service's RocksDB (default ./data/<service>)");
ABSL_FLAG(std::string, backup_dir, "",
          "where checkpoints (StoreAdminService) go (default: <data_dir>-backups)");
ABSL_FLAG(int, block_cache_mb, 128,
          "memory budget for cached data in MiB: RocksDB's block cache (data, index and filter "
          "blocks) with the memtables charged to it; resident memory stays within this plus a "
          "fixed overhead (deploy/README.md, runbook CrmMemoryOverBudget)");
ABSL_FLAG(int, memtable_mb, -1,
          "RocksDB memtables across column families in MiB, part of --block_cache_mb (at most "
          "that); -1: half of --block_cache_mb");
ABSL_FLAG(int, disk_reserve_mb, -1,
          "free space (MiB) kept on the data volume for flushes, compaction and restarts; writes "
          "are refused below it and resume by themselves when space returns; -1: the memtable "
          "budget plus 16 MiB, 0: none");
ABSL_FLAG(int, write_stop_wait_ms, 1000,
          "how long a write waits while RocksDB has stopped writes before answering UNAVAILABLE "
          "(keep it under the callers' deadlines)");
ABSL_FLAG(int, write_threads, 0,
          "threads of the service's write pool (synced RocksDB writes, events it applies): more "
          "let more writes share one WAL sync (peak write throughput), fewer leave a saturated "
          "machine's CPU to delivering events sooner (docs/benchmarks.md); 0: the service's own "
          "(32; recommendation 16)");
ABSL_FLAG(bool, verify_store_on_start, true,
          "read every table file's checksums at start and refuse to serve a damaged store (one "
          "sequential read)");

// The process.
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error");
ABSL_FLAG(int, shard_index, 0,
          "which shard of its service this process is (0-based); -1 takes it from the host name's "
          "ordinal suffix (a Kubernetes StatefulSet pod \"loyalty-2\" is shard 2)");
ABSL_FLAG(int, clock_offset_s, 0,
          "run the service's clock this many seconds ahead of the wall clock (demos, benchmarks of "
          "deadlines)");

namespace crm::rpc {

std::string EnvNameForFlag(const std::string& flag) {
  return absl::StrCat("CRM_", absl::AsciiStrToUpper(flag));
}

void ParseFlagsWithEnv(int argc, char** argv, const char* usage) {
  absl::SetProgramUsageMessage(usage);
  for (auto& [name, flag] : absl::GetAllFlags()) {
    const std::string env = EnvNameForFlag(std::string(name));
    const char* value = std::getenv(env.c_str());
    if (value == nullptr) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      std::fprintf(stderr, "%s=%s: %s\n", env.c_str(), value, error.c_str());
      std::exit(2);
    }
  }
  crm::HelpListsOwnFlags();
  absl::ParseCommandLine(argc, argv);
}

}  // namespace crm::rpc
