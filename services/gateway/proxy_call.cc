#include "services/gateway/proxy_call.h"

#include <event2/event.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"
#include "libs/auth/caller.h"
#include "libs/base/error_reason.h"
#include "libs/base/status_macros.h"
#include "libs/rpc/status.h"
#include "libs/sharding/hash.h"
#include "libs/trace/trace.h"
#include "services/gateway/web_protocol.h"

namespace crm::gateway {

// The loop a call lives on (front_door.cc): its upstream pool and event base.
struct LoopContext;
UpstreamPool& PoolOf(LoopContext* ctx);
UpstreamPool& OwnServerPoolOf(LoopContext* ctx);
EventLoop& LoopOf(LoopContext* ctx);

namespace {

constexpr char kAllowedHeaders[] =
    "authorization, content-type, connect-protocol-version, connect-timeout-ms, "
    "connect-content-encoding, "
    "connect-accept-encoding, grpc-timeout, x-grpc-web, x-user-agent, x-request-id, "
    "content-encoding, accept-encoding, traceparent, tracestate";
constexpr char kExposedHeaders[] =
    "grpc-status, grpc-message, grpc-status-details-bin, x-request-id, traceparent, retry-after, "
    "content-encoding, "
    "connect-content-encoding, etag";
// Answers smaller than this are not worth compressing.
constexpr size_t kCompressAbove = 1024;

enum class Kind { kGrpc, kGrpcWeb, kGrpcWebText, kConnectUnary, kConnectStream, kConnectGet };

bool IsWeb(Kind k) { return k != Kind::kGrpc; }
bool IsConnect(Kind k) {
  return k == Kind::kConnectUnary || k == Kind::kConnectStream || k == Kind::kConnectGet;
}
bool IsEnveloped(Kind k) {
  return k == Kind::kGrpc || k == Kind::kGrpcWeb || k == Kind::kGrpcWebText ||
         k == Kind::kConnectStream;
}

Protocol ProtocolOf(Kind k) {
  switch (k) {
    case Kind::kGrpc: return Protocol::kGrpc;
    case Kind::kGrpcWeb: return Protocol::kGrpcWeb;
    case Kind::kGrpcWebText: return Protocol::kGrpcWebText;
    default: return Protocol::kConnect;
  }
}

std::string Frame(uint8_t flags, absl::string_view payload) { return EncodeFrame(flags, payload); }

// Reads length-prefixed messages (gRPC, gRPC-Web and Connect envelopes) from bytes arriving in
// pieces.
class FrameReader {
 public:
  void Add(const char* data, size_t n) { buffer_.append(data, n); }
  // The next complete message, if there is one.
  bool Next(uint8_t* flags, std::string* payload) {
    if (buffer_.size() - offset_ < 5) return false;
    const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + offset_);
    const uint32_t length =
        (uint32_t{p[1]} << 24) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 8) | uint32_t{p[4]};
    if (buffer_.size() - offset_ - 5 < length) return false;
    *flags = p[0];
    payload->assign(buffer_.data() + offset_ + 5, length);
    offset_ += 5 + length;
    if (offset_ == buffer_.size()) {
      buffer_.clear();
      offset_ = 0;
    }
    return true;
  }

 private:
  std::string buffer_;
  size_t offset_ = 0;
};

// An error with the details every error carries (libs/rpc/status.h): a service's as it sent them,
// else built from the code and message, as the services build theirs.
grpc::Status WithDetails(const grpc::Status& status) {
  if (status.ok() || !status.error_details().empty()) return status;
  return rpc::ToGrpc(rpc::FromGrpc(status));
}

// An error's details as a Connect error lists them, each with its JSON for people when this binary
// knows the message type.
std::vector<ErrorDetail> ConnectDetails(const std::string& status_details) {
  std::vector<ErrorDetail> out;
  google::rpc::Status model;
  if (status_details.empty() || !model.ParseFromString(status_details)) return out;
  for (const auto& any : model.details()) {
    ErrorDetail detail;
    detail.type = any.type_url().substr(any.type_url().rfind('/') + 1);
    detail.value = any.value();
    const auto* type =
        google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(detail.type);
    if (type != nullptr) {
      std::unique_ptr<google::protobuf::Message> message(
          google::protobuf::MessageFactory::generated_factory()->GetPrototype(type)->New());
      if (!message->ParseFromString(detail.value) ||
          !google::protobuf::util::MessageToJsonString(*message, &detail.debug_json).ok()) {
        detail.debug_json.clear();
      }
    }
    out.push_back(std::move(detail));
  }
  return out;
}

// A response that is not a gRPC call at all: CORS preflight, /healthz, or a request no protocol
// here fits.
class PlainReply : public ProxyCallBase {
 public:
  PlainReply(Exchange* ex, int status, Headers headers, std::string body) {
    if (body.empty()) {
      ex->Respond(status, headers, true);
    } else {
      headers.emplace_back("content-length", absl::StrCat(body.size()));
      ex->Respond(status, headers, false);
      ex->Write(std::move(body));
      ex->End({});
    }
  }
  void OnBody(const char*, size_t) override {}
  void OnBodyEnd() override {}
  void OnAbort() override {}
};

