// Remembers the answer to each client request id, so that a retried write returns the first answer
// and changes nothing (Google AIP-155). Used inside the transaction that makes the change: the
// request id row is locked first, so two concurrent copies of one request serialise and the second
// sees the first's answer. A request id reused for a different request is refused.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "libs/store/store.h"

namespace crm::store {

// A stable fingerprint of a request (deterministic serialization, stable hash).
uint64_t RequestFingerprint(const google::protobuf::Message& request);

// Locks `key` and, when the request was already completed, fills `response` and returns true.
// INVALID_ARGUMENT naming request_id when the id was used for a request with another fingerprint.
absl::StatusOr<bool> FindCompletedRequest(Transaction& txn, rocksdb::ColumnFamilyHandle* cf,
                                          absl::string_view key, uint64_t fingerprint,
                                          google::protobuf::MessageLite* response);

// Records the answer in the same transaction as the change it describes.
absl::Status RecordCompletedRequest(Transaction& txn, rocksdb::ColumnFamilyHandle* cf,
                                    absl::string_view key, uint64_t fingerprint,
                                    const google::protobuf::MessageLite& response, absl::Time now);

// The usual shape of a retryable write: in one transaction, answer from the request record when the
// request was already done; otherwise run `body` (which fills `response`) and record the answer
// with it.
absl::Status TransactOnce(Store& store, Durability durability,
                          rocksdb::ColumnFamilyHandle* requests_cf, absl::string_view request_key,
                          uint64_t fingerprint, absl::Time now,
                          google::protobuf::MessageLite* response,
                          absl::FunctionRef<absl::Status(Transaction&)> body);

}  // namespace crm::store
