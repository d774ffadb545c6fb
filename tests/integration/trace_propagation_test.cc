// W3C trace context across gRPC calls, in process: a unary handler runs in its caller's trace (or a
// new one), its executor work too, and its own calls carry it on with spans of their own; nothing
// of a call's trace is left on gRPC's threads afterwards. The gateway continues a client's
// traceparent (gRPC metadata or HTTP header) or starts a trace, relays it to the service, returns
// it to the client, and every section of the 360° view carries it.
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.pb.h"
#include "crm/v1/customer_view.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "libs/auth/jwt.h"
#include "libs/metrics/metrics.h"
#include "libs/rpc/backends.h"
#include "libs/rpc/client.h"
#include "libs/rpc/executor.h"
#include "libs/rpc/server.h"
#include "libs/rpc/unary.h"
#include "libs/trace/trace.h"
#include "services/gateway/front_door.h"
#include "services/gateway/gateway.h"
#include "tests/load/echo.grpc.pb.h"
#include "tests/support/grpc_probe.h"
#include "tests/support/http.h"
#include "tests/support/in_process_gateway.h"
#include "tests/support/require_ok.h"
#include "tests/support/wait.h"

namespace crm {
namespace {

using trace::TraceContext;

constexpr char kTraceId[] = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr char kClientSpan[] = "00f067aa0ba902b7";
const std::string kTraceparent = std::string("00-") + kTraceId + "-" + kClientSpan + "-01";

std::string MetadataValue(const grpc::ServerContextBase& ctx, const std::string& key) {
  auto it = ctx.client_metadata().find(key);
  return it == ctx.client_metadata().end() ? "" : std::string(it->second.data(), it->second.size());
}

// What one call's handler saw.
struct Seen {
  std::string traceparent;  // as it came
  std::optional<TraceContext> in_handler;
  std::optional<TraceContext> in_work;  // in its executor work, when it handed off
};

// Echo whose payload says what the handler does: "inline:<id>" finishes in the handler,
// "executor:<id>" in executor work, "forward:<id>" calls `downstream` (an Echo) from executor work
// with "inline:<id>".
class TracedEcho final : public bench::Echo::CallbackService {
 public:
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* ctx, const bench::EchoMessage* req,
                                 bench::EchoMessage* resp) override {
    const std::string& payload = req->payload();
    const std::string id = payload.substr(payload.find(':') + 1);
    Seen seen;
    seen.traceparent = MetadataValue(*ctx, trace::kTraceparent);
    seen.in_handler = trace::Current();
    if (absl::StartsWith(payload, "inline:")) {
      Record(id, seen);
      return rpc::Finish(ctx, absl::OkStatus());
    }
    return rpc::FinishOn(executor_, ctx, [this, id, seen, payload]() mutable {
      seen.in_work = trace::Current();
      Record(id, seen);
      if (!absl::StartsWith(payload, "forward:")) return absl::OkStatus();
      auto stub = bench::Echo::NewStub(downstream);
      grpc::ClientContext call;
      rpc::SetTimeout(call, absl::Seconds(10));
      bench::EchoMessage request, response;
      request.set_payload("inline:" + id + "/downstream");
      const grpc::Status s = stub->Echo(&call, request, &response);
      return s.ok() ? absl::OkStatus() : absl::UnavailableError(s.error_message());
    });
  }

  std::optional<Seen> Get(const std::string& id) {
    absl::MutexLock lock(&mu_);
    auto it = seen_.find(id);
    if (it == seen_.end()) return std::nullopt;
    return it->second;
  }

  std::shared_ptr<grpc::Channel> downstream;

 private:
  void Record(const std::string& id, const Seen& seen) {
    absl::MutexLock lock(&mu_);
    seen_[id] = seen;
  }
  absl::Mutex mu_;
  std::map<std::string, Seen> seen_ ABSL_GUARDED_BY(mu_);
  rpc::Executor executor_{"traced-echo", 2};
};

// Two echo servers, the first forwarding to the second, and a channel to the first as every
// process makes them.
struct Echoes {
  Echoes() {
    for (auto* e : {&first, &second}) {
      auto server = std::make_unique<rpc::Server>(rpc::ServerOptions{});
      server->AddService(&e->service, "crm.bench.Echo");
      REQUIRE_OK(server->Start());
      e->address = absl::StrCat("127.0.0.1:", server->port());
      e->server = std::move(server);
    }
    first.service.downstream = rpc::MakeChannel(second.address, "", nullptr);
    channel = rpc::MakeChannel(first.address, "", nullptr);
  }
  struct One {
    TracedEcho service;
    std::unique_ptr<rpc::Server> server;
    std::string address;
  };
  One first, second;
  std::shared_ptr<grpc::Channel> channel;

