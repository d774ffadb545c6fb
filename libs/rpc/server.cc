#include "libs/rpc/server.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "libs/log/log.h"
#include "libs/metrics/rpc_metrics.h"
#include "libs/rpc/caller_auth.h"
#include "libs/rpc/malformed_request.h"
#include "libs/rpc/transport.h"
#include "libs/trace/trace.h"

namespace crm::rpc {
namespace {

// The health port's catch-all: anything but health is not served there.
class NothingButHealth : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    class Refuse : public grpc::ServerGenericBidiReactor {
     public:
      Refuse() {
        Finish(
            grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "this port serves only grpc.health.v1"));
      }
      void OnDone() override { delete this; }
    };
    return new Refuse();
  }
};

// Makes the caller's trace (its traceparent continued, or a new trace when it sent none or a
// malformed one) current while a unary handler runs: gRPC runs the receive hooks and then the
// handler on one thread, at once. The trace is left when the status is sent from that thread (a
// handler that finishes before it returns: the sends run as it returns) or by rpc::FinishOn (which
// takes it to the executor), and at the latest when the call is destroyed. Streams are not traced
// here: their reactors run on whatever thread gRPC picks. With debug logging, every call answered
// writes a "call handled" line in its trace.
class TraceInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit TraceInterceptor(const char* method) : method_(method) {}
  ~TraceInterceptor() override { trace::LeaveCall(this); }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      absl::string_view traceparent;
      const auto* metadata = methods->GetRecvInitialMetadata();
      if (auto it = metadata->find(trace::kTraceparent); it != metadata->end()) {
        traceparent = absl::string_view(it->second.data(), it->second.size());
      }
      context_ = trace::ContinueOrStart(traceparent);
      started_ = absl::Now();
      trace::EnterCall(context_, this);
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      if (log::Enabled(log::Level::kDebug)) {
        trace::Scope scope(context_);
        log::Debug(
            "call handled",
            {{"method", method_},
             {"code", metrics::CodeName(static_cast<int>(methods->GetSendStatus().error_code()))},
             {"latency_ms", absl::ToDoubleMilliseconds(absl::Now() - started_)}});
      }
      trace::LeaveCall(this);
    }
    methods->Proceed();
  }

 private:
  const char* method_;
  trace::TraceContext context_;
  absl::Time started_;
};

class TraceInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    if (info->type() != grpc::experimental::ServerRpcInfo::Type::UNARY) return nullptr;
    return new TraceInterceptor(info->method());
  }
};

// The caller check (libs/rpc/caller_auth.h) in the caller's trace: it runs, and logs admin calls,
// before the call's handler, where no trace is current yet.
class TracedCallerAuth : public grpc::AuthMetadataProcessor {
 public:
  explicit TracedCallerAuth(bool tls) : check_(tls) {}
  bool IsBlocking() const override { return check_.IsBlocking(); }
  grpc::Status Process(const InputMetadata& metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed, OutputMetadata* response) override {
    std::optional<trace::TraceContext> caller;
    if (auto it = metadata.find(trace::kTraceparent); it != metadata.end()) {
      caller = trace::Parse(absl::string_view(it->second.data(), it->second.size()));
    }
    trace::Scope scope(caller);
    return check_.Process(metadata, context, consumed, response);
  }

 private:
  CallerAuthProcessor check_;
};

// A duration as a channel argument's milliseconds (an int), at least 1 ms.
int ChannelArgMs(absl::Duration d) {
  return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(d), 1, INT32_MAX));
}

}  // namespace

Server::Server(ServerOptions options) : options_(std::move(options)) {}

Server::~Server() { Shutdown(); }

void Server::AddService(grpc::Service* service, std::string full_name) {
  services_.emplace_back(service, std::move(full_name));
}

void Server::SetGenericService(grpc::CallbackGenericService* service) { generic_ = service; }

void Server::OnShutdown(std::function<void()> hook) { shutdown_hooks_.push_back(std::move(hook)); }

