// Replicas added while clients are connected get calls: a server's maximum connection age makes
// clients reconnect, so a per-connection balancer (kube-proxy in front of a ClusterIP Service)
// places the new connection on the new replica, and a client that resolves a name (a headless
// Service) resolves it again and round-robins over every address it gets. Each case runs the same
// scenario with the age unlimited beside it: then, for the same bounded time, every call stays on
// the first replica, which shows it is the setting that moves the traffic.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "catch2/catch.hpp"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "libs/metrics/metrics.h"
#include "libs/rpc/client.h"
#include "libs/rpc/server.h"
#include "tests/load/echo.grpc.pb.h"
#include "tests/support/require_ok.h"
#include "tests/support/tcp_balancer.h"
#include "tests/support/wait.h"

namespace crm::rpc {
namespace {

// Answers Echo with the name of the replica that served the call.
class ReplicaEcho final : public bench::Echo::CallbackService {
 public:
  explicit ReplicaEcho(std::string name) : name_(std::move(name)) {}
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* ctx, const bench::EchoMessage*,
                                 bench::EchoMessage* response) override {
    response->set_payload(name_);
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  std::string name_;
};

// One replica of a service: the project's server, with the given maximum connection age.
class Replica {
 public:
  Replica(const std::string& name, const std::string& listen, absl::Duration max_connection_age)
      : echo_(name) {
    ServerOptions o;
    o.listen_address = listen;
    o.max_connection_age = max_connection_age;
    o.max_connection_age_grace = absl::Seconds(1);
    o.drain_grace = absl::Milliseconds(100);
    server_ = std::make_unique<Server>(o);
    server_->AddService(&echo_, "crm.bench.Echo");
  }
  absl::Status Start() {
    absl::Status started = server_->Start();
    if (started.ok()) server_->SetServing(true);
    return started;
  }
  int port() const { return server_->port(); }

 private:
  ReplicaEcho echo_;
  std::unique_ptr<Server> server_;
};

// A DNS server on 127.0.0.1 (UDP) that knows one name and answers with the addresses it has at the
// moment: A records for IPv4 ones, AAAA for IPv6. Stands in for the cluster DNS of a headless
// Service, whose answer grows when a pod becomes ready. Any other name: NXDOMAIN.
class NameServer {
 public:
  explicit NameServer(std::string name) : name_(absl::AsciiStrToLower(name)) {}
  ~NameServer() {
    if (socket_ < 0) return;
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t written = write(wake_, &one, sizeof(one));
    if (serving_.joinable()) serving_.join();
    close(socket_);
    close(wake_);
  }
  NameServer(const NameServer&) = delete;
  NameServer& operator=(const NameServer&) = delete;

