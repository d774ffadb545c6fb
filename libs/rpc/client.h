// Channels from one process to another service, set up the same way everywhere: one channel per
// shard (shards from the address spec, placement from a ShardMap), round-robin over a shard's
// replicas and over all addresses each replica's name resolves to (re-resolved when a connection
// ends, e.g. at a server's max connection age, so pods added behind a name get calls), keepalive,
// client metrics, and gRPC's own retry policy (service config) for the methods the proto marks
// read_only, so a retried call can never apply a change twice. A service that is down fails fast
// with UNAVAILABLE instead of hanging (no wait-for-ready). Thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "libs/metrics/metrics.h"
#include "libs/sharding/shard_map.h"

namespace crm::rpc {

class ChannelSet {
 public:
  // `spec`: "host:port" or, for a sharded service, shards separated by '|' and replicas of a shard
  // by ',': "a0:50051,a1:50051|b0:50051". `shard_map_spec` ("" = equal ranges over the shards)
  // places keys. `service` is the full proto name, e.g. "crm.v1.CustomerProfileService" (for the
  // retry policy).
  static absl::StatusOr<std::unique_ptr<ChannelSet>> Create(absl::string_view service,
                                                            absl::string_view spec,
                                                            metrics::Metrics* metrics,
                                                            absl::string_view shard_map_spec = "");

  int shard_count() const { return static_cast<int>(shards_.size()); }
  const sharding::ShardMap& shard_map() const { return map_; }
  // A channel to the shard (next replica, round robin).
  std::shared_ptr<grpc::Channel> ForShard(int shard);
  // The next replica of the shard: its channel and its address ("host:port"), for a caller that
  // speaks HTTP/2 to it directly (the gateway's front door).
  struct Replica {
    std::shared_ptr<grpc::Channel> channel;
    std::string address;
  };
  Replica PickReplica(int shard);
  // A channel to the shard that owns `shard_key` (a customer id, or an email before registration).
  std::shared_ptr<grpc::Channel> ForKey(absl::string_view shard_key) {
    return ForShard(map_.ShardOf(shard_key));
  }
  // The generated stub of `Service` (e.g. v1::LoyaltyService) to the shard that owns `shard_key`
  // (next replica), made once per replica and kept for the set's life: making a stub registers
  // every method of its service with the channel, 2% of order-tracking's CPU when CreateOrder
  // made one for each call to customer-profile.
  template <typename Service>
  std::shared_ptr<typename Service::Stub> StubForKey(absl::string_view shard_key) {
    return StubForShard<Service>(map_.ShardOf(shard_key));
  }
  // The same for shard `shard` (next replica): an event lane delivers to one shard.
  template <typename Service>
  std::shared_ptr<typename Service::Stub> StubForShard(int shard) {
    const std::shared_ptr<grpc::Channel> channel = ForShard(shard);
    return std::static_pointer_cast<typename Service::Stub>(
        KeptStub(*channel, typeid(Service),
                 [&] { return std::shared_ptr<void>(Service::NewStub(channel)); }));
  }
  const std::string& spec() const { return spec_; }

 private:
  // The stub kept for `service` on `channel` (one of this set's), made by `make` the first time.
  std::shared_ptr<void> KeptStub(const grpc::Channel& channel, const std::type_info& service,
                                 absl::FunctionRef<std::shared_ptr<void>()> make);

  struct Shard {
    std::vector<std::shared_ptr<grpc::Channel>> replicas;
    std::vector<std::string> addresses;  // of the replicas, in the same order
    std::unique_ptr<std::atomic<uint64_t>> next = std::make_unique<std::atomic<uint64_t>>(0);
  };
  std::string spec_;
  sharding::ShardMap map_;
  std::vector<Shard> shards_;
  absl::Mutex stubs_mu_;
  absl::flat_hash_map<std::pair<const grpc::Channel*, const std::type_info*>, std::shared_ptr<void>>
      stubs_ ABSL_GUARDED_BY(stubs_mu_);
};

// The service config of every channel: round_robin over all addresses the target resolves to,
// and, when `service` is not empty, gRPC retries UNAVAILABLE for its read_only methods.
std::string ChannelServiceConfig(absl::string_view service);

// A channel to one address with the project's channel arguments (keepalive, message size,
// ChannelServiceConfig, DNS re-resolution at most every 5 s) and transport (mTLS or loopback,
// libs/rpc/transport.h). Every call made while a trace is current (libs/trace) carries it as its
// traceparent, with a span id of its own, unless the call sets one. With `metrics`, a service's
// channel: client metrics, and every call not already made for someone else carries this process's
// own caller assertion. Without, the gateway's (which signs each call for its caller) or a test's.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, absl::string_view service,
                                           metrics::Metrics* metrics);

// Sets `ctx`'s deadline to now + `timeout`.
void SetTimeout(grpc::ClientContext& ctx, absl::Duration timeout);

}  // namespace crm::rpc