  grpc::Status Call(const std::string& payload, const std::string& traceparent = "") {
    auto stub = bench::Echo::NewStub(channel);
    grpc::ClientContext ctx;
    rpc::SetTimeout(ctx, absl::Seconds(20));
    if (!traceparent.empty()) ctx.AddMetadata(trace::kTraceparent, traceparent);
    bench::EchoMessage request, response;
    request.set_payload(payload);
    return stub->Echo(&ctx, request, &response);
  }
};

TEST_CASE(
    "trace: a unary handler and its executor work run in the caller's trace, in a span of "
    "their own") {
  Echoes e;
  for (const char* how : {"inline", "executor"}) {
    INFO(how);
    REQUIRE(e.Call(absl::StrCat(how, ":1"), kTraceparent).ok());
    const std::optional<Seen> seen = e.first.service.Get("1");
    REQUIRE(seen.has_value());
    CHECK(seen->traceparent == kTraceparent);
    REQUIRE(seen->in_handler.has_value());
    CHECK(seen->in_handler->TraceIdHex() == kTraceId);
    CHECK(seen->in_handler->SpanIdHex() != kClientSpan);
    if (std::string(how) == "executor") {
      REQUIRE(seen->in_work.has_value());
      CHECK(*seen->in_work == *seen->in_handler);
    }
  }
}

TEST_CASE("trace: a call without a traceparent, or with a malformed one, starts a new trace") {
  Echoes e;
  REQUIRE(e.Call("executor:none").ok());
  REQUIRE(e.Call("executor:bad", "00-" + std::string(kTraceId) + "-0000000000000000-01").ok());
  std::set<std::string> traces;
  for (const char* id : {"none", "bad"}) {
    const std::optional<Seen> seen = e.first.service.Get(id);
    REQUIRE(seen.has_value());
    REQUIRE(seen->in_handler.has_value());
    REQUIRE(seen->in_work.has_value());
    CHECK(*seen->in_work == *seen->in_handler);
    CHECK(seen->in_handler->TraceIdHex() != kTraceId);
    CHECK(seen->in_handler->flags == 1);
    traces.insert(seen->in_handler->TraceIdHex());
  }
  CHECK(traces.size() == 2);
}

TEST_CASE("trace: a service's own calls carry its trace on, each with a span of its own") {
  Echoes e;
  REQUIRE(e.Call("forward:f", kTraceparent).ok());
  const std::optional<Seen> upstream = e.first.service.Get("f");
  const std::optional<Seen> downstream = e.second.service.Get("f/downstream");
  REQUIRE(upstream.has_value());
  REQUIRE(downstream.has_value());
  const std::optional<TraceContext> sent = trace::Parse(downstream->traceparent);
  REQUIRE(sent.has_value());
  CHECK(sent->TraceIdHex() == kTraceId);
  // The call's span is new: neither the client's nor the span the first service worked in.
  CHECK(sent->SpanIdHex() != kClientSpan);
  CHECK(sent->SpanIdHex() != upstream->in_handler->SpanIdHex());
  REQUIRE(downstream->in_handler.has_value());
  CHECK(downstream->in_handler->TraceIdHex() == kTraceId);
}

TEST_CASE(
    "trace: a channel sends the trace current where the call is made, none outside one, "
    "and leaves a traceparent the call sets alone") {
  Echoes e;
  const TraceContext mine = trace::NewTrace();
  {
    trace::Scope scope(mine);
    REQUIRE(e.Call("inline:scoped").ok());
    REQUIRE(e.Call("inline:explicit", kTraceparent).ok());
  }
  REQUIRE(e.Call("inline:outside").ok());
  const std::optional<TraceContext> scoped =
      trace::Parse(e.first.service.Get("scoped")->traceparent);
  REQUIRE(scoped.has_value());
  CHECK(scoped->TraceIdHex() == mine.TraceIdHex());
  CHECK(scoped->SpanIdHex() != mine.SpanIdHex());
  CHECK(e.first.service.Get("explicit")->traceparent == kTraceparent);
  CHECK(e.first.service.Get("outside")->traceparent.empty());
}

TEST_CASE("trace: no call's trace is left current on gRPC's or the executor's threads") {
  Echoes e;
  // Handlers, executor work and these completions share gRPC's callback threads in this process: a
  // trace left behind by a handler would show in a completion that runs on its thread later.
  auto stub = bench::Echo::NewStub(e.channel);
  constexpr int kCalls = 400;
  struct Pending {
    grpc::ClientContext ctx;
    bench::EchoMessage request, response;
  };
  std::vector<std::unique_ptr<Pending>> calls;
  std::atomic<int> done{0}, failed{0}, traced_completions{0};
  for (int i = 0; i < kCalls; ++i) {
    auto p = std::make_unique<Pending>();
    rpc::SetTimeout(p->ctx, absl::Seconds(30));
    p->ctx.AddMetadata(trace::kTraceparent, trace::Format(trace::NewTrace()));
    p->request.set_payload(absl::StrCat(i % 3 == 0   ? "inline:"
                                        : i % 3 == 1 ? "executor:"
                                                     : "forward:",
                                        "stale", i));
    stub->async()->Echo(&p->ctx, &p->request, &p->response, [&](grpc::Status s) {
      if (trace::Current().has_value()) traced_completions++;
      if (!s.ok()) failed++;
      done++;
    });
    calls.push_back(std::move(p));
  }
  REQUIRE(testing::WaitUntil([&] { return done.load() == kCalls; }, absl::Seconds(60)));
  CHECK(failed.load() == 0);
  CHECK(traced_completions.load() == 0);
  // Every handler saw its own trace, never another call's.
  for (int i = 0; i < kCalls; ++i) {
    const std::optional<Seen> seen = e.first.service.Get(absl::StrCat("stale", i));
    REQUIRE(seen.has_value());
    REQUIRE(seen->in_handler.has_value());
    CHECK(seen->in_handler->TraceIdHex() == trace::Parse(seen->traceparent)->TraceIdHex());
  }
  // A call without a traceparent on the same threads starts afresh.
  REQUIRE(e.Call("inline:after").ok());
  CHECK(e.first.service.Get("after")->in_handler->TraceIdHex() != kTraceId);
}

// --- the gateway ---

constexpr char kSecret[] = "0123456789abcdef0123456789abcdef-trace-secret";

std::string Token(absl::string_view role, absl::string_view subject) {
  auto token =
      auth::Sign("HS256", kSecret,
                 absl::StrCat("{\"sub\":\"", subject, "\",\"role\":\"", role,
                              "\",\"exp\":", absl::ToUnixSeconds(absl::Now()) + 3600, "}"));
  REQUIRE(token.ok());
  return *token;
}

// Stands in for every service: answers each unary call with an empty message and notes the
// traceparent each method's calls came with.
class RecordingBackend : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    class Reactor : public grpc::ServerGenericBidiReactor {
     public:
      Reactor(RecordingBackend* backend, grpc::GenericCallbackServerContext* ctx)
          : backend_(backend), ctx_(ctx) {
        StartRead(&request_);
      }
      void OnReadDone(bool ok) override {
        if (!ok) return Finish(grpc::Status::OK);
        {
          absl::MutexLock lock(&backend_->mu_);
          backend_->seen_[ctx_->method()].push_back(MetadataValue(*ctx_, trace::kTraceparent));
        }
        response_ = gateway::FromBytes("");
        StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
      }
      void OnDone() override { delete this; }

