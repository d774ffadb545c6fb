// Calls the standard gRPC services a test cannot reach through generated stubs (no .proto files for them
// ship with Debian's gRPC): grpc.health.v1.Health/Check and server reflection's list_services. Messages
// are encoded by hand, as the kubelet's and grpcurl's own clients would send them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"

namespace crm::testing {

// The serving status enum value: 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN.
absl::StatusOr<int> HealthCheck(const std::shared_ptr<grpc::Channel>& channel, const std::string& service);
inline constexpr int kServing = 1;
inline constexpr int kNotServing = 2;

// Service names the server lists through reflection (v1alpha, which grpcurl uses).
absl::StatusOr<std::vector<std::string>> ReflectionServices(const std::shared_ptr<grpc::Channel>& channel);

}  // namespace crm::testing
