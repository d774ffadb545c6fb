#include "services/gateway/http_server.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <deque>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "google/protobuf/util/json_util.h"
#include "libs/rpc/status.h"
#include "services/gateway/web_protocol.h"

namespace crm::gateway {
namespace {

std::string Header(mg_connection* conn, const char* name) {
  const char* v = mg_get_header(conn, name);
  return v == nullptr ? "" : v;
}

constexpr char kAllowedHeaders[] =
    "authorization, content-type, connect-protocol-version, connect-timeout-ms, grpc-timeout, x-grpc-web, "
    "x-user-agent, x-request-id";
constexpr char kExposedHeaders[] = "grpc-status, grpc-message, x-request-id, retry-after";

// One HTTP exchange: response headers are collected, then sent once with the first body bytes.
class Exchange {
 public:
  Exchange(mg_connection* conn, std::string allow_origin) : conn_(conn), allow_origin_(std::move(allow_origin)) {}

  void Start(int status, absl::string_view content_type, bool chunked, long long length,
             const std::vector<std::pair<std::string, std::string>>& extra = {}) {
    mg_response_header_start(conn_, status);
    mg_response_header_add(conn_, "Content-Type", content_type.data(), static_cast<int>(content_type.size()));
    if (chunked) {
      mg_response_header_add(conn_, "Transfer-Encoding", "chunked", -1);
    } else {
      const std::string n = absl::StrCat(length);
      mg_response_header_add(conn_, "Content-Length", n.c_str(), -1);
    }
    if (!allow_origin_.empty()) {
      mg_response_header_add(conn_, "Access-Control-Allow-Origin", allow_origin_.c_str(), -1);
      mg_response_header_add(conn_, "Access-Control-Expose-Headers", kExposedHeaders, -1);
      mg_response_header_add(conn_, "Vary", "Origin", -1);
    }
    for (const auto& [k, v] : extra) mg_response_header_add(conn_, k.c_str(), v.c_str(), static_cast<int>(v.size()));
    mg_response_header_send(conn_);
    status_ = status;
  }
  void Whole(int status, absl::string_view content_type, absl::string_view body,
             const std::vector<std::pair<std::string, std::string>>& extra = {}) {
    Start(status, content_type, false, static_cast<long long>(body.size()), extra);
    mg_write(conn_, body.data(), body.size());
  }
  bool Chunk(absl::string_view bytes) {
    return mg_send_chunk(conn_, bytes.data(), static_cast<unsigned>(bytes.size())) > 0;
  }
  void EndChunks() { mg_send_chunk(conn_, "", 0); }
  int status() const { return status_; }

 private:
  mg_connection* conn_;
  std::string allow_origin_;
  int status_ = 0;
};

// A backend stream read from a civetweb thread: messages queue up one at a time (flow control: the
// next is requested only after the previous was written to the client).
class StreamPump {
 public:
  void Push(std::string message) {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(message));
  }
  void Done(grpc::Status status) {
    absl::MutexLock lock(&mu_);
    status_ = std::move(status);
    done_ = true;
  }
  enum class Next { kMessage, kEnded, kWaiting };
  // A message (into `out`), the end of the stream (then status()), or nothing yet within `wait`.
  Next Take(std::string* out, absl::Duration wait) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &StreamPump::Ready), wait);
    if (!queue_.empty()) {
      *out = std::move(queue_.front());
      queue_.pop_front();
      return Next::kMessage;
    }
    return done_ ? Next::kEnded : Next::kWaiting;
  }
  grpc::Status status() {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 private:
  bool Ready() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || done_; }
  absl::Mutex mu_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

