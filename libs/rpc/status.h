// absl::Status inside, grpc::Status at the edge. Codes map one to one; the message travels
// unchanged so a frontend developer reads the service's own words ("email: already registered").
#pragma once

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace crm::rpc {

grpc::Status ToGrpc(const absl::Status& status);
absl::Status FromGrpc(const grpc::Status& status);

}  // namespace crm::rpc
