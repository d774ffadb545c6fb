// Counters without read-modify-write: Transaction::AddCounters writes a RocksDB merge operand that this
// merge operator folds into the stored value, so many writers can bump the same counters without
// reading or locking the row (co-purchase counts, daily sales, item statistics).
//
// The operator works on the protobuf wire format, whatever the message: every varint field of an
// operand is added to the same field of the value (two's-complement, so int32, int64 and uint fields
// add up exactly, negative deltas included); any other field of an operand replaces the value's.
// Only int32/int64/uint32/uint64 counters belong in such messages (not sint*, bool or enum fields).
// A row whose counters sum to zero is still present: readers treat it as absent.
// Installed on every column family by Store::Open; it is only ever invoked for rows written with
// AddCounters. Thread-safe (stateless).
#pragma once

#include <memory>

#include "rocksdb/merge_operator.h"

namespace crm::store {

std::shared_ptr<rocksdb::MergeOperator> CounterMergeOperator();

}  // namespace crm::store
