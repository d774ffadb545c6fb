#include "services/gateway/upstream_unary.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/gateway/web_protocol.h"

namespace crm::gateway {
namespace {

// Collects one answer; deletes itself (on the loop, after the stream is over).
class UnaryCall final : public UpstreamSink {
 public:
  UnaryCall(EventLoop* loop, std::function<void(grpc::Status, std::string)> done)
      : loop_(loop), done_(std::move(done)) {}

  void Start(UpstreamPool& pool, const std::string& address, Headers headers, std::string body) {
    stream_ = pool.Start(address, std::move(headers), std::move(body), this);
  }

  void OnUpstreamHeaders(const Headers&) override {}
  void OnUpstreamData(const char* data, size_t size) override { body_.append(data, size); }
  void OnUpstreamTrailers(const Headers& trailers) override {
    trailers_ = trailers;
    answered_ = true;
  }
  void OnUpstreamClose(const std::string& error) override {
    std::string message;
    grpc::Status status = Outcome(error, &message);
    done_(std::move(status), std::move(message));
    // The stream may not be destroyed inside its own callback.
    loop_->Post([this] { delete this; });
  }

 private:
  grpc::Status Outcome(const std::string& error, std::string* message) const {
    if (!error.empty() || !answered_) {
      return grpc::Status(
          grpc::StatusCode::UNAVAILABLE,
          absl::StrCat("the service did not answer: ", error.empty() ? "no trailers" : error));
    }
    if (const int code = GrpcCodeOf(trailers_); code != 0) {
      return grpc::Status(static_cast<grpc::StatusCode>(code), GrpcMessageOf(trailers_),
                          GrpcStatusDetailsOf(trailers_));
    }
    // No request asks for compression (no grpc-accept-encoding), so the answer is one plain frame.
    auto frames = ParseFrames(body_, body_.size());
    if (!frames.ok() || frames->size() != 1 || (*frames)[0].flags != 0) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "the answer is not one gRPC message");
    }
    *message = std::move((*frames)[0].payload);
    return grpc::Status::OK;
  }

  EventLoop* const loop_;
  std::function<void(grpc::Status, std::string)> done_;
  std::unique_ptr<UpstreamStream> stream_;
  std::string body_;
  Headers trailers_;
  bool answered_ = false;
};

}  // namespace

void CallUpstreamUnary(UpstreamPool& pool, const std::string& address, const std::string& path,
                       Headers headers, const std::string& message,
                       std::function<void(grpc::Status, std::string)> done) {
  Headers h = {{":method", "POST"},
               {":path", path},
               {"content-type", "application/grpc"},
               {"te", "trailers"},
               {"user-agent", "crm-gateway"}};
  for (auto& header : headers) h.push_back(std::move(header));
  auto* call = new UnaryCall(pool.loop(), std::move(done));
  call->Start(pool, address, std::move(h), EncodeFrame(0, message));
}

}  // namespace crm::gateway
