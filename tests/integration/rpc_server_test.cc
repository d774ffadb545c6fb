// libs/rpc's server: graceful shutdown drains in-flight calls within the grace period, health flips
// to NOT_SERVING, a malformed request is answered INVALID_ARGUMENT, and a port in use is refused.
#include <thread>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "catch2/catch.hpp"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "libs/rpc/executor.h"
#include "libs/rpc/server.h"
#include "libs/rpc/unary.h"
#include "tests/load/echo.grpc.pb.h"
#include "tests/support/grpc_probe.h"
#include "tests/support/require_ok.h"

namespace crm::rpc {
namespace {

// Echo whose handler waits until the test releases it, to hold a call in flight.
class HeldEcho final : public bench::Echo::CallbackService {
 public:
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* ctx, const bench::EchoMessage* req,
                                 bench::EchoMessage* resp) override {
    return FinishOn(executor_, ctx, [this, req, resp] {
      entered.Notify();
      release.WaitForNotificationWithTimeout(absl::Seconds(30));
      resp->set_payload(req->payload());
      return absl::OkStatus();
    });
  }
  absl::Notification entered;
  absl::Notification release;

 private:
  Executor executor_{"held", 2};
};

struct Running {
  explicit Running(absl::Duration grace) {
    ServerOptions o;
    o.drain_grace = grace;
    server = std::make_unique<Server>(o);
    server->AddService(&service, "crm.bench.Echo");
    server->OnShutdown([this] { draining.Notify(); });
    REQUIRE_OK(server->Start());
    server->SetServing(true);
    channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server->port()),
                                  grpc::InsecureChannelCredentials());
  }
  HeldEcho service;
  absl::Notification draining;
  std::unique_ptr<Server> server;
  std::shared_ptr<grpc::Channel> channel;
};

TEST_CASE("shutdown lets an in-flight call finish", "[rpc][shutdown]") {
  Running r(absl::Seconds(10));
  auto stub = bench::Echo::NewStub(r.channel);
  grpc::Status in_flight_status;
  std::thread caller([&] {
    grpc::ClientContext ctx;
    bench::EchoMessage req, resp;
    req.set_payload("hello");
    in_flight_status = stub->Echo(&ctx, req, &resp);
  });
  REQUIRE(r.service.entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  REQUIRE(testing::HealthCheck(r.channel, "crm.bench.Echo").value() == testing::kServing);

  std::thread stopper([&] { r.server->Shutdown(); });
  // Shutdown has marked the server NOT_SERVING and started draining while the call is still held.
  REQUIRE(r.draining.WaitForNotificationWithTimeout(absl::Seconds(10)));
  r.service.release.Notify();
  caller.join();
  stopper.join();
  CHECK(in_flight_status.ok());

  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  bench::EchoMessage req, resp;
  CHECK_FALSE(stub->Echo(&ctx, req, &resp).ok());
}

TEST_CASE("shutdown cancels a call still running when the grace period ends", "[rpc][shutdown]") {
  Running r(absl::Milliseconds(300));
  auto stub = bench::Echo::NewStub(r.channel);
  grpc::Status status;
  absl::Notification answered;
  std::thread caller([&] {
    grpc::ClientContext ctx;
    bench::EchoMessage req, resp;
    status = stub->Echo(&ctx, req, &resp);
    answered.Notify();
  });
  REQUIRE(r.service.entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  std::thread stopper([&] { r.server->Shutdown(); });
  // The client gets its answer (cancelled) once the grace period is over, while the handler is
  // still held.
  REQUIRE(answered.WaitForNotificationWithTimeout(absl::Seconds(20)));
  CHECK_FALSE(status.ok());
  r.service.release.Notify();
  caller.join();
  stopper.join();
}

TEST_CASE("a request that does not parse is INVALID_ARGUMENT, not UNIMPLEMENTED", "[rpc]") {
  Running r(absl::Seconds(1));
  const std::string garbage = "\x0a\xff\xff\xff";  // field 1, length far beyond the message
  const grpc::Status status =
      testing::RawUnaryCall(r.channel, "/crm.bench.Echo/Echo", garbage).status;
  CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(status.error_message().rfind("request: does not parse as crm.bench.EchoMessage", 0) == 0);
  r.service.release.Notify();
}

TEST_CASE("a port another server listens on is refused, the API port and the health port alike",
          "[rpc]") {
  ServerOptions first_options;
  first_options.health_listen = "127.0.0.1:0";
  Server first(first_options);
  HeldEcho service;
  first.AddService(&service, "crm.bench.Echo");
  REQUIRE_OK(first.Start());
  const std::string api_port = "127.0.0.1:" + std::to_string(first.port());
  const std::string health_port = "127.0.0.1:" + std::to_string(first.health_port());
  // Each port of the running server, taken by a second one: its start fails instead of sharing
  // the port (and its callers) with the first.
  for (const auto& [api, health] : std::vector<std::pair<std::string, std::string>>{
           {api_port, ""}, {"127.0.0.1:0", health_port}, {api_port, health_port}}) {
    INFO(api << " / " << health);
    ServerOptions o;
    o.listen_address = api;
    o.health_listen = health;
    Server second(o);
    HeldEcho other;
    second.AddService(&other, "crm.bench.Echo");
    const absl::Status s = second.Start();
    CHECK(absl::IsUnavailable(s));
    CHECK(absl::StrContains(s.message(), api == api_port ? api_port : health_port));
  }
  first.Shutdown();
}

}  // namespace
}  // namespace crm::rpc