// The gateway's own health and reflection: a byte-for-byte relay to its internal gRPC server
// (reflection is a bidirectional stream: grpcurl asks, reads, asks again on one stream).
class InternalCall : public ProxyCallBase, public UpstreamSink {
 public:
  InternalCall(FrontDoor* door, LoopContext* ctx, Exchange* ex) : ex_(ex) {
    Headers h = {{":method", "POST"}, {":path", ex->head().path}};
    for (const auto& [k, v] : ex->head().headers) {
      if (k == "content-type" || k == "te" || k == "grpc-timeout" || k == "grpc-encoding" ||
          k == "grpc-accept-encoding") {
        h.emplace_back(k, v);
      }
    }
    upstream_ = OwnServerPoolOf(ctx).StartStreaming(door->internal_address(), std::move(h), this);
  }
  void OnBody(const char* data, size_t n) override {
    if (upstream_ != nullptr) UpstreamPool::Send(*upstream_, std::string(data, n), false);
  }
  void OnBodyEnd() override {
    if (upstream_ != nullptr) UpstreamPool::Send(*upstream_, "", true);
  }
  void OnAbort() override {
    done_ = true;
    upstream_.reset();
  }
  void OnUpstreamHeaders(const Headers& headers) override {
    if (done_) return;
    responded_ = true;
    ex_->Respond(200, Filter(headers), false);
  }
  void OnUpstreamData(const char* data, size_t n) override {
    if (!done_) ex_->Write(std::string(data, n));
  }
  void OnUpstreamTrailers(const Headers& trailers) override {
    if (done_) return;
    done_ = true;
    if (!responded_) return ex_->Respond(200, Filter(trailers), true);
    ex_->End(Filter(trailers));
  }
  void OnUpstreamClose(const std::string& error) override {
    if (done_) return;
    done_ = true;
    Headers failed = {
        {"grpc-status", "14"},
        {"grpc-message", PercentEncode(error)},
        {"grpc-status-details-bin",
         EncodeBinaryHeader(rpc::ToGrpc(absl::UnavailableError(error)).error_details())}};
    if (responded_) return ex_->End(failed);
    failed.emplace_back("content-type", "application/grpc");
    ex_->Respond(200, failed, true);
  }

 private:
  static Headers Filter(const Headers& in) {
    Headers out;
    for (const auto& [k, v] : in) {
      if (!k.empty() && k[0] != ':') out.emplace_back(k, v);
    }
    return out;
  }
  Exchange* ex_;
  std::unique_ptr<UpstreamStream> upstream_;
  bool responded_ = false;
  bool done_ = false;
};