     private:
      RecordingBackend* backend_;
      grpc::GenericCallbackServerContext* ctx_;
      grpc::ByteBuffer request_, response_;
    };
    return new Reactor(this, ctx);
  }
  std::vector<std::string> Traceparents(const std::string& method) {
    absl::MutexLock lock(&mu_);
    return seen_[method];
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::vector<std::string>> seen_ ABSL_GUARDED_BY(mu_);
};

// The gateway (the Gateway and FrontDoor the binary wires) in front of the recording backend.
struct GatewayWorld {
  GatewayWorld() {
    backend_server = std::make_unique<rpc::Server>(rpc::ServerOptions{});
    backend_server->SetGenericService(&backend);
    REQUIRE_OK(backend_server->Start());
    testing::InProcessGatewayOptions o;
    o.secret = kSecret;
    o.backend_address = absl::StrCat("127.0.0.1:", backend_server->port());
    o.front_door = [](gateway::FrontDoorOptions& f) {
      f.allowed_origins = {"https://shop.example"};
    };
    front = std::make_unique<testing::InProcessGateway>(std::move(o));
    channel = front->NewChannel();
  }
  ~GatewayWorld() {
    front.reset();
    backend_server->Shutdown();
  }

  RecordingBackend backend;
  std::unique_ptr<rpc::Server> backend_server;
  std::unique_ptr<testing::InProcessGateway> front;
  std::shared_ptr<grpc::Channel> channel;
};

