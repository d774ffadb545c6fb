#include "libs/rpc/service_main.h"

#include <signal.h>
#include <unistd.h>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/auth/caller.h"
#include "libs/auth/internal_keys.h"
#include "libs/log/log.h"
#include "libs/rpc/flags.h"
#include "libs/rpc/transport.h"

namespace crm::rpc {
namespace {

log::Level ParseLevel(const std::string& s) {
  if (s == "debug") return log::Level::kDebug;
  if (s == "warning") return log::Level::kWarning;
  if (s == "error") return log::Level::kError;
  return log::Level::kInfo;
}

// --shard_index, where -1 means the ordinal at the end of the host name (StatefulSet pods are
// "<name>-<n>").
absl::StatusOr<int> ShardIndexFromFlags() {
  const int flag = absl::GetFlag(FLAGS_shard_index);
  if (flag >= 0) return flag;
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0)
    return absl::InternalError("--shard_index=-1: no host name");
  const std::string name(host);
  const size_t dash = name.rfind('-');
  int ordinal = -1;
  if (dash == std::string::npos || !absl::SimpleAtoi(name.substr(dash + 1), &ordinal) ||
      ordinal < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--shard_index=-1: host name \"", name, "\" does not end in -<number>"));
  }
  return ordinal;
}

// More writers than this gain nothing from group commit and only add threads to schedule.
constexpr int kMaxWriteThreads = 256;

// A flag's seconds, where 0 (or less) means no limit.
absl::Duration SecondsOrInfinite(int seconds) {
  return seconds > 0 ? absl::Seconds(seconds) : absl::InfiniteDuration();
}

// Everything a run takes from its flags: the store's, the server's, the shard and the clock.
absl::StatusOr<RuntimeOptions> RuntimeOptionsFromFlags(const ServiceSpec& spec, Clock* clock) {
  RuntimeOptions options;
  if (!spec.column_families.empty()) {
    auto store_options = StoreOptionsFromFlags(spec.name);
    if (!store_options.ok()) return store_options.status();
    options.store = *std::move(store_options);
  }
  options.backup_dir = absl::GetFlag(FLAGS_backup_dir);
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  if (options.metrics_listen.empty()) options.metrics_listen = spec.default_metrics_listen;
  if (options.metrics_listen == "off") options.metrics_listen.clear();
  options.server.listen_address = absl::GetFlag(FLAGS_listen);
  if (options.server.listen_address.empty()) options.server.listen_address = spec.default_listen;
  if (!spec.internal_listen.empty()) options.server.listen_address = spec.internal_listen;
  options.server.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.server.drain_grace = absl::Seconds(absl::GetFlag(FLAGS_drain_seconds));
  options.server.max_connection_age = SecondsOrInfinite(absl::GetFlag(FLAGS_max_connection_age_s));
  options.server.max_connection_age_grace =
      SecondsOrInfinite(absl::GetFlag(FLAGS_max_connection_age_grace_s));
  options.server.health_listen = absl::GetFlag(FLAGS_health_listen);
  auto shard_index = ShardIndexFromFlags();
  if (!shard_index.ok()) return shard_index.status();
  options.shard_index = *shard_index;
  options.write_threads = absl::GetFlag(FLAGS_write_threads);
  if (options.write_threads < 0 || options.write_threads > kMaxWriteThreads) {
    return absl::InvalidArgumentError(absl::StrCat("--write_threads (", options.write_threads,
                                                   ") must be 0 (the service's own) or 1-",
                                                   kMaxWriteThreads));
  }
  options.clock = clock;
  return options;
}

}  // namespace

absl::Status SetUpTrust(const std::string& process_name) {
  const std::string key_file = absl::GetFlag(FLAGS_internal_key_file);
  if (key_file.empty()) {
    return absl::FailedPreconditionError(
        "--internal_key_file is required: the deployment's shared secret that signs calls between "
        "the processes "
        "(deploy/local/run.sh creates one under the data folder; Kubernetes mounts it from a "
        "Secret)");
  }
  auto keys = auth::InternalKeys::FromFile(key_file);
  if (!keys.ok()) return keys.status();
  auth::InternalKeys::Install(*keys);
  auth::SetProcessName(process_name);
  return SetTlsDir(absl::GetFlag(FLAGS_tls_dir));
}

absl::StatusOr<store::StoreOptions> StoreOptionsFromFlags(const std::string& service_name) {
  store::StoreOptions o;
  o.path = absl::GetFlag(FLAGS_data_dir);
  if (o.path.empty()) o.path = absl::StrCat("./data/", service_name);
  o.block_cache_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_block_cache_mb)) << 20;
  // Half the budget by default: with less, a service of ~20 column families taking writes in one of
  // them keeps flushing the others' nearly empty memtables (the write buffer manager flushes the
  // oldest first), which cost recommendation much of its CPU learning an imported history.
  const int memtable_mb = absl::GetFlag(FLAGS_memtable_mb) < 0
                              ? absl::GetFlag(FLAGS_block_cache_mb) / 2
                              : absl::GetFlag(FLAGS_memtable_mb);
  o.memtable_budget_bytes = static_cast<size_t>(memtable_mb) << 20;
  if (absl::GetFlag(FLAGS_block_cache_mb) < 8 || memtable_mb < 4 ||
      o.memtable_budget_bytes > o.block_cache_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--memtable_mb (", memtable_mb, ") must be at least 4 and at most --block_cache_mb (",
        absl::GetFlag(FLAGS_block_cache_mb),
        ", at least 8): memtables are charged to the block cache, which is the process's memory "
        "budget"));
  }
  o.verify_on_open = absl::GetFlag(FLAGS_verify_store_on_start);
  o.write_stop_wait = absl::Milliseconds(std::max(0, absl::GetFlag(FLAGS_write_stop_wait_ms)));
  // A flush writes at most the memtable budget, a restart replays at most the WAL limit into new
  // files.
  const int reserve_mb = absl::GetFlag(FLAGS_disk_reserve_mb);
  o.disk_reserve_bytes = reserve_mb < 0 ? o.memtable_budget_bytes + (16 << 20)
                                        : static_cast<uint64_t>(reserve_mb) << 20;
  return o;
}

int RunService(int argc, char** argv, const ServiceSpec& spec) {
  // Block the stop signals before any thread exists, so every thread inherits the mask and only the
  // sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  ParseFlagsWithEnv(argc, argv, spec.usage.c_str());
  log::SetService(spec.name);
  log::SetMinLevel(ParseLevel(absl::GetFlag(FLAGS_log_level)));
  if (absl::Status s = SetUpTrust(spec.name); !s.ok()) {
    log::Error("cannot start", {{"error", s.ToString()}});
    return 1;
  }

  SystemClock clock(absl::Seconds(absl::GetFlag(FLAGS_clock_offset_s)));
  auto options = RuntimeOptionsFromFlags(spec, &clock);
  absl::StatusOr<std::unique_ptr<ServiceRuntime>> runtime =
      options.ok() ? ServiceRuntime::Start(spec, *std::move(options)) : options.status();
  if (!runtime.ok()) {
    log::Error("cannot start", {{"error", runtime.status().ToString()}});
    return 1;
  }
  log::Info("serving",
            {{"port", (*runtime)->public_port()}, {"metrics_port", (*runtime)->metrics().port()}});

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  log::Info("stop signal received", {{"signal", signal_number == SIGTERM ? "SIGTERM" : "SIGINT"}});
  (*runtime)->Stop();
  log::Info("stopped cleanly");
  return 0;
}

}  // namespace crm::rpc
