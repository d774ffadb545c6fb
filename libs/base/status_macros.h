// Early returns on error, so a function reads as its steps rather than as their error checks:
//
//   CRM_RETURN_IF_ERROR(txn.PutProto(cf, key, value));   // absl::Status or absl::StatusOr<T>
//   CRM_ASSIGN_OR_RETURN(v1::Order order, LoadOrder(txn, id));
//
// Both return the error as an absl::Status (which converts to any absl::StatusOr<T>). Named with
// the project's prefix because protobuf ships macros of the unprefixed names. Header only.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace crm::status_internal {

inline const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

}  // namespace crm::status_internal

#define CRM_RETURN_IF_ERROR(expr)                           \
  do {                                                      \
    if (auto crm_status_ = (expr); !crm_status_.ok())       \
      return ::crm::status_internal::StatusOf(crm_status_); \
  } while (false)

#define CRM_STATUS_CONCAT_INNER_(a, b) a##b
#define CRM_STATUS_CONCAT_(a, b) CRM_STATUS_CONCAT_INNER_(a, b)
#define CRM_ASSIGN_OR_RETURN(lhs, rexpr) \
  CRM_ASSIGN_OR_RETURN_IMPL_(CRM_STATUS_CONCAT_(crm_statusor_, __LINE__), lhs, rexpr)
#define CRM_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                               \
  if (!statusor.ok()) return statusor.status();          \
  lhs = *std::move(statusor)
