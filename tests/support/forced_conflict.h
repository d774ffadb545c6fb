// Makes a transaction run twice, as a lock conflict does in production: the first attempt runs the
// body and then loses a (forced) conflict, Transact rolls it back and runs the body again. For
// tests that prove a handler's side effects outside the store (metrics) happen once per commit.
#pragma once

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "libs/store/status.h"
#include "libs/store/store.h"

namespace crm::testing {

// Runs `body` in a synced transaction of `store` whose first attempt fails with a conflict after
// `body` succeeded; `*attempts` counts the attempts (2 when all went as intended).
inline absl::Status TransactLosingFirstAttempt(
    store::Store& store, absl::FunctionRef<absl::Status(store::Transaction&)> body, int* attempts) {
  *attempts = 0;
  return store.Transact(store::Durability::kSynced, [&](store::Transaction& txn) {
    if (absl::Status s = body(txn); !s.ok()) return s;
    if (++*attempts == 1) return store::FromRocksDb(rocksdb::Status::TimedOut("forced conflict"));
    return absl::OkStatus();
  });
}

}  // namespace crm::testing
