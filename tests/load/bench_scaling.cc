// How customer-profile grows (issue "benchmark"): for each customer-base size, a fresh process and
// store, a bulk load through the API, then the same GetCustomer load; throughput, p99, RSS and disk
// per 1k customers side by side. Memory should follow the configured block cache and memtables, not
// the data.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "crm/v1/customer_profile.pb.h"
#include "libs/metrics/process_collector.h"
#include "tests/load/bench.h"
#include "tests/load/proc_stats.h"
#include "tests/support/http.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace crm::load {
namespace {

// One sample of the process's /metrics in MiB (0 when missing).
double MetricMiB(const std::string& page, const std::string& series) {
  return testing::SampleIn(page, series).value_or(0) / 1048576.0;
}

// Where the resident memory is: what the process allocated against mapped code, and RocksDB's
// share.
std::string MemoryBreakdown(const testing::Process& process) {
  const metrics::ResidentMemory rss = metrics::ReadResidentMemory(process.pid());
  auto page = testing::HttpGet(process.metrics_port(), "/metrics");
  const std::string body = page.ok() ? page->body : "";
  auto kind = [&](const char* k) {
    return MetricMiB(body, absl::StrCat("crm_rocksdb_memory_bytes{kind=\"", k, "\"}"));
  };
  const double budget = MetricMiB(body, "crm_memory_budget_bytes");
  const double resident = rss.total_bytes() / 1048576.0;
  // deploy/README.md (CrmMemoryOverBudget) states the bound: the budget plus 64 MiB.
  return absl::StrFormat(
      "anonymous %.1f MiB + mapped files %.1f MiB; budget %.0f MiB, RSS %s budget + 64 MiB; "
      "RocksDB "
      "block cache %.1f MiB (pinned %.1f), memtables %.1f MiB, table readers %.1f MiB",
      rss.anonymous_bytes / 1048576.0, rss.file_bytes / 1048576.0, budget,
      resident <= budget + 64 ? "within" : "OVER", kind("block_cache"), kind("block_cache_pinned"),
      kind("memtables"), kind("table_readers"));
}

}  // namespace

void RunScalingSuite(const BenchOptions& options, Report& report) {
  const Measurement* first = nullptr;
  Measurement base;
  double base_rss = 0;
  std::string base_name;
  for (int customers : options.scaling_customers) {
    testing::TempDir dir;
    testing::Process profile(
        testing::Process::BuildPath("services/customer_profile/customer-profile"),
        {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--data_dir=" + dir.Sub("profile"),
         "--event_sinks=none"});
    if (!profile.Start().ok() || !profile.WaitServing().ok())
      throw std::runtime_error("scaling: no customer-profile");
    const std::string target = absl::StrCat("127.0.0.1:", profile.port());
    absl::Duration took;
    auto ids = std::make_shared<const std::vector<std::string>>(
        BulkRegisterCustomers(target, customers, 64, &took));
    if (ids->empty()) throw std::runtime_error("scaling: bulk load registered nobody");
    const std::string name = absl::StrCat("GetCustomer at ", customers, " customers");
    Scenario get{name,
                 {{"GetCustomer", "/crm.v1.CustomerProfileService/GetCustomer",
                   ForRandomCustomer<v1::GetCustomerRequest>(ids)}}};
    const Measurement m =
        Measure(MakeChannels(target, options.load.channels), get, options.load, profile.pid());
    const double rss = ProcessRssBytes(profile.pid()) / 1048576.0;
    const double disk = DirectoryBytes(dir.Sub("profile")) / 1048576.0;
    report.Add(m, base_name);
    report.Note(absl::StrFormat(
        "scaling: %d customers loaded in %.1f s; RSS %.1f MiB, data %.1f MiB (%.1f KiB per 1k "
        "customers); %s",
        customers, absl::ToDoubleSeconds(took), rss, disk, disk * 1024 / customers * 1000,
        MemoryBreakdown(profile)));
    if (first == nullptr) {
      base = m;
      first = &base;
      base_rss = rss;
      base_name = name;
    } else {
      report.Note(
          absl::StrFormat("scaling: at %d customers throughput is %.0f%% and p99 %.0f%% of the "
                          "smallest base, RSS %.2f× (issue 18's bound: 1.5×)",
                          customers, 100 * m.result.throughput() / base.result.throughput(),
                          100 * absl::ToDoubleMilliseconds(m.result.latency.Percentile(99)) /
                              absl::ToDoubleMilliseconds(base.result.latency.Percentile(99)),
                          rss / base_rss));
    }
    profile.Stop();
  }
}

}  // namespace crm::load
