// A typed client of another service of the system, so every service-to-service call has one
// deadline policy and one status mapping instead of each caller writing its own stub code.
//
// A call goes to the shard that owns its routing key (the customer id), with a deadline
// (kPeerDeadline unless the call says otherwise), and its answer is mapped one way:
// - the callee's verdict on the request (NOT_FOUND, INVALID_ARGUMENT, FAILED_PRECONDITION,
//   ALREADY_EXISTS, PERMISSION_DENIED, OUT_OF_RANGE) keeps its code and message: it is about what
//   the caller asked, and names the field;
// - anything else means the callee could not answer (down, overloaded, too slow, broken): the call
//   is UNAVAILABLE "<service> could not <purpose> (<its message>); retry with the same request id",
//   which a client may retry.
// Thread-safe; cheap to copy. The Backends must outlive it.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "libs/rpc/backends.h"
#include "libs/rpc/client.h"

namespace crm::rpc {

inline constexpr absl::Duration kPeerDeadline = absl::Seconds(3);

// The mapping above, for a call to `service` made to `purpose` ("confirm the customer").
absl::Status FromPeer(const grpc::Status& status, absl::string_view service,
                      absl::string_view purpose);

// Service: a generated gRPC service class of the system (v1::LoyaltyService); its name among the
// data services is found from its proto name.
template <typename Service>
class Peer {
 public:
  explicit Peer(Backends* backends) : backends_(backends) {}

  template <typename Request, typename Response>
  using Method = grpc::Status (Service::Stub::*)(grpc::ClientContext*, const Request&, Response*);

  // Calls `method` on the shard owning `key` and returns its response or the mapped status.
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(absl::string_view key, absl::string_view purpose,
                                Method<Request, Response> method, const Request& request,
                                absl::Duration deadline = kPeerDeadline) const {
    const std::string name = Name();
    auto channels = backends_->Get(name);
    if (!channels.ok()) return channels.status();
    const auto stub = (*channels)->template StubForKey<Service>(key);
    grpc::ClientContext context;
    SetTimeout(context, deadline);
    Response response;
    const grpc::Status status = ((*stub).*method)(&context, request, &response);
    if (!status.ok()) return FromPeer(status, name, purpose);
    return response;
  }

 private:
  static std::string Name() {
    for (const auto& info : DataServices()) {
      if (info.proto == Service::service_full_name()) return info.name;
    }
    return Service::service_full_name();
  }

  Backends* backends_;
};

// The customer as customer-profile has it: NOT_FOUND "customer_id: no customer ..." when there is
// none, UNAVAILABLE when customer-profile cannot tell.
absl::StatusOr<v1::Customer> FetchCustomer(Backends& backends, const std::string& customer_id);

}  // namespace crm::rpc
