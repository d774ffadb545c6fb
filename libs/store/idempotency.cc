#include "libs/store/idempotency.h"

#include <cstring>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "libs/sharding/hash.h"

namespace crm::store {
namespace {

void AppendFixed64(std::string& out, uint64_t v) {
  char buf[8];
  std::memcpy(buf, &v, 8);
  out.append(buf, 8);
}

uint64_t ReadFixed64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace

uint64_t RequestFingerprint(const google::protobuf::Message& request) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream out(&stream);
    out.SetSerializationDeterministic(true);
    request.SerializeToCodedStream(&out);
  }
  return sharding::StableHash64(bytes);
}

absl::StatusOr<bool> FindCompletedRequest(Transaction& txn, rocksdb::ColumnFamilyHandle* cf,
                                          absl::string_view key, uint64_t fingerprint,
                                          google::protobuf::MessageLite* response) {
  auto stored = txn.GetForUpdate(cf, key);
  if (!stored.ok()) return stored.status();
  if (!stored->has_value()) return false;
  const std::string& v = **stored;
  if (v.size() < 16) return absl::DataLossError("stored request record is truncated");
  if (ReadFixed64(v.data()) != fingerprint) {
    return absl::InvalidArgumentError(
        "request_id: already used for a different request; use a new request_id for a new request");
  }
  if (!response->ParseFromArray(v.data() + 16, static_cast<int>(v.size() - 16))) {
    return absl::DataLossError("stored response does not parse");
  }
  return true;
}

absl::Status RecordCompletedRequest(Transaction& txn, rocksdb::ColumnFamilyHandle* cf,
                                    absl::string_view key, uint64_t fingerprint,
                                    const google::protobuf::MessageLite& response, absl::Time now) {
  std::string v;
  AppendFixed64(v, fingerprint);
  AppendFixed64(v, static_cast<uint64_t>(absl::ToUnixMicros(now)));
  response.AppendToString(&v);
  return txn.Put(cf, key, v);
}

absl::Status TransactOnce(Store& store, Durability durability,
                          rocksdb::ColumnFamilyHandle* requests_cf, absl::string_view request_key,
                          uint64_t fingerprint, absl::Time now,
                          google::protobuf::MessageLite* response,
                          absl::FunctionRef<absl::Status(Transaction&)> body) {
  return store.Transact(durability, [&](Transaction& txn) -> absl::Status {
    auto done = FindCompletedRequest(txn, requests_cf, request_key, fingerprint, response);
    if (!done.ok()) return done.status();
    if (*done) return absl::OkStatus();
    response->Clear();
    if (absl::Status s = body(txn); !s.ok()) return s;
    return RecordCompletedRequest(txn, requests_cf, request_key, fingerprint, *response, now);
  });
}

}  // namespace crm::store
