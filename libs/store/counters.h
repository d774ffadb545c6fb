// Rows that are sums: a message of int64 counters (an item's sales, how often two items were
// bought together) that many writers add to at once. A writer adds its delta with
// Transaction::AddCounters, which neither reads the row nor locks it, so two transactions adding to
// the same popular row never wait for or deadlock with each other; RocksDB adds the deltas up when
// the row is read, flushed or compacted (a merge operator). A row whose counters add up to zero
// stays as zeros, which read the same as no row.
//
// The sums are exact, including negative deltas (a refund, an erasure taking back what it added);
// readers that need counts never below zero floor them themselves (FloorCounters), since flooring
// inside the merge would make the result depend on the order RocksDB happens to combine deltas in.
// Thread-safe.
#pragma once

#include <memory>

#include "google/protobuf/message.h"
#include "rocksdb/merge_operator.h"

namespace crm::store {

// The merge operator of a column family whose values are `prototype`'s type: every field of which
// must be a singular int64 (aborts otherwise: a programming error). Pass it in
// StoreOptions::merge_operators for that family.
std::shared_ptr<rocksdb::MergeOperator> CounterSum(const google::protobuf::Message& prototype);

// Sets every counter of `counters` that is below zero to zero.
void FloorCounters(google::protobuf::Message& counters);

}  // namespace crm::store