// civetweb does not expose a connection's socket, and a stream that is only waiting for the next update
// never writes, so a browser that went away would hold its worker thread until the stream's deadline.
// The socket is the one connected to the client's address and port; found once per stream, it is then
// polled for the client's hang-up.
int ClientSocket(const mg_request_info* ri, int local_port) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int found = -1;
  while (dirent* e = readdir(dir)) {
    int fd = 0;
    if (!absl::SimpleAtoi(e->d_name, &fd)) continue;
    sockaddr_storage peer{}, local{};
    socklen_t peer_len = sizeof(peer), local_len = sizeof(local);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) continue;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0) continue;
    char host[INET6_ADDRSTRLEN] = {0};
    int peer_port = 0, own_port = 0;
    if (peer.ss_family == AF_INET) {
      const auto* p = reinterpret_cast<const sockaddr_in*>(&peer);
      inet_ntop(AF_INET, &p->sin_addr, host, sizeof(host));
      peer_port = ntohs(p->sin_port);
      own_port = ntohs(reinterpret_cast<const sockaddr_in*>(&local)->sin_port);
    } else if (peer.ss_family == AF_INET6) {
      const auto* p = reinterpret_cast<const sockaddr_in6*>(&peer);
      inet_ntop(AF_INET6, &p->sin6_addr, host, sizeof(host));
      peer_port = ntohs(p->sin6_port);
      own_port = ntohs(reinterpret_cast<const sockaddr_in6*>(&local)->sin6_port);
    } else {
      continue;
    }
    if (peer_port == ri->remote_port && own_port == local_port && absl::string_view(host) == ri->remote_addr) {
      found = fd;
      break;
    }
  }
  closedir(dir);
  return found;
}

bool ClientHungUp(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

int CivetHandler(mg_connection* conn, void* self) { return static_cast<HttpServer*>(self)->Handle(conn); }

}  // namespace

HttpServer::HttpServer(Gateway* gateway, HttpOptions options) : gateway_(gateway), options_(std::move(options)) {}

HttpServer::~HttpServer() { Stop(); }

absl::Status HttpServer::Start() {
  const std::string threads = absl::StrCat(options_.threads);
  const char* opts[] = {"listening_ports", options_.listen.c_str(), "num_threads", threads.c_str(),
                        "enable_keep_alive", "yes", "request_timeout_ms", "3600000",
                        // CORS is ours (allowed origins from config): civetweb must not answer preflights itself.
                        "access_control_allow_origin", "", "access_control_allow_methods", "",
                        "access_control_allow_headers", "", nullptr};
  mg_callbacks callbacks{};
  ctx_ = mg_start(&callbacks, this, opts);
  if (ctx_ == nullptr) return absl::UnavailableError(absl::StrCat("http: cannot listen on ", options_.listen));
  mg_set_request_handler(ctx_, "/", &CivetHandler, this);
  mg_server_port ports[4];
  const int n = mg_get_server_ports(ctx_, 4, ports);
  port_ = n > 0 ? ports[0].port : 0;
  return absl::OkStatus();
}

void HttpServer::Stop() {
  if (ctx_ != nullptr) mg_stop(ctx_);
  ctx_ = nullptr;
}

bool HttpServer::OriginAllowed(absl::string_view origin) const {
  for (const std::string& o : options_.allowed_origins) {
    if (o == "*" || o == origin) return true;
  }
  return false;
}