absl::Status Server::Start() {
  // Debian's Abseil is built with mutex deadlock detection on, and gRPC locks absl::Mutex on every
  // call: the cycle bookkeeping cost ~4% of a GetCustomer call's CPU. Lock order is checked by our
  // tests and thread-safety annotations instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Both are process-wide switches that must be set before a server is built; setting them again is
  // harmless.
  grpc::EnableDefaultHealthCheckService(true);
  // Without this call the linker drops the reflection plugin (--as-needed) and reflection silently
  // vanishes.
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  Configure(builder);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.listen_address,
                     " (address in use, or not an address of this host)"));
  }
  if (!options_.health_listen.empty()) {
    if (absl::Status s = StartHealthPort(); !s.ok()) {
      server_->Shutdown();
      server_.reset();
      return s;
    }
  }
  SetServing(false);
  log::Info("grpc server listening", {{"address", options_.listen_address},
                                      {"port", port_},
                                      {"tls", !TlsDir().empty() && options_.authenticate_callers},
                                      {"health_port", health_port_}});
  return absl::OkStatus();
}

void Server::Configure(grpc::ServerBuilder& builder) {
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (options_.authenticate_callers) {
    credentials = ServerTransportCredentials();
    credentials->SetAuthMetadataProcessor(std::make_shared<TracedCallerAuth>(!TlsDir().empty()));
  }
  builder.AddListeningPort(options_.listen_address, credentials, &port_);
  // gRPC shares ports (SO_REUSEPORT) by default: a second process started on a port in use would
  // silently take half of its connections instead of failing.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options_.max_message_bytes);
  builder.SetMaxSendMessageSize(options_.max_message_bytes);
  // Clients (the gateway, other services) keep idle channels alive with pings every 30 s; accept
  // them.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
  // Unset, gRPC's own default is infinite for both.
  if (options_.max_connection_age != absl::InfiniteDuration()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                               ChannelArgMs(options_.max_connection_age));
  }
  if (options_.max_connection_age_grace != absl::InfiniteDuration()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               ChannelArgMs(options_.max_connection_age_grace));
  }
  for (auto& [service, name] : services_) builder.RegisterService(service);
  if (generic_ != nullptr) builder.RegisterCallbackGenericService(generic_);
  CaptureProtobufParseErrors();
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<TraceInterceptorFactory>());
  interceptors.push_back(std::make_unique<MalformedRequestInterceptorFactory>());
  if (options_.metrics != nullptr) {
    interceptors.push_back(std::make_unique<metrics::ServerMetricsInterceptorFactory>(
        &options_.metrics->server_rpc()));
  }
  if (options_.interceptors) builder.experimental().SetInterceptorCreators(std::move(interceptors));
}

absl::Status Server::StartHealthPort() {
  grpc::ServerBuilder health;
  health.AddListeningPort(options_.health_listen, grpc::InsecureServerCredentials(), &health_port_);
  health.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  health_only_ = std::make_unique<NothingButHealth>();
  health.RegisterCallbackGenericService(health_only_.get());
  health_server_ = health.BuildAndStart();
  if (health_server_ == nullptr || health_port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.health_listen, " (health port)"));
  }
  return absl::OkStatus();
}

void Server::SetServing(bool serving) {
  for (grpc::Server* server : {server_.get(), health_server_.get()}) {
    if (server == nullptr) continue;
    auto* health = server->GetHealthCheckService();
    if (health == nullptr) continue;
    health->SetServingStatus(serving);
    for (auto& [service, name] : services_) health->SetServingStatus(name, serving);
  }
}

void Server::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_ || server_ == nullptr) return;
    shut_down_ = true;
  }
  log::Info("shutting down: NOT_SERVING, draining in-flight calls",
            {{"grace_seconds", absl::ToDoubleSeconds(options_.drain_grace)}});
  // The health service's own Shutdown marks everything NOT_SERVING and ignores later updates.
  if (auto* health = server_->GetHealthCheckService()) health->Shutdown();
  if (health_server_ != nullptr) {
    if (auto* health = health_server_->GetHealthCheckService()) health->Shutdown();
  }
  for (auto& hook : shutdown_hooks_) hook();
  server_->Shutdown(absl::ToChronoTime(absl::Now() + options_.drain_grace));
  server_->Wait();
  if (health_server_ != nullptr) {
    health_server_->Shutdown(absl::ToChronoTime(absl::Now()));
    health_server_->Wait();
  }
  log::Info("grpc server stopped");
}

}  // namespace crm::rpc
