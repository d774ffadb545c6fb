// The processes' threads as an operator sees them in `top -H` or perf: each data service's write
// pool sized by --write_threads (synced writes and the events it applies) and named
// <service>-writes, each delivery lane named after its consumer, the outbox cleanup and the
// gateway's front-door loops each under their own name; a pool size out of range stops start-up
// naming the flag.
#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "catch2/catch.hpp"
#include "libs/rpc/backends.h"
#include "tests/e2e/start_process.h"
#include "tests/support/crm_system.h"
#include "tests/support/process.h"
#include "tests/support/require_ok.h"
#include "tests/support/temp_dir.h"

namespace crm {
namespace {

using testing::Process;
using testing::StartServing;

// Threads of process `pid` whose name ends in "-writes" (every data service's write pool).
int WritePoolThreads(pid_t pid) {
  const std::vector<std::string> names = testing::ThreadNames(pid);
  return static_cast<int>(std::count_if(names.begin(), names.end(), [](const std::string& n) {
    return absl::EndsWith(n, "-writes");
  }));
}

TEST_CASE("every data service's write pool takes its size from --write_threads", "[e2e][flags]") {
  for (const rpc::ServiceInfo& info : rpc::DataServices()) {
    DYNAMIC_SECTION(info.name) {
      testing::TempDir dir;
      const std::string& binary = testing::CrmSystem::Binary(info.name);

      // The service's own number when unset: more than the sizes tried below.
      auto own = StartServing(binary, {"--data_dir=" + dir.Sub("own")});
      CHECK(WritePoolThreads(own->pid()) >= 16);
      own->Stop();

      for (int threads : {3, 5}) {
        auto sized = StartServing(binary, {"--data_dir=" + dir.Sub(std::to_string(threads)),
                                           "--write_threads=" + std::to_string(threads)});
        CHECK(WritePoolThreads(sized->pid()) == threads);
        sized->Stop();
      }

      for (const char* bad : {"-1", "257"}) {
        Process refused(Process::BuildPath(binary), {"--listen=127.0.0.1:0", "--metrics_listen=off",
                                                     "--data_dir=" + dir.Sub("refused"),
                                                     std::string("--write_threads=") + bad});
        REQUIRE_OK(refused.Start());
        CHECK(refused.Wait() != 0);
        INFO(refused.output());
        CHECK(absl::StrContains(refused.output(), std::string("--write_threads (") + bad +
                                                      ") must be 0 (the service's own) or 1-256"));
      }
    }
  }
}

// How many of `names` are `name`.
int Named(const std::vector<std::string>& names, const std::string& name) {
  return static_cast<int>(std::count(names.begin(), names.end(), name));
}

TEST_CASE("the system's delivery lanes, outbox cleanup and front-door loops are named threads",
          "[e2e][events]") {
  testing::TempDir dir;
  testing::CrmSystem::Options o;
  o.data_root = dir.path();
  o.extra["gateway"] = {"--front_threads=3"};
  testing::CrmSystem system(o);
  REQUIRE_OK(system.Start());

  std::vector<std::string> orders = testing::ThreadNames(system.pid("order-tracking"));
  std::sort(orders.begin(), orders.end());
  INFO("order-tracking: " << absl::StrJoin(orders, ", "));
  // One lane per consumer shard, named after the consumer (Linux keeps 15 bytes of a name).
  CHECK(Named(orders, "to-loyalty") == 1);
  CHECK(Named(orders, "to-customer-pro") == 1);
  CHECK(Named(orders, "outbox-gc") == 1);
  CHECK(Named(orders, "order-writes") == 32);

  std::vector<std::string> gateway = testing::ThreadNames(system.pid("gateway"));
  std::sort(gateway.begin(), gateway.end());
  INFO("gateway: " << absl::StrJoin(gateway, ", "));
  CHECK(Named(gateway, "front-door") == 3);
}

}  // namespace
}  // namespace crm
