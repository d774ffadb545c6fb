// Standard per-RPC metrics, named like the common gRPC exporters (go-grpc-prometheus) so existing
// dashboards work: grpc_{server,client}_started_total,
// grpc_{server,client}_handled_total{grpc_code} and grpc_{server,client}_handling_seconds, labelled
// grpc_type, grpc_service, grpc_method. Recorded by gRPC interceptors, so every method of every
// service is covered without per-handler code.
#pragma once

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/client_interceptor.h"
#include "grpcpp/support/server_interceptor.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace crm::metrics {

// The metric families of one side (server or client) and a cache of their label sets per method.
class RpcMetrics {
 public:
  enum class Side { kServer, kClient };
  RpcMetrics(prometheus::Registry& registry, Side side);
  RpcMetrics(const RpcMetrics&) = delete;
  RpcMetrics& operator=(const RpcMetrics&) = delete;

  // The metrics of one method; created on first use, then lock-free per call except the first of a
  // code.
  class Method {
   public:
    void Started() { started_->Increment(); }
    void Handled(int code, double seconds);

   private:
    friend class RpcMetrics;
    RpcMetrics* owner_ = nullptr;
    std::map<std::string, std::string> labels_;
    prometheus::Counter* started_ = nullptr;
    prometheus::Histogram* seconds_ = nullptr;
    std::array<std::atomic<prometheus::Counter*>, 17> handled_{};
  };

  // `full_method` is "/package.Service/Method"; `type` is unary, server_stream, client_stream,
  // bidi_stream.
  Method* ForMethod(absl::string_view full_method, absl::string_view type);

 private:
  prometheus::Counter* HandledCounter(Method* m, int code);

  prometheus::Family<prometheus::Counter>& started_;
  prometheus::Family<prometheus::Counter>& handled_;
  prometheus::Family<prometheus::Histogram>& seconds_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Method>> methods_ ABSL_GUARDED_BY(mu_);
};

// Records the metrics of every call of the server, or on the channels, it is installed on: one
// class for both sides, since a call is timed and counted the same way on each.
class MetricsInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface,
                                  public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  // `metrics` (of the side it is installed on) must outlive the server or channel.
  explicit MetricsInterceptorFactory(RpcMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override;

 private:
  RpcMetrics* metrics_;
};
// The names libs/rpc's server and channels install it by.
using ServerMetricsInterceptorFactory = MetricsInterceptorFactory;
using ClientMetricsInterceptorFactory = MetricsInterceptorFactory;

// The status code names used as grpc_code label values ("OK", "NOT_FOUND", ...).
absl::string_view CodeName(int code);

}  // namespace crm::metrics