// A crm.v1 call in any of the client protocols.
class GatewayCall : public ProxyCallBase, public UpstreamSink {
 public:
  GatewayCall(FrontDoor* door, LoopContext* ctx, Exchange* ex, Kind kind, bool json,
              bool gzip_response, std::string origin)
      : json_(json),
        gzip_response_(gzip_response),
        door_(door),
        ctx_(ctx),
        ex_(ex),
        kind_(kind),
        origin_(std::move(origin)) {
    const Exchange::Head& head = ex->head();
    info_.protocol = ProtocolOf(kind);
    info_.path = head.path;
    info_.peer_ip = head.peer_ip;
    if (const std::string* v = head.Find("authorization")) info_.authorization = *v;
    if (const std::string* v = head.Find("x-request-id")) info_.request_id_header = *v;
    // The client's trace continued, or a new one (a missing or malformed traceparent is no error).
    const std::string* traceparent = head.Find(trace::kTraceparent);
    trace_ = trace::ContinueOrStart(traceparent != nullptr ? *traceparent : "");
    traceparent_ = trace::Format(trace_);
    if (kind == Kind::kGrpc || kind == Kind::kGrpcWeb || kind == Kind::kGrpcWebText) {
      if (const std::string* v = head.Find("grpc-timeout"))
        info_.client_timeout = ParseGrpcTimeout(*v);
    } else if (const std::string* v = head.Find("connect-timeout-ms")) {
      info_.client_timeout = ParseConnectTimeoutMs(*v);
    }
    gateway().CallStarted(info_.protocol);
    door_->in_flight()++;
    started_ = true;
    const absl::Status admitted = gateway().Admit(info_, admission_);
    if (!admitted.ok()) {
      Finish(rpc::ToGrpc(WithRetryHint(admitted)));
      return;
    }
    const Route& route = *admission_.route;
    if (route.server_streaming && !IsEnveloped(kind_)) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat(route.path,
                                       " is a server stream: use application/connect+json, "
                                       "application/connect+proto, gRPC-Web or gRPC")));
      return;
    }
    deadline_ = evtimer_new(LoopOf(ctx).base(), &GatewayCall::OnDeadline, this);
    const timeval tv = absl::ToTimeval(admission_.timeout);
    evtimer_add(deadline_, &tv);
    if (kind_ == Kind::kConnectGet) {
      if (!route.no_side_effects) {
        Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                            absl::StrCat(route.path, " changes data: call it with POST, not GET")));
        return;
      }
      OnBodyEnd();  // a GET has its message in the query
    }
  }

  ~GatewayCall() override {
    if (deadline_ != nullptr) event_free(deadline_);
    upstream_.reset();
    CancelSlowPath();
    if (!finished_ && started_)
      Account(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    if (holds_stream_slot_) door_->streams().Release(StreamKey());
    *alive_ = false;
  }

  void OnBody(const char* data, size_t n) override {
    if (finished_ || dispatched_) return;
    body_.append(data, n);
    const size_t limit = gateway().options().max_request_bytes;
    const size_t wire_limit = kind_ == Kind::kGrpcWebText ? limit / 3 * 4 + 16 : limit + 5;
    if (body_.size() > wire_limit) {
      Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrCat("request: body exceeds the limit of ", limit, " bytes")));
    }
  }

  void OnBodyEnd() override {
    if (finished_ || dispatched_) return;
    dispatched_ = true;
    auto message = DecodeRequest();
    if (!message.ok()) return Finish(rpc::ToGrpc(message.status()));
    auto request = ParseRequest(*message);
    if (!request.ok()) return Finish(rpc::ToGrpc(request.status()));
    const absl::Status authorized = gateway().Authorize(**request, admission_);
    if (!authorized.ok()) return Finish(rpc::ToGrpc(authorized));
    if (admission_.route->server_streaming) {
      const absl::Status slot = TakeStreamSlot();
      if (!slot.ok()) return Finish(rpc::ToGrpc(slot));
    }
    if (admission_.route->local || admission_.targets.size() != 1) return CallSlowPath(*message);
    ForwardUpstream();
  }

  void OnAbort() override {
    client_gone_ = true;
    if (finished_) return;
    upstream_.reset();  // cancels the call at the service
    CancelSlowPath();
    Account(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
  }

  void OnShutdown() override {
    if (finished_ || admission_.route == nullptr || !admission_.route->server_streaming ||
        !dispatched_)
      return;
    upstream_.reset();
    Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the gateway is shutting down; reconnect"));
  }

  // --- answers from the service ---
  void OnUpstreamHeaders(const Headers& headers) override {
    if (finished_) return;
    if (kind_ == Kind::kGrpc) {
      Headers out;
      for (const auto& [k, v] : headers) {
        if (k == "content-type" || k == "grpc-encoding" || k == "grpc-accept-encoding")
          out.emplace_back(k, v);
      }
      out.emplace_back("x-request-id", admission_.request_id);
      out.emplace_back(trace::kTraceparent, traceparent_);
      RespondOnce(200, std::move(out));
    } else if (kind_ != Kind::kConnectUnary && kind_ != Kind::kConnectGet) {
      RespondOnce(200, WebHeaders(StreamContentType()));
    }
  }

  void OnUpstreamData(const char* data, size_t n) override {
    if (finished_) return;
    if (kind_ == Kind::kGrpc || kind_ == Kind::kGrpcWeb) {
      ex_->Write(
          std::string(data, n));  // the same length-prefixed frames: passed through untouched
      return;
    }
    frames_.Add(data, n);
    uint8_t flags = 0;
    std::string payload;
    while (frames_.Next(&flags, &payload)) {
      if (kind_ == Kind::kGrpcWebText) {
        ex_->Write(absl::Base64Escape(Frame(flags, payload)));
        continue;
      }
      auto encoded = EncodeResponseMessage(payload);
      if (!encoded.ok()) return Finish(rpc::ToGrpc(encoded.status()));
      if (kind_ == Kind::kConnectStream) {
        if (gzip_response_ && encoded->size() > kCompressAbove) {
          ex_->Write(Frame(kFrameCompressed, Gzip(*encoded)));
        } else {
          ex_->Write(Frame(0, *encoded));
        }
      } else {
        unary_response_ = std::move(*encoded);
      }
    }
  }

  void OnUpstreamTrailers(const Headers& trailers) override {
    if (finished_) return;
    const int code = GrpcCodeOf(trailers);
    const std::string message = GrpcMessageOf(trailers);
    if (kind_ == Kind::kGrpc) {
      Headers out;
      for (const auto& [k, v] : trailers) {
        if (!k.empty() && k[0] != ':' && k != "content-type") out.emplace_back(k, v);
      }
      // The service's details pass through untouched; a service that sent none gets the ones its
      // code and message make.
      // (Only when the header is absent: an undecodable one is forwarded as is, never doubled.)
      const bool has_details = std::any_of(trailers.begin(), trailers.end(), [](const auto& kv) {
        return kv.first == "grpc-status-details-bin";
      });
      if (code != 0 && !has_details) {
        out.emplace_back("grpc-status-details-bin",
                         EncodeBinaryHeader(
                             WithDetails(grpc::Status(static_cast<grpc::StatusCode>(code), message))
                                 .error_details()));
      }
      if (!responded_) {
        // Trailers-only: one HEADERS frame with the status.
        out.emplace_back("content-type", "application/grpc");
        out.emplace_back("x-request-id", admission_.request_id);
        out.emplace_back(trace::kTraceparent, traceparent_);
        return Complete(grpc::Status(static_cast<grpc::StatusCode>(code), message), [&] {
          responded_ = true;
          ex_->Respond(200, out, true);
        });
      }
      return Complete(grpc::Status(static_cast<grpc::StatusCode>(code), message),
                      [&] { ex_->End(out); });
    }
    if ((kind_ == Kind::kConnectUnary || kind_ == Kind::kConnectGet) && code == 0) {
      return Complete(grpc::Status::OK, [&] { RespondConnectUnary(); });
    }
    Finish(
        grpc::Status(static_cast<grpc::StatusCode>(code), message, GrpcStatusDetailsOf(trailers)));
  }

  void OnUpstreamClose(const std::string& error) override {
    if (finished_) return;
    if (error.empty())
      return Finish(
          grpc::Status(grpc::StatusCode::INTERNAL, "the service ended the call without a status"));
    Finish(grpc::Status(client_gone_ ? grpc::StatusCode::CANCELLED : grpc::StatusCode::UNAVAILABLE,
                        error));
  }

 private:
  Gateway& gateway() { return *door_->gateway(); }

  std::string StreamKey() const {
    return absl::StrCat(auth::RoleName(admission_.principal.role), ":",
                        admission_.principal.subject);
  }

  std::string StreamContentType() const {
    const std::string* ct = ex_->head().Find("content-type");
    if (kind_ == Kind::kGrpcWeb) return "application/grpc-web+proto";
    if (kind_ == Kind::kGrpcWebText) return "application/grpc-web-text+proto";
    if (kind_ == Kind::kConnectStream)
      return json_ ? "application/connect+json" : "application/connect+proto";
    return ct != nullptr ? *ct : "application/grpc";
  }

  Headers WebHeaders(std::string content_type) const {
    Headers h = {{"content-type", std::move(content_type)},
                 {"x-request-id", admission_.request_id},
                 {trace::kTraceparent, traceparent_}};
    if (!origin_.empty()) {
      h.emplace_back("access-control-allow-origin", origin_);
      h.emplace_back("access-control-expose-headers", kExposedHeaders);
      h.emplace_back("vary", "Origin");
    }
    if (kind_ == Kind::kConnectStream && gzip_response_)
      h.emplace_back("connect-content-encoding", "gzip");
    return h;
  }

  void RespondOnce(int status, Headers headers) {
    if (responded_ || client_gone_) return;
    responded_ = true;
    ex_->Respond(status, headers, false);
  }

  // The request as the route's message type. A Connect JSON request is re-encoded as binary
  // (`message` too) and enveloped for the service; a Connect binary one is enveloped as it is.
  absl::StatusOr<std::unique_ptr<google::protobuf::Message>> ParseRequest(std::string& message) {
    const Route& route = *admission_.route;
    std::unique_ptr<google::protobuf::Message> request(route.request_prototype->New());
    if (IsConnect(kind_) && json_) {
      auto parsed = google::protobuf::util::JsonStringToMessage(message, request.get());
      if (!parsed.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("request: ", parsed.message().as_string()));
      }
      message = request->SerializeAsString();
      upstream_body_ = Frame(0, message);
      return request;
    }
    if (!request->ParseFromString(message)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request: does not parse as ", route.request_prototype->GetDescriptor()->full_name()));
    }
    if (IsConnect(kind_)) upstream_body_ = Frame(0, message);
    return request;
  }

  // One of the principal's open-stream slots, held until the call ends.
  absl::Status TakeStreamSlot() {
    const bool customer = admission_.principal.role == v1::ROLE_CUSTOMER;
    const int limit = customer ? door_->options().max_streams_per_customer
                               : door_->options().max_streams_per_principal;
    if (!door_->streams().Acquire(StreamKey(), limit)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("too many open streams: at most ", limit, " at once for one ",
                       customer ? "customer" : "caller", "; close one first"));
    }
    holds_stream_slot_ = true;
    return absl::OkStatus();
  }

  // Relays the call to its one target as HTTP/2 frames.
  void ForwardUpstream() {
    const Route& route = *admission_.route;
    Headers h = {{":method", "POST"},
                 {":path", route.path},
                 {"content-type", "application/grpc"},
                 {"te", "trailers"},
                 {"grpc-timeout", FormatGrpcTimeout(admission_.timeout)},
                 {"x-request-id", admission_.request_id},
                 {trace::kTraceparent, trace::Format(trace::ChildOf(trace_))},
                 {auth::kCallerMetadata, admission_.caller_assertion},
                 {"user-agent", "crm-gateway"}};
    if (kind_ == Kind::kGrpc) {
      // Native gRPC passes compression through: the service decodes it, and may answer compressed.
      for (const char* name : {"grpc-encoding", "grpc-accept-encoding"}) {
        if (const std::string* v = ex_->head().Find(name)) h.emplace_back(name, *v);
      }
    } else if (request_compressed_) {
      h.emplace_back("grpc-encoding", "gzip");
    }
    backend_ = &gateway().BackendMetrics(route);
    backend_->Started();
    backend_started_ = absl::Now();
    upstream_ = PoolOf(ctx_).Start(admission_.target_addresses[0], std::move(h),
                                   std::move(upstream_body_), this);
  }

  // The request message (binary protobuf, or JSON for Connect JSON), out of whatever the protocol
  // wraps it in.
  absl::StatusOr<std::string> DecodeRequest() {
    if (kind_ == Kind::kConnectGet) return DecodeConnectGet();
    if (kind_ == Kind::kConnectUnary) return DecodeConnectUnary();
    return DecodeEnveloped();
  }

  // A Connect GET: the message in the query, perhaps base64url and gzip.
  absl::StatusOr<std::string> DecodeConnectGet() {
    const std::string& query = ex_->head().query;
    const std::string encoding = QueryParam(query, "encoding").value_or("");
    if (encoding != "json" && encoding != "proto") {
      return absl::InvalidArgumentError(
          "encoding: a Connect GET names encoding=json or encoding=proto");
    }
    json_ = encoding == "json";
    std::string message = QueryParam(query, "message").value_or("");
    if (QueryParam(query, "base64").value_or("") == "1") {
      std::string decoded;
      if (!absl::WebSafeBase64Unescape(message, &decoded))
        return absl::InvalidArgumentError("message: not base64url");
      message = std::move(decoded);
    }
    if (QueryParam(query, "compression").value_or("identity") == "gzip")
      return Gunzip(message, gateway().options().max_request_bytes);
    return message;
  }

  // A Connect unary POST: the body is the message, perhaps gzip (Content-Encoding).
  absl::StatusOr<std::string> DecodeConnectUnary() {
    const size_t limit = gateway().options().max_request_bytes;
    const std::string* encoding = ex_->head().Find("content-encoding");
    if (encoding != nullptr && absl::EqualsIgnoreCase(*encoding, "gzip"))
      return Gunzip(body_, limit);
    if (encoding != nullptr && !absl::EqualsIgnoreCase(*encoding, "identity")) {
      return absl::UnimplementedError(
          absl::StrCat("content-encoding: ", *encoding, " is not supported (gzip is)"));
    }
    if (body_.size() > limit)
      return absl::ResourceExhaustedError(
          absl::StrCat("body: exceeds the limit of ", limit, " bytes"));
    return std::move(body_);
  }

  // gRPC, gRPC-Web (binary or text) and Connect streams: exactly one length-prefixed message,
  // perhaps compressed with the encoding its header names.
  absl::StatusOr<std::string> DecodeEnveloped() {
    const size_t limit = gateway().options().max_request_bytes;
    std::string bytes = std::move(body_);
    if (kind_ == Kind::kGrpcWebText) {
      CRM_ASSIGN_OR_RETURN(bytes, DecodeBase64Chunks(bytes));
    }
    FrameReader reader;
    reader.Add(bytes.data(), bytes.size());
    uint8_t flags = 0;
    std::string payload, extra;
    uint8_t extra_flags = 0;
    if (!reader.Next(&flags, &payload) || reader.Next(&extra_flags, &extra)) {
      return absl::InvalidArgumentError("body: expected exactly one request message");
    }
    if (kind_ != Kind::kConnectStream) upstream_body_ = std::move(bytes);  // forwarded as it came
    if (flags & kFrameCompressed) {
      const std::string* encoding = ex_->head().Find(
          kind_ == Kind::kConnectStream ? "connect-content-encoding" : "grpc-encoding");
      if (encoding == nullptr || !absl::EqualsIgnoreCase(*encoding, "gzip")) {
        return absl::InvalidArgumentError(
            "body: a compressed message needs gzip named as its encoding");
      }
      request_compressed_ = true;
      return Gunzip(payload, limit);
    }
    if (payload.size() > limit)
      return absl::ResourceExhaustedError(
          absl::StrCat("body: message exceeds the limit of ", limit, " bytes"));
    return payload;
  }

  // One answer message for a Connect client: binary as it is, or JSON.
  absl::StatusOr<std::string> EncodeResponseMessage(const std::string& proto) {
    if (!json_) return proto;
    std::unique_ptr<google::protobuf::Message> m(admission_.route->response_prototype->New());
    if (!m->ParseFromString(proto))
      return absl::InternalError("the service's answer could not be encoded");
    std::string out;
    if (!google::protobuf::util::MessageToJsonString(*m, &out).ok()) {
      return absl::InternalError("the service's answer could not be encoded");
    }
    return out;
  }

  void RespondConnectUnary() {
    std::string body = std::move(unary_response_);
    Headers h = WebHeaders(json_ ? "application/json" : "application/proto");
    if (kind_ == Kind::kConnectGet) {
      // Personal data: cached by the browser only, and revalidated each time (304 while unchanged).
      const std::string etag =
          absl::StrCat("\"", absl::Hex(sharding::StableHash64(body), absl::kZeroPad16), "\"");
      h.emplace_back("cache-control", "private, no-cache");
      h.emplace_back("etag", etag);
      const std::string* match = ex_->head().Find("if-none-match");
      if (match != nullptr && *match == etag) {
        responded_ = true;
        return ex_->Respond(304, h, true);
      }
    }
    if (gzip_response_ && body.size() > kCompressAbove) {
      body = Gzip(body);
      h.emplace_back("content-encoding", "gzip");
    }
    h.emplace_back("content-length", absl::StrCat(body.size()));
    responded_ = true;
    ex_->Respond(200, h, false);
    ex_->Write(std::move(body));
    ex_->End({});
  }

  // The 360° view and fan-out calls: through the gateway's gRPC channels; the answer comes back to
  // this loop.
  void CallSlowPath(const std::string& message) {
    auto token = std::weak_ptr<bool>(alive_);
    slow_ = std::make_shared<SlowCall>();
    auto slow = slow_;
    auto make_context = [slow] {
      auto ctx = std::make_unique<grpc::ClientContext>();
      absl::MutexLock lock(&slow->mu);
      if (slow->cancelled) ctx->TryCancel();
      slow->contexts.push_back(ctx.get());
      return ctx;
    };
    EventLoop* loop = &LoopOf(ctx_);
    // The backend calls are made in the call's trace (libs/rpc's channels send it).
    trace::Scope scope(trace_);
    gateway().CallUnary(
        admission_, FromBytes(message), make_context,
        [this, token, slow, loop](grpc::Status status, grpc::ByteBuffer response) {
          {
            absl::MutexLock lock(&slow->mu);
            slow->done = true;  // the contexts die after this returns
          }
          loop->Post(
              [this, token, status = std::move(status), bytes = ToBytes(response)]() mutable {
                if (token.expired()) return;
                OnSlowDone(std::move(status), std::move(bytes));
              });
        },
        &PoolOf(ctx_));
  }

  void CancelSlowPath() {
    if (slow_ == nullptr) return;
    absl::MutexLock lock(&slow_->mu);
    slow_->cancelled = true;
    if (!slow_->done) {
      for (grpc::ClientContext* c : slow_->contexts) c->TryCancel();
    }
  }

  void OnSlowDone(grpc::Status status, std::string bytes) {
    if (finished_) return;
    if (!status.ok()) return Finish(status);
    if (kind_ == Kind::kConnectUnary || kind_ == Kind::kConnectGet) {
      auto encoded = EncodeResponseMessage(bytes);
      if (!encoded.ok()) return Finish(rpc::ToGrpc(encoded.status()));
      unary_response_ = std::move(*encoded);
      return Complete(grpc::Status::OK, [&] { RespondConnectUnary(); });
    }
    if (kind_ == Kind::kGrpc) {
      RespondOnce(200, {{"content-type", "application/grpc"},
                        {"x-request-id", admission_.request_id},
                        {trace::kTraceparent, traceparent_}});
      ex_->Write(Frame(0, bytes));
      return Complete(grpc::Status::OK, [&] { ex_->End({{"grpc-status", "0"}}); });
    }
    RespondOnce(200, WebHeaders(StreamContentType()));
    OnUpstreamData(Frame(0, bytes).data(), bytes.size() + 5);
    Finish(grpc::Status::OK);
  }

  static void OnDeadline(evutil_socket_t, short, void* self) {
    auto* c = static_cast<GatewayCall*>(self);
    c->upstream_.reset();
    c->CancelSlowPath();
    c->Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                           "deadline exceeded before the service answered"));
  }

  // Ends the call with `status` in the client's protocol (an error, or OK after a streamed answer).
  void Finish(const grpc::Status& status) {
    if (finished_) return;
    Complete(status, [&] { SendStatus(WithDetails(status)); });
  }

  // A refusal by the rate limiter says when to try again: RetryInfo, with the same delay as the
  // retry-after-ms trailer.
  absl::Status WithRetryHint(absl::Status refused) const {
    if (refused.code() != absl::StatusCode::kResourceExhausted ||
        admission_.retry_after <= absl::ZeroDuration()) {
      return refused;
    }
    return rpc::WithRetryDelay(WithReason(std::move(refused), kReasonRateLimited),
                               absl::Milliseconds(RetryAfterMs()));
  }

  int64_t RetryAfterMs() const { return absl::ToInt64Milliseconds(admission_.retry_after) + 1; }

  template <typename F>
  void Complete(const grpc::Status& status, F&& send) {
    if (finished_) return;
    if (!client_gone_) send();
    Account(status);
  }

  void Account(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    if (deadline_ != nullptr) evtimer_del(deadline_);
    if (backend_ != nullptr) {
      backend_->Handled(status.error_code(), absl::ToDoubleSeconds(absl::Now() - backend_started_));
      backend_ = nullptr;
    }
    if (holds_stream_slot_) {
      door_->streams().Release(StreamKey());
      holds_stream_slot_ = false;
    }
    trace::Scope scope(trace_);  // the access-log line
    gateway().CallEnded(info_, admission_, status);
    door_->in_flight()--;
  }

  void SendStatus(const grpc::Status& status) {
    const int code = static_cast<int>(status.error_code());
    const std::string& message = status.error_message();
    // A rate limit says when to try again.
    const bool retry = status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
                       admission_.retry_after > absl::ZeroDuration();
    const std::string& details = status.error_details();
    switch (kind_) {
      case Kind::kGrpc: return SendGrpcStatus(code, message, details, retry);
      case Kind::kGrpcWeb:
      case Kind::kGrpcWebText: {
        Headers h = WebHeaders(StreamContentType());
        if (retry) h.emplace_back("retry-after", RetryAfterSeconds());
        RespondOnce(200, h);
        std::string t = Frame(kGrpcWebTrailers, GrpcWebTrailers(code, message, details));
        if (kind_ == Kind::kGrpcWebText) t = absl::Base64Escape(t);
        ex_->Write(std::move(t));
        return ex_->End({});
      }
      case Kind::kConnectStream: {
        Headers h = WebHeaders(StreamContentType());
        if (retry) h.emplace_back("retry-after", RetryAfterSeconds());
        RespondOnce(200, h);
        ex_->Write(
            Frame(kConnectEndStream, ConnectEndStreamJson(code, message, ConnectDetails(details))));
        return ex_->End({});
      }
      default: return SendConnectError(code, message, details, retry);
    }
  }

  // Native gRPC: the status in trailers, or trailers-only when nothing was answered yet.
  // retry-after-ms is kept for clients written before RetryInfo; new ones read RetryInfo.
  void SendGrpcStatus(int code, const std::string& message, const std::string& details,
                      bool retry) {
    Headers t = {{"grpc-status", absl::StrCat(code)}};
    if (!message.empty()) t.emplace_back("grpc-message", PercentEncode(message));
    if (!details.empty()) t.emplace_back("grpc-status-details-bin", EncodeBinaryHeader(details));
    if (retry) t.emplace_back("retry-after-ms", absl::StrCat(RetryAfterMs()));
    if (!responded_) {
      t.emplace_back("content-type", "application/grpc");
      t.emplace_back("x-request-id", admission_.request_id);
      t.emplace_back(trace::kTraceparent, traceparent_);
      responded_ = true;
      return ex_->Respond(200, t, true);
    }
    ex_->End(t);
  }

  // Connect unary: the error as a JSON body under the HTTP status the protocol maps its code to.
  void SendConnectError(int code, const std::string& message, const std::string& details,
                        bool retry) {
    if (responded_) return ex_->End({});
    // An unknown procedure is a 404 in Connect; other codes map as the protocol says.
    const int http_status =
        admission_.route == nullptr && code == 12 ? 404 : ConnectHttpStatus(code);
    Headers h = WebHeaders("application/json");
    if (retry) h.emplace_back("retry-after", RetryAfterSeconds());
    std::string body = ConnectErrorJson(code, message, ConnectDetails(details));
    h.emplace_back("content-length", absl::StrCat(body.size()));
    responded_ = true;
    ex_->Respond(http_status, h, false);
    ex_->Write(std::move(body));
    ex_->End({});
  }

  std::string RetryAfterSeconds() const {
    return absl::StrCat(absl::ToInt64Seconds(absl::Ceil(admission_.retry_after, absl::Seconds(1))));
  }

  struct SlowCall {
    absl::Mutex mu;
    bool cancelled ABSL_GUARDED_BY(mu) = false;
    bool done ABSL_GUARDED_BY(mu) = false;
    std::vector<grpc::ClientContext*> contexts ABSL_GUARDED_BY(mu);
  };

  bool json_ = false;
  bool gzip_response_ = false;
  FrontDoor* door_;
  LoopContext* ctx_;
  Exchange* ex_;
  Kind kind_;
  std::string origin_;
  CallInfo info_;
  Admission admission_;
  // The gateway's span of the call, and its traceparent, returned to the client.
  trace::TraceContext trace_;
  std::string traceparent_;
  std::string body_;
  std::string upstream_body_;
  bool request_compressed_ = false;
  bool started_ = false;
  bool dispatched_ = false;
  bool responded_ = false;
  bool finished_ = false;
  bool client_gone_ = false;
  bool holds_stream_slot_ = false;
  std::string unary_response_;
  FrameReader frames_;
  std::unique_ptr<UpstreamStream> upstream_;
  std::shared_ptr<SlowCall> slow_;
  metrics::RpcMetrics::Method* backend_ = nullptr;
  absl::Time backend_started_;
  event* deadline_ = nullptr;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