int HttpServer::Handle(mg_connection* conn) {
  const mg_request_info* ri = mg_get_request_info(conn);
  const absl::string_view method = ri->request_method;
  const std::string origin = Header(conn, "Origin");
  const bool origin_ok = !origin.empty() && OriginAllowed(origin);
  Exchange http(conn, origin_ok ? origin : "");

  if (method == "OPTIONS") {  // CORS preflight
    if (!origin_ok) {
      http.Whole(403, "text/plain", "origin not allowed\n");
      return 403;
    }
    mg_response_header_start(conn, 204);
    mg_response_header_add(conn, "Access-Control-Allow-Origin", origin.c_str(), -1);
    mg_response_header_add(conn, "Access-Control-Allow-Methods", "POST, GET, OPTIONS", -1);
    mg_response_header_add(conn, "Access-Control-Allow-Headers", kAllowedHeaders, -1);
    mg_response_header_add(conn, "Access-Control-Max-Age", "7200", -1);
    mg_response_header_add(conn, "Vary", "Origin", -1);
    mg_response_header_add(conn, "Content-Length", "0", -1);
    mg_response_header_send(conn);
    return 204;
  }
  if (method == "GET" && absl::string_view(ri->local_uri) == "/healthz") {
    http.Whole(200, "text/plain", "ok\n");
    return 200;
  }
  if (method != "POST") {
    http.Whole(405, "text/plain", "use POST (gRPC-Web or Connect)\n", {{"Allow", "POST, OPTIONS"}});
    return 405;
  }
  const std::optional<Wire> wire = WireOf(MediaType(Header(conn, "Content-Type")));
  if (!wire) {
    http.Whole(415, "application/json",
               ConnectErrorJson(3, "content-type: expected application/json, application/proto, application/connect+json, "
                                   "application/connect+proto or application/grpc-web[-text]"));
    return 415;
  }

  CallInfo info;
  info.protocol = IsGrpcWeb(*wire) ? (*wire == Wire::kGrpcWebText ? Protocol::kGrpcWebText : Protocol::kGrpcWeb)
                                   : Protocol::kConnect;
  info.path = ri->local_uri;
  info.authorization = Header(conn, "Authorization");
  info.peer_ip = ri->remote_addr;
  info.request_id_header = Header(conn, "X-Request-Id");
  info.client_timeout = IsGrpcWeb(*wire) ? ParseGrpcTimeout(Header(conn, "grpc-timeout"))
                                         : ParseConnectTimeoutMs(Header(conn, "Connect-Timeout-Ms"));
  Admission admission;
  gateway_->CallStarted(info.protocol);
  const std::string response_type = Header(conn, "Content-Type");
  std::vector<std::pair<std::string, std::string>> extra;

  // Answers with an error in the protocol's own shape, before any message was sent.
  auto fail = [&](grpc::Status status) {
    if (extra.empty()) extra.emplace_back("X-Request-Id", admission.request_id);
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED && admission.retry_after > absl::ZeroDuration()) {
      extra.emplace_back("Retry-After", absl::StrCat(absl::ToInt64Seconds(absl::Ceil(admission.retry_after, absl::Seconds(1)))));
    }
    const int code = static_cast<int>(status.error_code());
    if (IsGrpcWeb(*wire)) {
      std::string body = EncodeFrame(kGrpcWebTrailers, GrpcWebTrailers(code, status.error_message()));
      if (*wire == Wire::kGrpcWebText) body = absl::Base64Escape(body);
      http.Whole(200, response_type, body, extra);
    } else if (IsEnveloped(*wire)) {
      http.Whole(200, response_type, EncodeFrame(kConnectEndStream, ConnectEndStreamJson(code, status.error_message())), extra);
    } else {
      // An unknown procedure is a 404 in Connect; other codes map as the protocol says.
      const int http_status = admission.route == nullptr && code == 12 ? 404 : ConnectHttpStatus(code);
      http.Whole(http_status, "application/json", ConnectErrorJson(code, status.error_message()), extra);
    }
    gateway_->CallEnded(info, admission, status);
    return http.status();
  };

  absl::Status admitted = gateway_->Admit(info, admission);
  if (!admitted.ok()) return fail(rpc::ToGrpc(admitted));
  const Route& route = *admission.route;

  // The body, bounded.
  const size_t limit = gateway_->options().max_request_bytes;
  const size_t wire_limit = *wire == Wire::kGrpcWebText ? limit / 3 * 4 + 16 : limit + 5;
  if (ri->content_length > 0 && static_cast<size_t>(ri->content_length) > wire_limit) {
    return fail(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                             absl::StrCat("request: body exceeds the limit of ", limit, " bytes")));
  }
  std::string body;
  char buf[16384];
  for (;;) {
    const int n = mg_read(conn, buf, sizeof(buf));
    if (n <= 0) break;
    body.append(buf, n);
    if (body.size() > wire_limit) {
      return fail(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                               absl::StrCat("request: body exceeds the limit of ", limit, " bytes")));
    }
  }
  auto unwrapped = RequestPayload(*wire, std::move(body), limit);
  if (!unwrapped.ok()) return fail(rpc::ToGrpc(unwrapped.status()));
  std::string payload = std::move(*unwrapped);

  std::unique_ptr<google::protobuf::Message> request(route.request_prototype->New());
  if (IsJson(*wire)) {
    auto parsed = google::protobuf::util::JsonStringToMessage(payload, request.get());
    if (!parsed.ok()) {
      return fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("request: ", parsed.message().as_string())));
    }
    payload = request->SerializeAsString();
  } else if (!request->ParseFromString(payload)) {
    return fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                             absl::StrCat("request: does not parse as ", route.request_prototype->GetDescriptor()->full_name())));
  }
  absl::Status authorized = gateway_->Authorize(*request, admission);
  if (!authorized.ok()) return fail(rpc::ToGrpc(authorized));
  extra.emplace_back("X-Request-Id", admission.request_id);

  // Encodes one response message for this wire.
  auto encode = [&](const grpc::ByteBuffer& message, std::string* out) -> bool {
    std::string bytes = ToBytes(message);
    if (IsJson(*wire)) {
      std::unique_ptr<google::protobuf::Message> m(route.response_prototype->New());
      if (!m->ParseFromString(bytes)) return false;
      std::string json;
      if (!google::protobuf::util::MessageToJsonString(*m, &json).ok()) return false;
      bytes = std::move(json);
    }
    *out = IsEnveloped(*wire) ? EncodeFrame(0, bytes) : std::move(bytes);
    if (*wire == Wire::kGrpcWebText) *out = absl::Base64Escape(*out);
    return true;
  };
  // The end of a successful (or failed-mid-stream) enveloped response.
  auto trailer = [&](const grpc::Status& status) {
    const int code = static_cast<int>(status.error_code());
    std::string t = IsGrpcWeb(*wire) ? EncodeFrame(kGrpcWebTrailers, GrpcWebTrailers(code, status.error_message()))
                                     : EncodeFrame(kConnectEndStream, ConnectEndStreamJson(code, status.error_message()));
    if (*wire == Wire::kGrpcWebText) t = absl::Base64Escape(t);
    return t;
  };

  const grpc::ByteBuffer request_bytes = FromBytes(payload);
  if (!route.server_streaming) {
    absl::Notification finished;
    grpc::Status status;
    grpc::ByteBuffer response;
    gateway_->CallUnary(admission, request_bytes, [] { return std::make_unique<grpc::ClientContext>(); },
                        [&](grpc::Status s, grpc::ByteBuffer r) {
                          status = std::move(s);
                          response = std::move(r);
                          finished.Notify();
                        });
    finished.WaitForNotification();
    std::string out;
    if (status.ok() && !encode(response, &out)) {
      status = grpc::Status(grpc::StatusCode::INTERNAL, "the service's answer could not be encoded");
    }
    if (!status.ok()) return fail(status);
    if (IsEnveloped(*wire)) out += trailer(status);
    http.Whole(200, IsJson(*wire) && !IsEnveloped(*wire) ? "application/json" : response_type, out, extra);
    gateway_->CallEnded(info, admission, status);
    return 200;
  }

  if (!IsEnveloped(*wire)) {
    return fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                             absl::StrCat(route.path, " is a server stream: use application/connect+json, "
                                                      "application/connect+proto or gRPC-Web")));
  }
  auto context = std::make_unique<grpc::ClientContext>();
  gateway_->PrepareContext(admission, *context);
  // Shared with the gRPC thread that delivers the stream's last callback.
  auto pump = std::make_shared<StreamPump>();
  BackendStream* raw = nullptr;
  auto stream = std::make_unique<BackendStream>(
      std::move(context), [pump](const grpc::ByteBuffer& m) { pump->Push(ToBytes(m)); },
      [this, pump, &raw](grpc::Status s) {
        if (gateway_->UntrackStream(raw) && s.error_code() == grpc::StatusCode::CANCELLED) {
          s = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the gateway is shutting down; reconnect");
        }
        pump->Done(std::move(s));
      });
  raw = stream.get();
  if (!gateway_->TrackStream(raw)) {
    return fail(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the gateway is shutting down; reconnect"));
  }
  stream->Start(admission.targets[0], route.path, request_bytes, &gateway_->BackendMetrics(route));
  http.Start(200, response_type, /*chunked=*/true, 0, extra);
  const int socket = ClientSocket(ri, port_);
  bool client_gone = false;
  for (;;) {
    std::string message;
    const StreamPump::Next next = pump->Take(&message, absl::Milliseconds(250));
    if (next == StreamPump::Next::kEnded) break;
    if (next == StreamPump::Next::kWaiting) {
      if (!client_gone && ClientHungUp(socket)) {
        client_gone = true;
        stream->Cancel();
      }
      continue;
    }
    std::string out;
    if (client_gone || !encode(FromBytes(message), &out) || !http.Chunk(out)) {
      client_gone = true;
      stream->Cancel();
    }
    stream->Next();
  }
  grpc::Status status = pump->status();
  if (!client_gone) {
    http.Chunk(trailer(status));
    http.EndChunks();
  }
  gateway_->CallEnded(info, admission, status);
  return 200;
}

}  // namespace crm::gateway
