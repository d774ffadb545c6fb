// A gRPC load generator on the callback client API. A scenario is data: a mix of operations, each a
// method name and a request generator, so one engine drives every workload.
//
// Closed loop keeps `concurrency` calls in flight. Open loop sends at a fixed arrival rate and
// measures each call from its *intended* send time, so a server stall shows up in the latency
// instead of silently lowering the send rate (no coordinated omission).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "tests/load/latency_histogram.h"

namespace crm::load {

// Builds the serialized request for call number `index`.
using RequestFn = std::function<std::string(uint64_t index, absl::BitGen& gen)>;
// Sees each successful response (e.g. to collect ids during a bulk load). Called concurrently.
using ResponseFn = std::function<void(const std::string& response)>;

// One of `items`, drawn uniformly at random.
template <typename T>
const T& RandomOf(const std::vector<T>& items, absl::BitGen& gen) {
  return items[absl::Uniform<size_t>(gen, 0, items.size())];
}

// Requests like `request` (GetCustomerRequest, GetMembershipRequest, ...), each for one of
// `customers` drawn at random.
template <typename Request>
RequestFn ForRandomCustomer(std::shared_ptr<const std::vector<std::string>> customers,
                            Request request = {}) {
  return [customers = std::move(customers), request](uint64_t, absl::BitGen& gen) {
    Request r = request;
    r.set_customer_id(RandomOf(*customers, gen));
    return r.SerializeAsString();
  };
}

// Requests like `request` (GetOrderRequest, ...) about one of `orders`, (customer id, order id)
// pairs, drawn at random.
template <typename Request>
RequestFn ForRandomOrder(
    std::shared_ptr<const std::vector<std::pair<std::string, std::string>>> orders,
    Request request = {}) {
  return [orders = std::move(orders), request](uint64_t, absl::BitGen& gen) {
    const auto& [customer_id, order_id] = RandomOf(*orders, gen);
    Request r = request;
    r.set_customer_id(customer_id);
    r.set_order_id(order_id);
    return r.SerializeAsString();
  };
}

struct Operation {
  std::string name;    // shown in reports, e.g. "GetCustomer"
  std::string method;  // "/crm.v1.CustomerProfileService/GetCustomer"
  RequestFn make_request;
  double weight = 1.0;
  ResponseFn on_response;
  // Sent with this operation's calls besides LoadOptions::metadata (e.g. its own token through the
  // gateway).
  std::vector<std::pair<std::string, std::string>> metadata;
};

struct Scenario {
  std::string name;
  std::vector<Operation> mix;
};

struct LoadOptions {
  enum class Mode { kClosedLoop, kOpenLoop };
  Mode mode = Mode::kClosedLoop;
  int concurrency = 32;           // closed loop: calls in flight
  double rate_per_second = 1000;  // open loop: arrivals per second
  int channels = 4;               // separate HTTP/2 connections
  absl::Duration warmup = absl::Seconds(1);
  absl::Duration duration = absl::Seconds(5);
  absl::Duration call_deadline = absl::Seconds(10);
  // Stop after this many measured calls (0: run for `duration`). For bulk loads.
  uint64_t max_calls = 0;
  // Sent with every call, e.g. {"authorization", "Bearer ..."} through the gateway.
  std::vector<std::pair<std::string, std::string>> metadata;
};

struct OperationResult {
  uint64_t ok = 0;
  uint64_t errors = 0;
  LatencyHistogram latency;
};

struct LoadResult {
  std::string scenario;
  absl::Duration measured;  // the measurement window
  uint64_t ok = 0;
  uint64_t errors = 0;
  std::map<std::string, uint64_t> errors_by_code;
  std::string first_error;
  LatencyHistogram latency;
  // How late each successful call left against its intended send time: in an open loop, the load
  // generator's own delay (it shares the cores), which `latency` includes.
  LatencyHistogram send_lateness;
  std::map<std::string, OperationResult> by_operation;
  double throughput() const { return ok / absl::ToDoubleSeconds(measured); }
};

// Channels to `target` ("127.0.0.1:port") that do not share a connection.
// `credentials`: how to reach the target (default plaintext, e.g. the gateway's front door; a
// service's own port under mutual TLS needs a client certificate,
// testing::CrmSystem::ServiceCredentials()).
std::vector<std::shared_ptr<grpc::Channel>> MakeChannels(
    const std::string& target, int count,
    std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

LoadResult RunLoad(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                   const Scenario& scenario, const LoadOptions& options);

// One line: throughput, p50/p90/p99/p99.9/max, errors.
std::string Summary(const LoadResult& r);

}  // namespace crm::load