bool OriginAllowed(const FrontDoorOptions& o, absl::string_view origin) {
  for (const std::string& allowed : o.allowed_origins) {
    if (allowed == "*" || allowed == origin) return true;
  }
  return false;
}

// A plain-text answer, readable by a browser page of an allowed origin.
std::unique_ptr<Exchange::Handler> TextReply(Exchange* ex, const std::string& origin, int status,
                                             std::string body, Headers extra = {}) {
  extra.emplace_back("content-type", "text/plain");
  if (!origin.empty()) {
    extra.emplace_back("access-control-allow-origin", origin);
    extra.emplace_back("vary", "Origin");
  }
  return std::make_unique<PlainReply>(ex, status, std::move(extra), std::move(body));
}

// The answer to a CORS preflight (`origin` is empty when the page's origin is not allowed).
std::unique_ptr<Exchange::Handler> PreflightReply(Exchange* ex, const std::string& origin) {
  if (origin.empty()) return TextReply(ex, origin, 403, "origin not allowed\n");
  return std::make_unique<PlainReply>(
      ex, 204,
      Headers{{"access-control-allow-origin", origin},
              {"access-control-allow-methods", "POST, GET, OPTIONS"},
              {"access-control-allow-headers", kAllowedHeaders},
              {"access-control-max-age", "7200"},
              {"vary", "Origin"}},
      "");
}

