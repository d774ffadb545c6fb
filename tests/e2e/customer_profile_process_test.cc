// The real customer-profile binary as an operator runs it: flags and environment, health, a clean
// SIGTERM, and durability across a restart and across SIGKILL.
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "tests/support/caller.h"
#include "tests/support/grpc_probe.h"
#include "tests/support/http.h"
#include "tests/support/metrics_page.h"
#include "tests/support/process.h"
#include "tests/support/require_ok.h"
#include "tests/support/temp_dir.h"

namespace crm {
namespace {

using testing::Process;

std::unique_ptr<Process> StartProfile(const std::string& data_dir,
                                      std::map<std::string, std::string> env = {}) {
  std::vector<std::string> args = {"--listen=127.0.0.1:0", "--data_dir=" + data_dir};
  // No fixed ports in tests: metrics off unless the test configures them through the environment.
  if (env.count("CRM_METRICS_LISTEN") == 0) args.push_back("--metrics_listen=off");
  auto p = std::make_unique<Process>(
      Process::BuildPath("services/customer_profile/customer-profile"), args, std::move(env));
  REQUIRE_OK(p->Start());
  const absl::Status s = p->WaitServing();
  INFO(s.ToString());
  REQUIRE(s.ok());
  return p;
}

std::unique_ptr<v1::CustomerProfileService::Stub> StubFor(const Process& p) {
  return v1::CustomerProfileService::NewStub(
      testing::ChannelAs("127.0.0.1:" + std::to_string(p.port()), testing::InternalCaller()));
}

std::string Register(v1::CustomerProfileService::Stub& stub, const std::string& email) {
  grpc::ClientContext ctx;
  v1::RegisterCustomerRequest req;
  req.set_request_id("r-" + email);
  req.set_email(email);
  v1::Customer c;
  const grpc::Status s = stub.RegisterCustomer(&ctx, req, &c);
  REQUIRE(s.ok());
  return c.customer_id();
}

grpc::Status Get(v1::CustomerProfileService::Stub& stub, const std::string& id, v1::Customer* c) {
  grpc::ClientContext ctx;
  v1::GetCustomerRequest req;
  req.set_customer_id(id);
  return stub.GetCustomer(&ctx, req, c);
}

TEST_CASE("the binary serves, stops cleanly on SIGTERM, and keeps its data across a restart",
          "[e2e][profile]") {
  testing::TempDir dir;
  std::string id;
  {
    // Configuration through the environment, as in a container: CRM_METRICS_LISTEN.
    auto p = StartProfile(dir.Sub("data"), {{"CRM_METRICS_LISTEN", "127.0.0.1:0"}});
    REQUIRE(p->metrics_port() > 0);
    auto stub = StubFor(*p);
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(p->port()),
                                       grpc::InsecureChannelCredentials());
    CHECK(testing::HealthCheck(channel, "crm.v1.CustomerProfileService").value() ==
          testing::kServing);
    id = Register(*stub, "restart@example.com");
    auto metrics = testing::HttpGet(p->metrics_port(), "/metrics");
    REQUIRE(metrics.ok());
    testing::CheckPageShows(
        metrics->body, {"crm_customers_registered_total 1",
                        // Memory against the budget, as the CrmMemoryOverBudget alert reads
                        // it: the default budget, 128 MiB.
                        "\ncrm_memory_budget_bytes 134217728\n", "\nprocess_resident_memory_bytes ",
                        "crm_rocksdb_memory_bytes{kind=\"memtables\"}"});
    CHECK(p->Stop() == 0);
    CHECK(p->output().find("\"message\":\"stopped cleanly\"") != std::string::npos);
  }
  auto p = StartProfile(dir.Sub("data"));
  auto stub = StubFor(*p);
  v1::Customer c;
  REQUIRE(Get(*stub, id, &c).ok());
  CHECK(c.email() == "restart@example.com");
}

TEST_CASE("an acknowledged registration survives SIGKILL (synced WAL)", "[e2e][profile]") {
  testing::TempDir dir;
  std::vector<std::string> ids;
  {
    auto p = StartProfile(dir.Sub("data"));
    auto stub = StubFor(*p);
    for (int i = 0; i < 20; ++i)
      ids.push_back(Register(*stub, "kill" + std::to_string(i) + "@example.com"));
    p->Kill();
  }
  auto p = StartProfile(dir.Sub("data"));
  auto stub = StubFor(*p);
  for (const auto& id : ids) {
    v1::Customer c;
    CHECK(Get(*stub, id, &c).ok());
  }
}

TEST_CASE("a bad flag value or an unusable data folder stops start-up with a clear message",
          "[e2e][profile]") {
  testing::TempDir dir;
  Process bad_flag(Process::BuildPath("services/customer_profile/customer-profile"),
                   {"--block_cache_mb=lots"});
  REQUIRE_OK(bad_flag.Start());
  CHECK(bad_flag.Wait() != 0);
  CHECK(bad_flag.output().find("block_cache_mb") != std::string::npos);

  // Memtables are charged to the block cache, the process's memory budget: more of them than the
  // budget would break the bound the operator sized the pod by.
  Process over_budget(
      Process::BuildPath("services/customer_profile/customer-profile"),
      {"--listen=127.0.0.1:0", "--metrics_listen=off", "--data_dir=" + dir.Sub("budget"),
       "--block_cache_mb=32", "--memtable_mb=64"});
  REQUIRE_OK(over_budget.Start());
  CHECK(over_budget.Wait() != 0);
  CHECK(over_budget.output().find(
            "--memtable_mb (64) must be at least 4 and at most --block_cache_mb (32") !=
        std::string::npos);

  Process bad_dir(
      Process::BuildPath("services/customer_profile/customer-profile"),
      {"--listen=127.0.0.1:0", "--metrics_listen=off", "--data_dir=/proc/no-such-place/data"});
  REQUIRE_OK(bad_dir.Start());
  CHECK_FALSE(bad_dir.WaitServing(absl::Seconds(20)).ok());
  CHECK(bad_dir.output().find("cannot open store") != std::string::npos);
}

TEST_CASE("a damaged store keeps the binary down, with an error naming the file",
          "[e2e][profile][corruption]") {
  testing::TempDir dir;
  {
    auto p = StartProfile(dir.Sub("data"));
    auto stub = StubFor(*p);
    for (int i = 0; i < 50; ++i) Register(*stub, "damaged" + std::to_string(i) + "@example.com");
    REQUIRE(p->Stop() == 0);
  }
  // Damage the newest table file, or the write-ahead log when nothing was flushed yet, in its
  // middle.
  std::string victim;
  for (const auto& e : std::filesystem::directory_iterator(dir.Sub("data"))) {
    const std::string name = e.path().filename().string();
    if (absl::EndsWith(name, ".sst") ||
        (victim.empty() && absl::EndsWith(name, ".log") && e.file_size() > 1024)) {
      victim = e.path().string();
    }
  }
  REQUIRE(!victim.empty());
  {
    std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(victim) / 2));
    f.write("\xde\xad\xbe\xef\xde\xad\xbe\xef", 8);
  }
  Process p(Process::BuildPath("services/customer_profile/customer-profile"),
            {"--listen=127.0.0.1:0", "--data_dir=" + dir.Sub("data"), "--metrics_listen=off"});
  REQUIRE_OK(p.Start());
  const int code = p.WaitExit(absl::Seconds(30));
  INFO(p.output());
  CHECK(code != 0);
  CHECK(code != -1000);  // it exited by itself
  CHECK(absl::StrContains(p.output(), "cannot open store"));
  CHECK(absl::StrContains(p.output(), std::filesystem::path(victim).filename().string()));
  CHECK(absl::StrContains(p.output(), "is not served"));
}

}  // namespace
}  // namespace crm
