#include "libs/store/status.h"

#include "absl/strings/str_cat.h"
#include "libs/base/error_reason.h"

namespace crm::store {
namespace {

absl::Status Mapped(const rocksdb::Status& s) {
  std::string message = absl::StrCat("rocksdb: ", s.ToString());
  switch (s.code()) {
    case rocksdb::Status::kNotFound: return absl::NotFoundError(message);
    case rocksdb::Status::kCorruption: return absl::DataLossError(message);
    case rocksdb::Status::kNotSupported: return absl::UnimplementedError(message);
    case rocksdb::Status::kInvalidArgument: return absl::InvalidArgumentError(message);
    case rocksdb::Status::kIOError:
      if (s.IsNoSpace()) return absl::ResourceExhaustedError(message);
      return absl::UnavailableError(message);
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTimedOut:
    case rocksdb::Status::kTryAgain:
    case rocksdb::Status::kMergeInProgress: return absl::AbortedError(message);
    case rocksdb::Status::kIncomplete:
    case rocksdb::Status::kShutdownInProgress:
    case rocksdb::Status::kColumnFamilyDropped: return absl::UnavailableError(message);
    case rocksdb::Status::kAborted: return absl::AbortedError(message);
    default: return absl::InternalError(message);
  }
}

}  // namespace

absl::Status FromRocksDb(const rocksdb::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return WithReason(Mapped(s), kReasonStorageEngine);
}

}  // namespace crm::store
