// The gateway's public port spreads over replicas added while clients are connected: behind a
// per-connection balancer (kube-proxy for the gateway's ClusterIP Service), a client's HTTP/2
// connection stays on the replica it first reached, so the front door retires each connection after
// its maximum age (GOAWAY; open streams finish) and the client's next calls open a new connection,
// which the balancer may place on the new replica. The same scenario with the age unlimited runs
// beside it: for the same bounded time every call stays on the first replica, which shows it is the
// setting that moves the traffic. An HTTP/1.1 connection past the age is closed: after the response
// in flight (`connection: close`), or at once when idle.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "catch2/catch.hpp"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "tests/support/grpc_probe.h"
#include "tests/support/http.h"
#include "tests/support/in_process_gateway.h"
#include "tests/support/require_ok.h"
#include "tests/support/tcp_balancer.h"
#include "tests/support/wait.h"

namespace crm {
namespace {

constexpr char kSecret[] = "0123456789abcdef0123456789abcdef-front-door-balance";
// Any route: the calls carry no token, so the gateway answers UNAUTHENTICATED itself. What is
// measured is which replica's front door took the call, not what a service answers.
constexpr char kPath[] = "/crm.v1.CustomerProfileService/GetCustomer";

// One gateway replica with no service behind it, retiring connections after `max_connection_age`.
testing::InProcessGatewayOptions Replica(absl::Duration max_connection_age) {
  testing::InProcessGatewayOptions o;
  o.secret = kSecret;
  o.front_door = [=](gateway::FrontDoorOptions& f) { f.max_connection_age = max_connection_age; };
  return o;
}

// Replica A behind a per-connection balancer, and a frontend's channel to the balancer: plain gRPC,
// one connection, as a mobile app or BFF would hold it.
struct ClientBehindBalancer {
  explicit ClientBehindBalancer(absl::Duration max_connection_age)
      : a(Replica(max_connection_age)) {
    REQUIRE_OK(balancer.Start());
    balancer.AddBackend(a.grpc_port());
    channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", balancer.port()),
                                  grpc::InsecureChannelCredentials());
  }
  testing::InProcessGateway a;
  testing::TcpBalancer balancer;
  std::shared_ptr<grpc::Channel> channel;
};

// Replica A behind the balancer takes a client's calls; replica B is added; the client keeps
// calling for at most `wait`. True when B took a connection (and so calls) before that.
bool SecondReplicaGetsTraffic(absl::Duration max_connection_age, absl::Duration wait) {
  ClientBehindBalancer client(max_connection_age);
  testing::InProcessGateway& a = client.a;
  testing::TcpBalancer& balancer = client.balancer;
  const std::shared_ptr<grpc::Channel>& channel = client.channel;
  int calls = 0;
  const auto call = [&] {
    const testing::RawReply reply = testing::RawUnaryCall(channel, kPath, "", {});
    ++calls;
    // The gateway's own answer: the call reached a front door and completed there.
    CHECK(reply.status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  };
  call();
  REQUIRE(balancer.ConnectionsTo(a.grpc_port()) == 1);
  testing::InProcessGateway b(Replica(max_connection_age));
  balancer.AddBackend(b.grpc_port());
  const bool reached = testing::WaitUntil(
      [&] {
        call();
        return balancer.ConnectionsTo(b.grpc_port()) > 0;
      },
      wait);
  // What a failure needs to be told apart (the first replica never retiring its connections, or
  // the client not reconnecting). The first was seen about one run in ten until busy connections
  // were retired on time (the test below).
  UNSCOPED_INFO("calls: " << calls << ", connections to the first replica: "
                          << balancer.ConnectionsTo(a.grpc_port())
                          << ", to the second: " << balancer.ConnectionsTo(b.grpc_port()));
  return reached;
}

TEST_CASE(
    "a gateway replica added behind a per-connection balancer gets calls from a connected "
    "client once connections have a maximum age, and none without one",
    "[front_door]") {
  CHECK(SecondReplicaGetsTraffic(absl::Seconds(1), absl::Seconds(20)));
  CHECK_FALSE(SecondReplicaGetsTraffic(absl::InfiniteDuration(), absl::Seconds(5)));
}

// A client calling back to back keeps opening streams on its HTTP/2 connection. A stream opened in
// the moment between the connection's maximum age and its timer firing used to put the timer off
// by several seconds, and the next stream again, so a busy connection was never retired (the test
// above failed about one run in ten, with one connection for 400 calls in 20 s).
TEST_CASE("an HTTP/2 connection kept busy with calls is still retired at its maximum age",
          "[front_door]") {
  ClientBehindBalancer client(absl::Milliseconds(100));
  int calls = 0;
  const bool retired = testing::WaitUntil(
      [&] {
        // Back to back for longer than the maximum age, between the checks.
        for (int i = 0; i < 500; ++i) {
          testing::RawUnaryCall(client.channel, kPath, "", {});
          ++calls;
        }
        return client.balancer.ConnectionsTo(client.a.grpc_port()) >= 3;
      },
      absl::Seconds(20));
  INFO("calls: " << calls
                 << ", connections: " << client.balancer.ConnectionsTo(client.a.grpc_port()));
  CHECK(retired);
}

// A browser-like HTTP/1.1 client on one keep-alive connection to 127.0.0.1:`port`.
class KeepAliveClient {
 public:
  explicit KeepAliveClient(int port) : fd_(testing::ConnectLoopback(port)) { REQUIRE(fd_ >= 0); }
  ~KeepAliveClient() { close(fd_); }

  // GET /healthz on the connection; the response head, lower-cased ("" once the server closed).
  std::string GetHealthz() {
    const std::string request = "GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
    if (send(fd_, request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
      return "";
    }
    while (!absl::StrContains(in_, "\r\n\r\n") && Read()) {
    }
    const size_t end = in_.find("\r\n\r\n");
    if (end == std::string::npos) return "";
    std::string head = absl::AsciiStrToLower(in_.substr(0, end));
    in_.erase(0, end + 4);
    // The body ("ok\n"), by its content-length.
    const size_t at = head.find("content-length: ");
    const size_t length = at == std::string::npos ? 0 : std::stoul(head.substr(at + 16));
    while (in_.size() < length && Read()) {
    }
    in_.erase(0, std::min(length, in_.size()));
    return head;
  }

 private:
  bool Read() {
    char buf[4096];
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    in_.append(buf, static_cast<size_t>(n));
    return true;
  }

  int fd_;
  std::string in_;
};

TEST_CASE(
    "an HTTP/1.1 connection past its maximum age is closed (a connection close header, or at once "
    "when idle), while a younger one is kept",
    "[front_door]") {
  testing::InProcessGateway young(Replica(absl::Hours(1)));
  KeepAliveClient kept(young.http_port());
  for (int i = 0; i < 20; ++i) {
    const std::string head = kept.GetHealthz();
    REQUIRE(absl::StartsWith(head, "http/1.1 200"));
    CHECK_FALSE(absl::StrContains(head, "connection: close"));
  }

  // Retired between two requests, the connection is closed; during one, its response says so.
  testing::InProcessGateway old(Replica(absl::Milliseconds(200)));
  KeepAliveClient retired(old.http_port());
  CHECK(testing::WaitUntil(
      [&] {
        const std::string head = retired.GetHealthz();
        return head.empty() || absl::StrContains(head, "connection: close");
      },
      absl::Seconds(20)));
}

}  // namespace
}  // namespace crm