  absl::Status Start() {
    socket_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (socket_ < 0 || wake_ < 0 ||
        bind(socket_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        getsockname(socket_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      return absl::UnavailableError(absl::StrCat("name server: ", std::strerror(errno)));
    }
    port_ = ntohs(address.sin_port);
    serving_ = std::thread([this] { Serve(); });
    return absl::OkStatus();
  }
  int port() const { return port_; }
  void AddAddress(const std::string& ip) {
    absl::MutexLock lock(&mu_);
    addresses_.push_back(ip);
  }

 private:
  void Serve() {
    for (;;) {
      pollfd fds[2] = {{socket_, POLLIN, 0}, {wake_, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0 && errno != EINTR) return;
      if (fds[1].revents != 0) return;
      if (fds[0].revents == 0) continue;
      uint8_t query[512];
      sockaddr_storage from{};
      socklen_t from_length = sizeof(from);
      const ssize_t n = recvfrom(socket_, query, sizeof(query), 0,
                                 reinterpret_cast<sockaddr*>(&from), &from_length);
      if (n <= 0) continue;
      const std::string answer = Answer(query, static_cast<size_t>(n));
      if (!answer.empty()) {
        sendto(socket_, answer.data(), answer.size(), 0, reinterpret_cast<sockaddr*>(&from),
               from_length);
      }
    }
  }

  // The response to one query (RFC 1035, section 4), "" for anything that is not one question.
  std::string Answer(const uint8_t* query, size_t size) {
    if (size < 12 || query[4] != 0 || query[5] != 1) return "";
    std::string name;
    size_t at = 12;
    while (at < size && query[at] != 0) {
      const size_t label = query[at];
      if (label > 63 || at + 1 + label >= size) return "";
      if (!name.empty()) name += '.';
      name.append(reinterpret_cast<const char*>(query) + at + 1, label);
      at += 1 + label;
    }
    if (at + 5 > size) return "";
    const size_t question_end = at + 5;
    const int type = query[at + 1] << 8 | query[at + 2];
    const bool known = absl::AsciiStrToLower(name) == name_;
    std::vector<std::string> records;
    if (known) {
      absl::MutexLock lock(&mu_);
      for (const std::string& ip : addresses_) {
        in_addr v4;
        in6_addr v6;
        if (type == 1 && inet_pton(AF_INET, ip.c_str(), &v4) == 1) {
          records.emplace_back(reinterpret_cast<const char*>(&v4), sizeof(v4));
        } else if (type == 28 && inet_pton(AF_INET6, ip.c_str(), &v6) == 1) {
          records.emplace_back(reinterpret_cast<const char*>(&v6), sizeof(v6));
        }
      }
    }
    std::string out(reinterpret_cast<const char*>(query), 2);  // the query's id
    out += static_cast<char>(0x80 | (query[2] & 0x79));        // a response; opcode and RD kept
    out += static_cast<char>(known ? 0x80 : 0x83);             // RA; NOERROR or NXDOMAIN
    out += std::string("\0\1", 2);                             // one question
    out += static_cast<char>(records.size() >> 8);
    out += static_cast<char>(records.size() & 0xff);
    out += std::string(4, '\0');  // no authority or additional records
    out.append(reinterpret_cast<const char*>(query) + 12, question_end - 12);
    for (const std::string& data : records) {
      // The name by pointer to the question's, the type asked, class IN, TTL 0, the address.
      out += std::string("\xc0\x0c", 2);
      out += static_cast<char>(type >> 8);
      out += static_cast<char>(type & 0xff);
      out += std::string("\0\1\0\0\0\0\0", 7);
      out += static_cast<char>(data.size());
      out += data;
    }
    return out;
  }

  std::string name_;
  int socket_ = -1;
  int wake_ = -1;
  int port_ = 0;
  std::thread serving_;
  absl::Mutex mu_;
  std::vector<std::string> addresses_ ABSL_GUARDED_BY(mu_);
};

// Calls through one channel made by the project's client code and counts who answered.
class Caller {
 public:
  explicit Caller(const std::string& target)
      : stub_(bench::Echo::NewStub(MakeChannel(target, "", nullptr))) {}
  // The replica that answered one call, "" when it failed.
  std::string Call() {
    grpc::ClientContext ctx;
    SetTimeout(ctx, absl::Seconds(5));
    bench::EchoMessage request, response;
    const grpc::Status status = stub_->Echo(&ctx, request, &response);
    if (!status.ok()) {
      ++failed_;
      last_error_ = status.error_message();
      return "";
    }
    ++answered_[response.payload()];
    return response.payload();
  }
  // Calls until `replica` answers one or `limit` passes; true if it did.
  bool ReachesWithin(const std::string& replica, absl::Duration limit) {
    return testing::WaitUntil([&] { return Call() == replica; }, limit);
  }
  int answered_by(const std::string& replica) const {
    auto it = answered_.find(replica);
    return it == answered_.end() ? 0 : it->second;
  }
  int failed() const { return failed_; }
  const std::string& last_error() const { return last_error_; }

 private:
  std::unique_ptr<bench::Echo::Stub> stub_;
  std::map<std::string, int> answered_;
  int failed_ = 0;
  std::string last_error_;
};

// Long enough for several reconnections at the short age below (1 s, +-10%), even on a busy
// machine; the unlimited case calls for just as long.
constexpr absl::Duration kBalancerWindow = absl::Seconds(10);
constexpr absl::Duration kShortAge = absl::Seconds(1);

// What a client calling replica "a" saw once replica "b" was added.
struct AddedReplicaOutcome {
  bool added_replica_answered = false;
  int calls_to_first = 0;
  int calls_to_added = 0;
  int failed = 0;
  std::string last_error;
  int connections_to_added = 0;  // behind the balancer
};

// Calls until the added replica "b" answers or `window` ends.
AddedReplicaOutcome CallUntilAddedAnswers(Caller& caller, absl::Duration window) {
  AddedReplicaOutcome outcome;
  outcome.added_replica_answered = caller.ReachesWithin("b", window);
  outcome.calls_to_first = caller.answered_by("a");
  outcome.calls_to_added = caller.answered_by("b");
  outcome.failed = caller.failed();
  outcome.last_error = caller.last_error();
  return outcome;
}

std::string Describe(const AddedReplicaOutcome& o) {
  return absl::StrCat("calls to a ", o.calls_to_first, ", to b ", o.calls_to_added, ", failed ",
                      o.failed, " (", o.last_error, ")");
}

// With a short maximum connection age the client reconnects in time and reaches "b", losing no
// call on the way.
void CheckAddedCalled(const AddedReplicaOutcome& aged) {
  INFO("max age 1 s: " << Describe(aged));
  CHECK(aged.added_replica_answered);
  CHECK(aged.failed == 0);
}

// Without a maximum connection age the client keeps its connection: "b" is never called, and "a"
// answers every call.
void CheckAddedNeverCalled(const AddedReplicaOutcome& unlimited) {
  INFO("max age unlimited: " << Describe(unlimited));
  CHECK_FALSE(unlimited.added_replica_answered);
  CHECK(unlimited.calls_to_added == 0);
  CHECK(unlimited.calls_to_first > 0);
  CHECK(unlimited.failed == 0);
}

// Replica "a" behind the balancer, a client calling it through the balancer; then replica "b"
// starts and joins the balancer's set; calls go on until one reaches "b" or the window ends.
AddedReplicaOutcome AddReplicaBehindBalancer(absl::Duration max_connection_age) {
  testing::TcpBalancer balancer;
  REQUIRE_OK(balancer.Start());
  Replica a("a", "127.0.0.1:0", max_connection_age);
  REQUIRE_OK(a.Start());
  balancer.AddBackend(a.port());

  Caller caller(absl::StrCat("127.0.0.1:", balancer.port()));
  REQUIRE(caller.Call() == "a");

  Replica b("b", "127.0.0.1:0", max_connection_age);
  REQUIRE_OK(b.Start());
  balancer.AddBackend(b.port());

  AddedReplicaOutcome outcome = CallUntilAddedAnswers(caller, kBalancerWindow);
  outcome.connections_to_added = balancer.ConnectionsTo(b.port());
  return outcome;
}

TEST_CASE(
    "behind a per-connection balancer, a replica added later gets calls once connections have a "
    "maximum age, and never without one",
    "[rpc][balance]") {
  const AddedReplicaOutcome aged = AddReplicaBehindBalancer(kShortAge);
  CheckAddedCalled(aged);
  CHECK(aged.connections_to_added >= 1);

  const AddedReplicaOutcome unlimited = AddReplicaBehindBalancer(absl::InfiniteDuration());
  CheckAddedNeverCalled(unlimited);
  CHECK(unlimited.connections_to_added == 0);
}

// Long enough for the re-resolution, which comes at most every 5 s (libs/rpc/client.cc), after
// the first connection reaches its age; the unlimited case calls for just as long.
constexpr absl::Duration kNameWindow = absl::Seconds(20);

// Replica "a" on 127.0.0.1:P and replica "b" on [::1]:P, both running; the name resolves to "a"
// only, a client calls it by name; then "b" is added to the name's answer (a pod becomes ready
// behind a headless Service); calls go on until one reaches "b" or the window ends.
AddedReplicaOutcome AddReplicaToName(absl::Duration max_connection_age) {
  // One port free on both loopback addresses: "b" takes one, "a" the same if it can.
  std::unique_ptr<Replica> a, b;
  for (int attempt = 0; attempt < 20 && a == nullptr; ++attempt) {
    b = std::make_unique<Replica>("b", "[::1]:0", max_connection_age);
    REQUIRE_OK(b->Start());
    a = std::make_unique<Replica>("a", absl::StrCat("127.0.0.1:", b->port()), max_connection_age);
    if (!a->Start().ok()) a.reset();
  }
  REQUIRE(a != nullptr);
  NameServer dns("replicas.crm.test");
  REQUIRE_OK(dns.Start());
  dns.AddAddress("127.0.0.1");

  Caller caller(absl::StrCat("dns://127.0.0.1:", dns.port(), "/replicas.crm.test:", a->port()));
  REQUIRE(caller.Call() == "a");
  dns.AddAddress("::1");

  return CallUntilAddedAnswers(caller, kNameWindow);
}

TEST_CASE(
    "a replica added to the name a channel resolves gets calls once connections have a maximum "
    "age, and never without one",
    "[rpc][balance]") {
  CheckAddedCalled(AddReplicaToName(kShortAge));
  CheckAddedNeverCalled(AddReplicaToName(absl::InfiniteDuration()));
}

TEST_CASE("a channel round-robins over every address its target names", "[rpc][balance]") {
  Replica a("a", "127.0.0.1:0", absl::InfiniteDuration());
  Replica b("b", "127.0.0.1:0", absl::InfiniteDuration());
  REQUIRE_OK(a.Start());
  REQUIRE_OK(b.Start());
  const std::string both = absl::StrCat("ipv4:127.0.0.1:", a.port(), ",127.0.0.1:", b.port());

  Caller caller(both);
  testing::WaitUntil(
      [&] {
        caller.Call();
        return caller.answered_by("a") > 0 && caller.answered_by("b") > 0;
      },
      absl::Seconds(10));
  INFO("calls to a " << caller.answered_by("a") << ", to b " << caller.answered_by("b"));
  CHECK(caller.answered_by("a") > 0);
  CHECK(caller.answered_by("b") > 0);
  CHECK(caller.failed() == 0);

  // gRPC's default policy (pick_first), as before, sends every call to the first address.
  auto plain = bench::Echo::NewStub(grpc::CreateChannel(both, grpc::InsecureChannelCredentials()));
  std::map<std::string, int> answered;
  for (int i = 0; i < 50; ++i) {
    grpc::ClientContext ctx;
    SetTimeout(ctx, absl::Seconds(5));
    bench::EchoMessage request, response;
    if (plain->Echo(&ctx, request, &response).ok()) ++answered[response.payload()];
  }
  CHECK(answered.size() == 1);
}

TEST_CASE(
    "a service's kept stubs still alternate over a shard's replicas, one stub per replica made "
    "once, and every replica answers",
    "[rpc]") {
  Replica a("a", "127.0.0.1:0", absl::ZeroDuration());
  REQUIRE_OK(a.Start());
  Replica b("b", "127.0.0.1:0", absl::ZeroDuration());
  REQUIRE_OK(b.Start());
  metrics::Metrics metrics;
  auto channels = ChannelSet::Create(
      "crm.bench.Echo", absl::StrCat("127.0.0.1:", a.port(), ",127.0.0.1:", b.port()), &metrics);
  REQUIRE_OK(channels.status());

  std::map<std::string, std::set<const bench::Echo::Stub*>> stubs_by_replica;
  for (int i = 0; i < 8; ++i) {
    const std::shared_ptr<bench::Echo::Stub> stub =
        (*channels)->StubForKey<bench::Echo>("any customer");
    grpc::ClientContext ctx;
    SetTimeout(ctx, absl::Seconds(5));
    bench::EchoMessage request, response;
    REQUIRE(stub->Echo(&ctx, request, &response).ok());
    stubs_by_replica[response.payload()].insert(stub.get());
  }
  REQUIRE(stubs_by_replica.size() == 2);
  CHECK(stubs_by_replica["a"].size() == 1);
  CHECK(stubs_by_replica["b"].size() == 1);
  CHECK(*stubs_by_replica["a"].begin() != *stubs_by_replica["b"].begin());
}

}  // namespace
}  // namespace crm::rpc
