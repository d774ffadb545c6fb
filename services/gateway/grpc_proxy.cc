#include "services/gateway/grpc_proxy.h"

#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_cat.h"
#include "libs/rpc/status.h"

namespace crm::gateway {

std::string PeerAddress(absl::string_view peer) {
  if (absl::ConsumePrefix(&peer, "ipv4:")) return std::string(peer.substr(0, peer.rfind(':')));
  if (absl::ConsumePrefix(&peer, "ipv6:")) {
    if (absl::ConsumePrefix(&peer, "[")) return std::string(peer.substr(0, peer.find(']')));
    return std::string(peer.substr(0, peer.rfind(':')));
  }
  return std::string(peer);
}

class ProxyReactor : public grpc::ServerGenericBidiReactor {
 public:
  ProxyReactor(GrpcProxy* proxy, grpc::GenericCallbackServerContext* ctx) : proxy_(proxy), ctx_(ctx) {
    gateway().CallStarted(Protocol::kGrpc);
    info_.protocol = Protocol::kGrpc;
    info_.path = ctx->method();
    info_.peer_ip = PeerAddress(ctx->peer());
    for (const auto& [key, value] : ctx->client_metadata()) {
      if (key == "authorization") info_.authorization.assign(value.data(), value.size());
      if (key == "x-request-id") info_.request_id_header.assign(value.data(), value.size());
    }
    const auto deadline = ctx->deadline();
    if (deadline != std::chrono::system_clock::time_point::max()) {
      info_.client_timeout = std::max(absl::ZeroDuration(), absl::FromChrono(deadline - std::chrono::system_clock::now()));
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return End(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "request: the call carried no message"));
    absl::Status admitted = gateway().Admit(info_, admission_);
    if (admitted.ok()) admitted = gateway().AuthorizeBytes(ToBytes(request_), admission_);
    ctx_->AddInitialMetadata("x-request-id", admission_.request_id);
    if (!admitted.ok()) {
      if (admission_.retry_after > absl::ZeroDuration()) {
        ctx_->AddTrailingMetadata("retry-after-ms", absl::StrCat(absl::ToInt64Milliseconds(admission_.retry_after) + 1));
      }
      return End(rpc::ToGrpc(admitted));
    }
    // The caller's deadline is already in the admission (capped); its cancellation reaches the backend
    // through OnCancel. (ClientContext::FromCallbackServerContext would do both, at a higher cost per call.)
    auto context = [this] {
      auto ctx = std::make_unique<grpc::ClientContext>();
      absl::MutexLock lock(&mu_);
      if (cancelled_) ctx->TryCancel();
      backend_contexts_.push_back(ctx.get());
      return ctx;
    };
    if (!admission_.route->server_streaming) {
      gateway().CallUnary(admission_, request_, context, [this](grpc::Status status, grpc::ByteBuffer response) {
        if (!status.ok()) return End(status);
        response_ = std::move(response);
        status_ = status;
        StartWriteAndFinish(&response_, grpc::WriteOptions(), status);
      });
      return;
    }
    auto backend_context = context();
    gateway().PrepareContext(admission_, *backend_context);
    stream_ = std::make_unique<BackendStream>(
        std::move(backend_context),
        [this](const grpc::ByteBuffer& message) {
          response_ = message;
          StartWrite(&response_);
        },
        [this](grpc::Status status) {
          const bool shutting_down = gateway().UntrackStream(stream_.get());
          if (shutting_down && status.error_code() == grpc::StatusCode::CANCELLED) {
            status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the gateway is shutting down; reconnect");
          }
          End(status);
        });
    if (!gateway().TrackStream(stream_.get())) {
      stream_.reset();
      return End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the gateway is shutting down; reconnect"));
    }
    stream_->Start(admission_.targets[0], admission_.route->path, request_, &gateway().BackendMetrics(*admission_.route));
  }

  void OnWriteDone(bool ok) override {
    if (stream_ == nullptr) return;
    if (ok) {
      stream_->Next();
    } else {
      stream_->Cancel();  // the caller went away; the backend stream ends and OnDone follows
      stream_->Next();    // collect the end of the stream
    }
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    for (grpc::ClientContext* ctx : backend_contexts_) ctx->TryCancel();
  }

  void OnDone() override {
    gateway().CallEnded(info_, admission_, status_);
    delete this;
  }

 private:
  Gateway& gateway() { return *proxy_->gateway_; }
  void End(grpc::Status status) {
    status_ = status;
    Finish(std::move(status));
  }

  GrpcProxy* proxy_;
  grpc::GenericCallbackServerContext* ctx_;
  CallInfo info_;
  Admission admission_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  grpc::Status status_;
  std::unique_ptr<BackendStream> stream_;
  // Backend calls to cancel when the caller cancels. They outlive this reactor's OnCancel: OnDone (which
  // destroys them) comes only after every backend call has finished.
  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<grpc::ClientContext*> backend_contexts_ ABSL_GUARDED_BY(mu_);
};

grpc::ServerGenericBidiReactor* GrpcProxy::CreateReactor(grpc::GenericCallbackServerContext* ctx) {
  return new ProxyReactor(this, ctx);
}

}  // namespace crm::gateway
