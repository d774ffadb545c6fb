// A customer's complete export (crm.v1.CustomerViewService/ExportCustomerDataBundle), answered by
// the gateway: every service's data about the customer in one CustomerDataExportBundle. The
// profile is read first (NOT_FOUND for an unknown or erased customer, before any other service is
// asked); then every part in parallel, each listing paged through to its end or its cap, with the
// same calls, deadlines and status mapping as the 360° view's sections (ServiceCalls). Unlike the
// view, an export is owed whole: a part that fails fails the export with UNAVAILABLE naming it.
#pragma once

#include <functional>

#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/status.h"
#include "services/gateway/customer_view.h"

namespace crm::gateway {

// The most entries of each listing an export holds; a listing with more is marked `truncated`, so
// one huge customer cannot exhaust the gateway's memory.
inline constexpr int kMaxExportedOrders = 1000;
inline constexpr int kMaxExportedReturns = 1000;
inline constexpr int kMaxExportedReviews = 1000;
inline constexpr int kMaxExportedTickets = 1000;
inline constexpr int kMaxExportedLedgerEntries = 10000;
inline constexpr int kMaxExportedCoupons = 1000;
inline constexpr int kMaxExportedShownItems = 10000;
inline constexpr int kMaxExportedSurveys = 1000;
inline constexpr int kMaxExportedNotifications = 10000;

// `calls` carry the admitted export call; `done` receives the serialized bundle or an error.
void ComposeCustomerExport(const ServiceCalls& calls, const grpc::ByteBuffer& request,
                           std::function<void(grpc::Status, grpc::ByteBuffer)> done);

}  // namespace crm::gateway
