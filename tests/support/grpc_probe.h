// Calls the standard gRPC services a test cannot reach through generated stubs (no .proto files for
// them ship with Debian's gRPC): grpc.health.v1.Health/Check and server reflection's list_services.
// Messages are encoded by hand, as the kubelet's and grpcurl's own clients would send them. Also
// any unary method with raw bytes (RawUnaryCall), for tests generated from descriptors.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"

namespace crm::testing {

// One unary call of `path` with the serialized `request` and `metadata`; the answer's bytes and
// metadata.
struct RawReply {
  grpc::Status status;
  std::string body;
  std::multimap<std::string, std::string> headers, trailers;
};
RawReply RawUnaryCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& path,
                      const std::string& request,
                      const std::vector<std::pair<std::string, std::string>>& metadata = {},
                      absl::Duration deadline = absl::Seconds(20));

// The serving status enum value: 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN.
absl::StatusOr<int> HealthCheck(const std::shared_ptr<grpc::Channel>& channel,
                                const std::string& service);
inline constexpr int kServing = 1;
inline constexpr int kNotServing = 2;

// Service names the server lists through reflection (v1alpha, which grpcurl uses).
absl::StatusOr<std::vector<std::string>> ReflectionServices(
    const std::shared_ptr<grpc::Channel>& channel);
// grpcurl's describe: the serialized FileDescriptorProtos of the file defining `symbol` and (as
// servers send them) its dependencies.
absl::StatusOr<std::vector<std::string>> ReflectionFilesContaining(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& symbol);

}  // namespace crm::testing
