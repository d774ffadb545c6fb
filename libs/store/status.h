// rocksdb::Status -> absl::Status, keeping RocksDB's own message so an operator sees the real
// cause.
#pragma once

#include "absl/status/status.h"
#include "rocksdb/status.h"

namespace crm::store {

// Maps by what the caller can do next: conflicts and timeouts are ABORTED (retry the transaction),
// I/O trouble UNAVAILABLE (retry later), a full disk RESOURCE_EXHAUSTED, corruption DATA_LOSS. The
// status carries the reason kReasonStorageEngine (libs/base/error_reason.h).
absl::Status FromRocksDb(const rocksdb::Status& s);

}  // namespace crm::store
