// Every data service's write pool as an operator sizes it (--write_threads): the real binary runs
// that many threads for its synced writes and the events it applies, named after the pool so
// `top -H` and perf tell them apart, and a value out of range stops start-up naming the flag.
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "catch2/catch.hpp"
#include "libs/rpc/backends.h"
#include "tests/e2e/start_process.h"
#include "tests/support/process.h"
#include "tests/support/require_ok.h"
#include "tests/support/temp_dir.h"

namespace crm {
namespace {

using testing::Process;
using testing::StartServing;

// "customer-profile" is built as services/customer_profile/customer-profile.
std::string BinaryOf(const std::string& service) {
  return "services/" + absl::StrReplaceAll(service, {{"-", "_"}}) + "/" + service;
}

// Threads of process `pid` whose name ends in "-writes" (every data service's write pool).
int WritePoolThreads(pid_t pid) {
  int count = 0;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (absl::EndsWith(name, "-writes")) ++count;
  }
  return count;
}

TEST_CASE("every data service's write pool takes its size from --write_threads", "[e2e][flags]") {
  for (const rpc::ServiceInfo& info : rpc::DataServices()) {
    DYNAMIC_SECTION(info.name) {
      testing::TempDir dir;
      const std::string binary = BinaryOf(info.name);

      // The service's own number when unset: more than the sizes tried below.
      auto own = StartServing(binary, {"--data_dir=" + dir.Sub("own")});
      const int own_threads = WritePoolThreads(own->pid());
      CHECK(own_threads >= 16);
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

}  // namespace
}  // namespace crm
