// Flags every process shares, each with an environment-variable equivalent: --data_dir is also
// CRM_DATA_DIR. Precedence: command line, then environment, then the service's default.
#pragma once

#include <string>

#include "absl/flags/declare.h"
#include "absl/status/status.h"
#include "absl/time/time.h"

ABSL_DECLARE_FLAG(std::string, listen);
ABSL_DECLARE_FLAG(std::string, metrics_listen);
ABSL_DECLARE_FLAG(std::string, data_dir);
ABSL_DECLARE_FLAG(int, block_cache_mb);
ABSL_DECLARE_FLAG(int, memtable_mb);
ABSL_DECLARE_FLAG(bool, verify_store_on_start);
ABSL_DECLARE_FLAG(int, disk_reserve_mb);
ABSL_DECLARE_FLAG(int, write_stop_wait_ms);
ABSL_DECLARE_FLAG(int, write_threads);
ABSL_DECLARE_FLAG(int, drain_seconds);
ABSL_DECLARE_FLAG(int, max_connection_age_s);
ABSL_DECLARE_FLAG(int, max_connection_age_grace_s);
ABSL_DECLARE_FLAG(int, max_message_bytes);
ABSL_DECLARE_FLAG(std::string, log_level);
ABSL_DECLARE_FLAG(int, shard_index);
ABSL_DECLARE_FLAG(int, clock_offset_s);
ABSL_DECLARE_FLAG(std::string, backup_dir);
ABSL_DECLARE_FLAG(std::string, tls_dir);
ABSL_DECLARE_FLAG(std::string, internal_key_file);
ABSL_DECLARE_FLAG(std::string, health_listen);

namespace crm::rpc {

// Sets every defined flag from CRM_<FLAG NAME IN UPPER CASE> when that variable exists, then parses
// the command line over it. A bad value (in either place) ends the process with a message naming
// it.
void ParseFlagsWithEnv(int argc, char** argv, const char* usage);

// The environment variable that feeds a flag: "data_dir" -> "CRM_DATA_DIR".
std::string EnvNameForFlag(const std::string& flag);

}  // namespace crm::rpc