Kind KindOf(Wire wire) {
  switch (wire) {
    case Wire::kGrpcWeb: return Kind::kGrpcWeb;
    case Wire::kGrpcWebText: return Kind::kGrpcWebText;
    case Wire::kConnectJson:
    case Wire::kConnectProto: return Kind::kConnectUnary;
    case Wire::kConnectStreamJson:
    case Wire::kConnectStreamProto: break;
  }
  return Kind::kConnectStream;
}

// The protocol of a POST or a Connect GET (MakeHandler turns away other GETs), and whether its
// messages are JSON; none when no protocol here fits.
struct CallKind {
  Kind kind;
  bool json = false;
};
std::optional<CallKind> CallKindOf(const Exchange::Head& head) {
  if (head.method == "GET") return CallKind{Kind::kConnectGet};  // MakeHandler checked ?connect=v1
  const std::string* ct = head.Find("content-type");
  const std::string media = ct != nullptr ? MediaType(*ct) : "";
  if (media == "application/grpc" || media == "application/grpc+proto")
    return CallKind{Kind::kGrpc};
  if (auto wire = WireOf(media)) return CallKind{KindOf(*wire), IsJson(*wire)};
  return std::nullopt;
}

// Connect answers are compressed when the client accepts gzip (streams say so in their own
// header).
bool WantsGzip(const Exchange::Head& head, Kind kind) {
  if (!IsConnect(kind)) return false;
  const std::string* accept =
      head.Find(kind == Kind::kConnectStream ? "connect-accept-encoding" : "accept-encoding");
  return accept != nullptr && AcceptsGzip(*accept);
}

