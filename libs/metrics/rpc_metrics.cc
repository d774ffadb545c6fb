#include "libs/metrics/rpc_metrics.h"

#include "absl/time/clock.h"
#include "libs/metrics/families.h"
#include "libs/metrics/metrics.h"

namespace crm::metrics {

absl::string_view CodeName(int code) {
  static constexpr absl::string_view kNames[] = {"OK",
                                                 "CANCELLED",
                                                 "UNKNOWN",
                                                 "INVALID_ARGUMENT",
                                                 "DEADLINE_EXCEEDED",
                                                 "NOT_FOUND",
                                                 "ALREADY_EXISTS",
                                                 "PERMISSION_DENIED",
                                                 "RESOURCE_EXHAUSTED",
                                                 "FAILED_PRECONDITION",
                                                 "ABORTED",
                                                 "OUT_OF_RANGE",
                                                 "UNIMPLEMENTED",
                                                 "INTERNAL",
                                                 "UNAVAILABLE",
                                                 "DATA_LOSS",
                                                 "UNAUTHENTICATED"};
  if (code < 0 || code > 16) return "UNKNOWN";
  return kNames[code];
}

namespace {

prometheus::Family<prometheus::Counter>& StartedFamily(prometheus::Registry& r,
                                                       RpcMetrics::Side side) {
  const bool server = side == RpcMetrics::Side::kServer;
  return metrics::CounterFamily(
      r, server ? "grpc_server_started_total" : "grpc_client_started_total",
      server ? "RPCs started on the server." : "RPCs started by the client.");
}

prometheus::Family<prometheus::Counter>& HandledFamily(prometheus::Registry& r,
                                                       RpcMetrics::Side side) {
  const bool server = side == RpcMetrics::Side::kServer;
  return metrics::CounterFamily(r,
                                server ? "grpc_server_handled_total" : "grpc_client_handled_total",
                                server ? "RPCs completed on the server, by status code."
                                       : "RPCs completed by the client, by status code.");
}

prometheus::Family<prometheus::Histogram>& SecondsFamily(prometheus::Registry& r,
                                                         RpcMetrics::Side side) {
  const bool server = side == RpcMetrics::Side::kServer;
  return metrics::HistogramFamily(
      r, server ? "grpc_server_handling_seconds" : "grpc_client_handling_seconds",
      server ? "Time from receiving an RPC to sending its status."
             : "Time from starting an RPC to receiving its status.");
}

// The grpc_type label of a call: both sides' Type enums name the four kinds alike.
template <typename RpcType>
absl::string_view TypeName(RpcType type) {
  switch (type) {
    case RpcType::SERVER_STREAMING: return "server_stream";
    case RpcType::CLIENT_STREAMING: return "client_stream";
    case RpcType::BIDI_STREAMING: return "bidi_stream";
    default: return "unary";
  }
}

// Times one call and records it when its status is known.
class MetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(RpcMetrics::Method* method, bool server)
      : method_(method), server_(server), start_(absl::Now()) {
    method_->Started();
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using H = grpc::experimental::InterceptionHookPoints;
    if (server_ && methods->QueryInterceptionHookPoint(H::PRE_SEND_STATUS)) {
      Record(methods->GetSendStatus().error_code());
    }
    if (!server_ && methods->QueryInterceptionHookPoint(H::POST_RECV_STATUS)) {
      Record(methods->GetRecvStatus()->error_code());
    }
    methods->Proceed();
  }

 private:
  void Record(int code) {
    if (recorded_) return;
    recorded_ = true;
    method_->Handled(code, absl::ToDoubleSeconds(absl::Now() - start_));
  }

  RpcMetrics::Method* method_;
  const bool server_;
  const absl::Time start_;
  bool recorded_ = false;
};

}  // namespace

RpcMetrics::RpcMetrics(prometheus::Registry& registry, Side side)
    : started_(StartedFamily(registry, side)),
      handled_(HandledFamily(registry, side)),
      seconds_(SecondsFamily(registry, side)) {}

RpcMetrics::Method* RpcMetrics::ForMethod(absl::string_view full_method, absl::string_view type) {
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = methods_.find(full_method);
    if (it != methods_.end()) return it->second.get();
  }
  absl::MutexLock lock(&mu_);
  auto& slot = methods_[full_method];
  if (slot) return slot.get();
  // "/crm.v1.CustomerProfileService/GetCustomer" -> service "crm.v1.CustomerProfileService", method
  // "GetCustomer".
  absl::string_view name = full_method;
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  const size_t slash = name.find('/');
  std::string service(slash == absl::string_view::npos ? "unknown" : name.substr(0, slash));
  std::string method(slash == absl::string_view::npos ? name : name.substr(slash + 1));
  slot = std::make_unique<Method>();
  slot->owner_ = this;
  slot->labels_ = {
      {"grpc_type", std::string(type)}, {"grpc_service", service}, {"grpc_method", method}};
  slot->started_ = &started_.Add(slot->labels_);
  slot->seconds_ =
      &seconds_.Add(slot->labels_, prometheus::Histogram::BucketBoundaries(LatencyBuckets()));
  return slot.get();
}

prometheus::Counter* RpcMetrics::HandledCounter(Method* m, int code) {
  absl::MutexLock lock(&mu_);
  auto labels = m->labels_;
  labels["grpc_code"] = std::string(CodeName(code));
  return &handled_.Add(labels);
}

void RpcMetrics::Method::Handled(int code, double seconds) {
  if (code < 0 || code > 16) code = 2;
  prometheus::Counter* c = handled_[code].load(std::memory_order_acquire);
  if (c == nullptr) {
    c = owner_->HandledCounter(this, code);
    handled_[code].store(c, std::memory_order_release);
  }
  c->Increment();
  seconds_->Observe(seconds);
}

grpc::experimental::Interceptor* MetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new MetricsInterceptor(metrics_->ForMethod(info->method(), TypeName(info->type())),
                                /*server=*/true);
}

grpc::experimental::Interceptor* MetricsInterceptorFactory::CreateClientInterceptor(
    grpc::experimental::ClientRpcInfo* info) {
  return new MetricsInterceptor(metrics_->ForMethod(info->method(), TypeName(info->type())),
                                /*server=*/false);
}

}  // namespace crm::metrics