// One HTTP/1.1 request to the front door's HTTP port; the whole answer (head and body).
std::string HttpExchange(int port, const std::string& request) {
  const int fd = testing::ConnectLoopback(port);
  REQUIRE(fd >= 0);
  REQUIRE(send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size()));
  std::string answer;
  char buffer[4096];
  for (ssize_t n; (n = recv(fd, buffer, sizeof(buffer), 0)) > 0;) answer.append(buffer, n);
  close(fd);
  return answer;
}

// The value of `name` (lower case) in an HTTP answer's head.
std::string HeaderOf(const std::string& answer, const std::string& name) {
  const std::string head = absl::AsciiStrToLower(answer.substr(0, answer.find("\r\n\r\n")));
  const size_t at = head.find("\r\n" + name + ":");
  if (at == std::string::npos) return "";
  const size_t start = head.find_first_not_of(' ', at + name.size() + 3);
  return answer.substr(start, head.find("\r\n", start) - start);
}

const char kGetCustomer[] = "/crm.v1.CustomerProfileService/GetCustomer";

std::string GetCustomerBytes() {
  v1::GetCustomerRequest r;
  r.set_customer_id("c1");
  return r.SerializeAsString();
}

TEST_CASE(
    "gateway trace: a client's traceparent reaches the service in a span of the gateway's, "
    "and comes back") {
  GatewayWorld w;
  const testing::RawReply reply = testing::RawUnaryCall(
      w.channel, kGetCustomer, GetCustomerBytes(),
      {{"authorization", "Bearer " + Token("agent", "a1")}, {trace::kTraceparent, kTraceparent}});
  REQUIRE(reply.status.ok());
  const std::vector<std::string> seen = w.backend.Traceparents(kGetCustomer);
  REQUIRE(seen.size() == 1);
  const std::optional<TraceContext> relayed = trace::Parse(seen[0]);
  REQUIRE(relayed.has_value());
  CHECK(relayed->TraceIdHex() == kTraceId);
  CHECK(relayed->SpanIdHex() != kClientSpan);
  auto echoed = reply.headers.find(trace::kTraceparent);
  REQUIRE(echoed != reply.headers.end());
  const std::optional<TraceContext> returned = trace::Parse(echoed->second);
  REQUIRE(returned.has_value());
  CHECK(returned->TraceIdHex() == kTraceId);
  CHECK(returned->SpanIdHex() != kClientSpan);
}