// The gateway's own gRPC services (health, reflection).
bool IsInternal(absl::string_view path) {
  return absl::StartsWith(path, "/grpc.health.v1.Health/") ||
         absl::StartsWith(path, "/grpc.reflection.");
}

}  // namespace

std::unique_ptr<Exchange::Handler> MakeHandler(FrontDoor* door, LoopContext* ctx, Exchange* ex) {
  const Exchange::Head& head = ex->head();
  const std::string* origin_header = head.Find("origin");
  const std::string origin =
      origin_header != nullptr && OriginAllowed(door->options(), *origin_header) ? *origin_header
                                                                                 : "";
  if (head.method == "OPTIONS") return PreflightReply(ex, origin);
  if (head.method == "GET" && head.path == "/healthz") return TextReply(ex, origin, 200, "ok\n");
  // A GET is a Connect call only with ?connect=v1; anything else but POST is not a call.
  const bool connect_get =
      head.method == "GET" && QueryParam(head.query, "connect").value_or("") == "v1";
  if (head.method != "POST" && !connect_get) {
    return TextReply(
        ex, origin, 405,
        "use POST (gRPC, gRPC-Web or Connect), or GET for Connect calls without side effects\n",
        {{"allow", "POST, GET, OPTIONS"}});
  }
  const std::optional<CallKind> call = CallKindOf(head);
  if (!call) {
    const grpc::Status refused = rpc::ToGrpc(absl::InvalidArgumentError(
        "content-type: expected application/grpc, application/json, application/proto, "
        "application/connect+json, application/connect+proto or application/grpc-web[-text]"));
    return std::make_unique<PlainReply>(
        ex, 415, Headers{{"content-type", "application/json"}},
        ConnectErrorJson(3, refused.error_message(), ConnectDetails(refused.error_details())));
  }
  const Kind kind = call->kind;
  if (kind == Kind::kGrpc && !head.http2) return TextReply(ex, origin, 505, "gRPC needs HTTP/2\n");
  if (kind == Kind::kGrpc && IsInternal(head.path)) {
    return std::make_unique<InternalCall>(door, ctx, ex);
  }
  return std::make_unique<GatewayCall>(door, ctx, ex, kind, call->json, WantsGzip(head, kind),
                                       IsWeb(kind) ? origin : "");
}

}  // namespace crm::gateway
