// The gateway's front door held against the open internet, over the six real processes: thousands
// of idle connections from many client addresses, slowloris connections (headers that never finish,
// bodies that stall), a thousand open Connect streams, all at once, while a customer's gRPC and
// Connect calls keep being answered; then every abuser is cut off by the front door's own timeouts
// and caps. Also grpcurl's workflow on the gateway's port: list the services by reflection,
// describe one, and call a method built from the description alone.
//
// Figures (latency percentiles, memory per idle connection and per stream) are printed, never
// asserted: the machines are shared and noisy. The counts adapt to the descriptors this process may
// open.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.pb.h"
#include "crm/v1/order_tracking.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/descriptor_database.h"
#include "google/protobuf/dynamic_message.h"
#include "tests/support/crm_system.h"
#include "tests/support/grpc_probe.h"
#include "tests/support/require_ok.h"
#include "tests/support/shop_calls.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait.h"

namespace crm {
namespace {

using testing::CrmSystem;

// A blocking TCP connection to 127.0.0.1:port from `source` (any 127.x address is this machine), or
// -1.
int ConnectFrom(const std::string& source, int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in from{};
  from.sin_family = AF_INET;
  inet_pton(AF_INET, source.c_str(), &from.sin_addr);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Reads from each of `fds` once poll reports one of `ready` on it, until `settled` has said so for
// every one of them or `limit` passes; how many settled. `settled` sees what one non-blocking recv
// returned: `n` bytes at `data`, 0 at EOF, or -1 with errno set.
size_t ReadEachUntilSettled(const std::vector<int>& fds, absl::Duration limit, short ready,
                            const std::function<bool(ssize_t n, const char* data)>& settled) {
  std::set<int> waiting(fds.begin(), fds.end());
  const absl::Time until = absl::Now() + limit;
  char buf[4096];
  while (!waiting.empty() && absl::Now() < until) {
    std::vector<pollfd> p;
    for (int fd : waiting) p.push_back({fd, POLLIN, 0});
    poll(p.data(), p.size(), 200);
    for (const pollfd& q : p) {
      if ((q.revents & ready) == 0) continue;
      if (settled(recv(q.fd, buf, sizeof(buf), MSG_DONTWAIT), buf)) waiting.erase(q.fd);
    }
  }
  return fds.size() - waiting.size();
}

// Waits until the server has closed every one of `fds` (EOF or reset) or `limit` passes; how many
// it closed.
size_t WaitClosedByServer(const std::vector<int>& fds, absl::Duration limit) {
  return ReadEachUntilSettled(fds, limit, POLLIN | POLLHUP | POLLERR, [](ssize_t n, const char*) {
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  });
}

void CloseAll(std::vector<int>& fds) {
  for (int fd : fds) close(fd);
  fds.clear();
}

// Descriptors a process has open (its accepted connections among them).
size_t OpenDescriptors(pid_t pid) {
  std::error_code ec;
  size_t n = 0;
  for (auto it = std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/fd"), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

// Resident memory of a process, in bytes.
double ResidentBytes(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/statm"));
  long pages = 0, resident = 0;
  in >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

// A Connect unary call over HTTP/1.1 on a fresh connection from 127.0.0.1: the HTTP status, or -1.
int ConnectUnary(int port, const std::string& path, const std::string& json,
                 const std::string& token) {
  const int fd = ConnectFrom("127.0.0.1", port);
  if (fd < 0) return -1;
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const std::string request =
      absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: crm\r\nContent-Type: application/json\r\n",
                   "Authorization: Bearer ", token,
                   "\r\nConnection: close\r\nContent-Length: ", json.size(), "\r\n\r\n", json);
  int status = -1;
  if (SendAll(fd, request)) {
    std::string got;
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) got.append(buf, static_cast<size_t>(n));
    if (absl::StartsWith(got, "HTTP/1.1 ") && got.size() > 12)
      (void)absl::SimpleAtoi(got.substr(9, 3), &status);
  }
  close(fd);
  return status;
}

// A Connect server-stream request: one enveloped JSON message.
std::string ConnectStreamRequest(const std::string& path, const std::string& json,
                                 const std::string& token) {
  std::string envelope(5, '\0');
  envelope[1] = static_cast<char>((json.size() >> 24) & 0xff);
  envelope[2] = static_cast<char>((json.size() >> 16) & 0xff);
  envelope[3] = static_cast<char>((json.size() >> 8) & 0xff);
  envelope[4] = static_cast<char>(json.size() & 0xff);
  envelope += json;
  return absl::StrCat("POST ", path,
                      " HTTP/1.1\r\nHost: crm\r\nContent-Type: application/connect+json\r\n",
                      "Authorization: Bearer ", token, "\r\nContent-Length: ", envelope.size(),
                      "\r\n\r\n", envelope);
}

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

struct Customer {
  std::string id, token, order_id;
};

Customer MakeCustomerWithOrder(CrmSystem& system) {
  v1::RegisterCustomerRequest reg;
  reg.set_request_id("reg-soak");
  reg.set_email("soak@example.com");
  reg.set_name("Soak Tester");
  auto r = testing::RawUnaryCall(
      system.gateway(), "/crm.v1.CustomerProfileService/RegisterCustomer", reg.SerializeAsString(),
      {{"authorization", "Bearer " + system.Token("admin", "ops")}});
  INFO(r.status.error_message());
  REQUIRE(r.status.ok());
  v1::Customer c;
  REQUIRE(c.ParseFromString(r.body));
  v1::AddAddressRequest addr;
  addr.set_customer_id(c.customer_id());
  addr.set_request_id("addr-soak");
  addr.mutable_address()->set_recipient_name("Soak Tester");
  addr.mutable_address()->set_city("Hangzhou");
  addr.mutable_address()->set_street("Wensan Road 1");
  addr.mutable_address()->set_country_code("CN");
  r = testing::RawUnaryCall(
      system.gateway(), "/crm.v1.CustomerProfileService/AddAddress", addr.SerializeAsString(),
      {{"authorization", "Bearer " + system.Token("customer", c.customer_id())}});
  INFO(r.status.error_message());
  REQUIRE(r.status.ok());
  const v1::CreateOrderRequest create =
      testing::CashOnDeliveryOrderRequest(c.customer_id(), "order-soak", "sku-tea", "grocery", 5800,
                                          absl::Now() + absl::Hours(1), absl::Hours(47));
  r = testing::RawUnaryCall(system.gateway(), "/crm.v1.OrderTrackingService/CreateOrder",
                            create.SerializeAsString(),
                            {{"authorization", "Bearer " + system.Token("service", "storefront")}});
  INFO(r.status.error_message());
  REQUIRE(r.status.ok());
  v1::Order order;
  REQUIRE(order.ParseFromString(r.body));
  return {c.customer_id(), system.Token("customer", c.customer_id()), order.order_id()};
}

TEST_CASE(
    "front door soak: idle connections, slowloris and open streams held at once do not stop a "
    "customer's calls") {
  // Descriptors: this process holds every abusive connection itself (the gateway raises its own
  // limit).
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = files.rlim_max;
  setrlimit(RLIMIT_NOFILE, &files);
  const int budget = static_cast<int>(std::min<rlim_t>(files.rlim_cur, 1 << 20)) - 1500;
  constexpr int kPerAddress = 1000;  // the gateway's --max_connections_per_ip below
  const int streams = std::min(1000, std::max(0, budget / 12));
  const int slowloris = std::min(500, std::max(0, budget / 24));
  const int idle =
      std::min(10000, std::max(0, budget - streams - slowloris - 100)) / kPerAddress * kPerAddress;
  if (idle < 10000)
    WARN("descriptor limit " << files.rlim_cur << ": " << idle
                             << " idle connections instead of 10000");

  testing::TempDir dir;
  CrmSystem::Options o;
  o.data_root = dir.path();
  o.extra["gateway"] = {absl::StrCat("--max_connections_per_ip=", kPerAddress),
                        "--http_header_timeout_s=20", "--http_body_timeout_s=20",
                        "--max_streams_per_customer=1000"};
  CrmSystem system(o);
  REQUIRE_OK(system.Start());
  const Customer shopper = MakeCustomerWithOrder(system);
  const int http = system.http_port(), grpc_port = system.port("gateway");
  const pid_t gateway = system.pid("gateway");

  // The legitimate customer: native gRPC and Connect calls, every one must succeed.
  v1::GetCustomerRequest get;
  get.set_customer_id(shopper.id);
  const std::string get_json = absl::StrCat("{\"customerId\":\"", shopper.id, "\"}");
  auto legit_calls = [&](int n, std::vector<double>* latencies_ms) {
    int failures = 0;
    for (int i = 0; i < n; ++i) {
      const absl::Time start = absl::Now();
      bool ok;
      if (i % 2 == 0) {
        ok = testing::RawUnaryCall(system.gateway(), "/crm.v1.CustomerProfileService/GetCustomer",
                                   get.SerializeAsString(),
                                   {{"authorization", "Bearer " + shopper.token}})
                 .status.ok();
      } else {
        ok = ConnectUnary(http, "/crm.v1.CustomerProfileService/GetCustomer", get_json,
                          shopper.token) == 200;
      }
      latencies_ms->push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
      failures += ok ? 0 : 1;
    }
    return failures;
  };
  std::vector<double> calm;
  CHECK(legit_calls(100, &calm) == 0);
  const double rss_before = ResidentBytes(gateway);
  const size_t descriptors_before = OpenDescriptors(gateway);

  // Idle connections: kPerAddress from each of several client addresses, on both front-door ports.
  std::vector<int> idle_fds;
  for (int a = 0; static_cast<int>(idle_fds.size()) < idle; ++a) {
    const std::string source = absl::StrCat("127.0.1.", a + 1);
    for (int i = 0; i < kPerAddress; ++i) {
      const int fd = ConnectFrom(source, i % 2 == 0 ? http : grpc_port);
      REQUIRE(fd >= 0);
      idle_fds.push_back(fd);
    }
  }
  // Memory is read once the gateway holds them all (its open descriptors), not while they wait in
  // the backlog.
  CHECK(testing::WaitUntil(
      [&] { return OpenDescriptors(gateway) >= descriptors_before + idle_fds.size(); },
      absl::Seconds(60)));
  // One more from a full address is closed at once: the per-address cap. Sent only once every idle
  // connection is accepted: the listeners (one per loop, SO_REUSEPORT) drain their queues in no
  // fixed order, so an earlier one could take the last place instead.
  const int over_cap = ConnectFrom("127.0.1.1", http);
  REQUIRE(over_cap >= 0);
  CHECK(WaitClosedByServer({over_cap}, absl::Seconds(10)) == 1);
  close(over_cap);
  const double rss_idle = ResidentBytes(gateway);

  // Slowloris: half send headers that never end, half promise a body and stall.
  std::vector<int> slow_fds;
  for (int i = 0; i < slowloris; ++i) {
    const int fd = ConnectFrom("127.0.2.1", http);
    REQUIRE(fd >= 0);
    const std::string partial =
        i % 2 == 0
            ? "POST /crm.v1.CustomerProfileService/GetCustomer HTTP/1.1\r\nHost: crm\r\nX-Slow: "
            : absl::StrCat(
                  "POST /crm.v1.CustomerProfileService/GetCustomer HTTP/1.1\r\nHost: crm\r\n",
                  "Content-Type: application/json\r\nAuthorization: Bearer ", shopper.token,
                  "\r\nContent-Length: 100000\r\n\r\n{\"customerId\":");
    REQUIRE(SendAll(fd, partial));
    slow_fds.push_back(fd);
  }

  // Open Connect streams (WatchOrder), each on its own HTTP/1.1 connection; each gets the order's
  // state first.
  const std::string watch = ConnectStreamRequest(
      "/crm.v1.OrderTrackingService/WatchOrder",
      absl::StrCat("{\"customerId\":\"", shopper.id, "\",\"orderId\":\"", shopper.order_id, "\"}"),
      shopper.token);
  std::vector<int> stream_fds;
  for (int i = 0; i < streams; ++i) {
    const int fd = ConnectFrom(absl::StrCat("127.0.3.", 1 + i / 500), http);
    REQUIRE(fd >= 0);
    REQUIRE(SendAll(fd, watch));
    stream_fds.push_back(fd);
  }
  int answered = 0;
  ReadEachUntilSettled(stream_fds, absl::Seconds(60), POLLIN, [&](ssize_t n, const char* data) {
    if (n > 0 && absl::StartsWith(absl::string_view(data, static_cast<size_t>(n)), "HTTP/1.1 200"))
      ++answered;
    return true;
  });
  CHECK(answered == streams);
  const double rss_streams = ResidentBytes(gateway);

  // Everything held at once: the customer's calls are all answered.
  std::vector<double> loaded;
  CHECK(legit_calls(400, &loaded) == 0);
  // The cap on one customer's streams still holds with the front door this busy.
  {
    const int fd = ConnectFrom("127.0.4.1", http);
    REQUIRE(fd >= 0);
    REQUIRE(SendAll(fd, watch));
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::string got;
    char buf[4096];
    ssize_t n;
    while (!absl::StrContains(got, "resource_exhausted") &&
           (n = recv(fd, buf, sizeof(buf), 0)) > 0) {
      got.append(buf, static_cast<size_t>(n));
    }
    INFO(got);
    CHECK(absl::StrContains(got, "resource_exhausted"));
    close(fd);
  }

  WARN(
      "held " << idle_fds.size() << " idle, " << slow_fds.size() << " slowloris and " << streams
              << " open Connect streams; a customer's calls (gRPC and Connect, one at a time): p50 "
              << Percentile(loaded, 0.5) << " ms, p99 " << Percentile(loaded, 0.99)
              << " ms (unloaded p50 " << Percentile(calm, 0.5) << " ms, p99 "
              << Percentile(calm, 0.99) << " ms)");
  WARN("gateway memory: " << (rss_idle - rss_before) / std::max<size_t>(1, idle_fds.size())
                          << " bytes per idle connection, "
                          << (rss_streams - rss_idle) / std::max(1, streams)
                          << " bytes per open stream (resident set, before/after)");

  // The front door's timeouts cut the slowloris connections off on their own.
  CHECK(WaitClosedByServer(slow_fds, absl::Seconds(60)) == slow_fds.size());
  CloseAll(slow_fds);
  CloseAll(stream_fds);
  CloseAll(idle_fds);
  std::vector<double> after;
  CHECK(legit_calls(20, &after) == 0);
}

TEST_CASE(
    "front door: grpcurl's workflow on the gateway port: list, describe, call from the description "
    "alone") {
  testing::TempDir dir;
  CrmSystem::Options o;
  o.data_root = dir.path();
  CrmSystem system(o);
  REQUIRE_OK(system.Start());

  // List: every crm.v1 service the gateway routes, with health and reflection.
  auto services = testing::ReflectionServices(system.gateway());
  INFO(services.status().ToString());
  REQUIRE(services.ok());
  const std::set<std::string> listed(services->begin(), services->end());
  for (const char* name :
       {"crm.v1.CustomerProfileService", "crm.v1.OrderTrackingService", "crm.v1.LoyaltyService",
        "crm.v1.ComplaintTicketService", "crm.v1.RecommendationService",
        "crm.v1.CustomerViewService", "grpc.health.v1.Health"}) {
    INFO(name);
    CHECK(listed.count(name) == 1);
  }

  // Describe: the service's file and its dependencies, enough to build the messages.
  auto files =
      testing::ReflectionFilesContaining(system.gateway(), "crm.v1.CustomerProfileService");
  INFO(files.status().ToString());
  REQUIRE(files.ok());
  google::protobuf::SimpleDescriptorDatabase db;
  for (const std::string& bytes : *files) {
    google::protobuf::FileDescriptorProto file;
    REQUIRE(file.ParseFromString(bytes));
    db.Add(file);
  }
  google::protobuf::DescriptorPool pool(&db);
  const google::protobuf::ServiceDescriptor* service =
      pool.FindServiceByName("crm.v1.CustomerProfileService");
  REQUIRE(service != nullptr);
  const google::protobuf::MethodDescriptor* reg = service->FindMethodByName("RegisterCustomer");
  const google::protobuf::MethodDescriptor* get = service->FindMethodByName("GetCustomer");
  REQUIRE(reg != nullptr);
  REQUIRE(get != nullptr);
  CHECK(get->options().idempotency_level() == google::protobuf::MethodOptions::NO_SIDE_EFFECTS);

  // Call: messages built from the described types only, as grpcurl -d '{...}' does.
  google::protobuf::DynamicMessageFactory factory(&pool);
  auto call = [&](const google::protobuf::MethodDescriptor* m,
                  const std::map<std::string, std::string>& fields, const std::string& token) {
    std::unique_ptr<google::protobuf::Message> req(factory.GetPrototype(m->input_type())->New());
    for (const auto& [name, value] : fields) {
      const auto* f = m->input_type()->FindFieldByName(name);
      REQUIRE(f != nullptr);
      req->GetReflection()->SetString(req.get(), f, value);
    }
    auto reply = testing::RawUnaryCall(
        system.gateway(), absl::StrCat("/", service->full_name(), "/", m->name()),
        req->SerializeAsString(), {{"authorization", "Bearer " + token}});
    INFO(reply.status.error_message());
    REQUIRE(reply.status.ok());
    std::unique_ptr<google::protobuf::Message> resp(factory.GetPrototype(m->output_type())->New());
    REQUIRE(resp->ParseFromString(reply.body));
    return resp;
  };
  auto field = [](const google::protobuf::Message& m, const std::string& name) {
    return m.GetReflection()->GetString(m, m.GetDescriptor()->FindFieldByName(name));
  };
  auto created = call(reg, {{"email", "curious@example.com"}, {"request_id", "reg-curious"}},
                      system.Token("admin", "ops"));
  const std::string id = field(*created, "customer_id");
  REQUIRE(!id.empty());
  auto got = call(get, {{"customer_id", id}}, system.Token("customer", id));
  CHECK(field(*got, "email") == "curious@example.com");
}

}  // namespace
}  // namespace crm
