#include "libs/rpc/peer.h"

namespace crm::rpc {

absl::Status FromPeer(const grpc::Status& status, absl::string_view service,
                      absl::string_view purpose) {
  switch (status.error_code()) {
    case grpc::StatusCode::OK: return absl::OkStatus();
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::OUT_OF_RANGE:
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
    default:
      return absl::UnavailableError(absl::StrCat(service, " could not ", purpose, " (",
                                                 status.error_message(),
                                                 "); retry with the same request id"));
  }
}

absl::StatusOr<v1::Customer> FetchCustomer(Backends& backends, const std::string& customer_id) {
  v1::GetCustomerRequest request;
  request.set_customer_id(customer_id);
  return Peer<v1::CustomerProfileService>(&backends).Call(
      customer_id, "confirm the customer", &v1::CustomerProfileService::Stub::GetCustomer, request);
}

}  // namespace crm::rpc