TEST_CASE(
    "gateway trace: without a traceparent, or with a malformed one, the gateway starts a "
    "trace and still answers") {
  GatewayWorld w;
  for (const std::string& sent :
       {std::string(), std::string("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
        std::string("not a traceparent")}) {
    INFO("traceparent \"" << sent << "\"");
    std::vector<std::pair<std::string, std::string>> metadata = {
        {"authorization", "Bearer " + Token("agent", "a1")}};
    if (!sent.empty()) metadata.emplace_back(trace::kTraceparent, sent);
    const size_t before = w.backend.Traceparents(kGetCustomer).size();
    const testing::RawReply reply =
        testing::RawUnaryCall(w.channel, kGetCustomer, GetCustomerBytes(), metadata);
    REQUIRE(reply.status.ok());
    const std::vector<std::string> seen = w.backend.Traceparents(kGetCustomer);
    REQUIRE(seen.size() == before + 1);
    const std::optional<TraceContext> relayed = trace::Parse(seen.back());
    REQUIRE(relayed.has_value());
    CHECK(relayed->TraceIdHex() != kTraceId);
    auto echoed = reply.headers.find(trace::kTraceparent);
    REQUIRE(echoed != reply.headers.end());
    REQUIRE(trace::Parse(echoed->second).has_value());
    CHECK(trace::Parse(echoed->second)->TraceIdHex() == relayed->TraceIdHex());
  }
}

TEST_CASE(
    "gateway trace: Connect over HTTP/1.1 takes traceparent as a header, returns it, and "
    "browsers may send and read it") {
  GatewayWorld w;
  const std::string body = "{\"customerId\":\"c1\"}";
  const std::string answer =
      HttpExchange(w.front->http_port(),
                   absl::StrCat("POST ", kGetCustomer, " HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                                "Content-Type: application/json\r\nConnection: close\r\n",
                                "Origin: https://shop.example\r\n", "Authorization: Bearer ",
                                Token("agent", "a1"), "\r\n", "traceparent: ", kTraceparent, "\r\n",
                                "Content-Length: ", body.size(), "\r\n\r\n", body));
  INFO(answer);
  REQUIRE(absl::StartsWith(answer, "HTTP/1.1 200"));
  const std::optional<TraceContext> returned = trace::Parse(HeaderOf(answer, "traceparent"));
  REQUIRE(returned.has_value());
  CHECK(returned->TraceIdHex() == kTraceId);
  CHECK(absl::StrContains(HeaderOf(answer, "access-control-expose-headers"), "traceparent"));
  const std::vector<std::string> seen = w.backend.Traceparents(kGetCustomer);
  REQUIRE(seen.size() == 1);
  CHECK(trace::Parse(seen[0])->TraceIdHex() == kTraceId);

  const std::string preflight = HttpExchange(
      w.front->http_port(),
      absl::StrCat("OPTIONS ", kGetCustomer, " HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                   "Origin: https://shop.example\r\nAccess-Control-Request-Method: POST\r\n",
                   "Access-Control-Request-Headers: traceparent, tracestate\r\n",
                   "Connection: close\r\n\r\n"));
  INFO(preflight);
  const std::string allowed = HeaderOf(preflight, "access-control-allow-headers");
  CHECK(absl::StrContains(allowed, "traceparent"));
  CHECK(absl::StrContains(allowed, "tracestate"));
}

TEST_CASE(
    "gateway trace: every section call of the 360-degree view carries the client's trace, "
    "each in a span of its own") {
  GatewayWorld w;
  v1::GetCustomerViewRequest request;
  request.set_customer_id("c1");
  const testing::RawReply reply = testing::RawUnaryCall(
      w.channel, "/crm.v1.CustomerViewService/GetCustomerView", request.SerializeAsString(),
      {{"authorization", "Bearer " + Token("agent", "a1")}, {trace::kTraceparent, kTraceparent}});
  REQUIRE(reply.status.ok());
  std::set<std::string> spans;
  for (const char* section :
       {"/crm.v1.CustomerProfileService/GetCustomerViewSections",
        "/crm.v1.OrderTrackingService/GetPurchaseSummary", "/crm.v1.LoyaltyService/GetMembership",
        "/crm.v1.ComplaintTicketService/ListTickets", "/crm.v1.RecommendationService/Recommend"}) {
    INFO(section);
    const std::vector<std::string> seen = w.backend.Traceparents(section);
    REQUIRE(seen.size() == 1);
    const std::optional<TraceContext> sent = trace::Parse(seen[0]);
    REQUIRE(sent.has_value());
    CHECK(sent->TraceIdHex() == kTraceId);
    spans.insert(sent->SpanIdHex());
  }
  CHECK(spans.size() == 5);
  CHECK(spans.count(kClientSpan) == 0);
}

}  // namespace
}  // namespace crm
