// How customer-profile grows (issue "benchmark"): for each customer-base size, a fresh process and store,
// a bulk load through the API, then the same GetCustomer load; throughput, p99, RSS and disk per 1k
// customers side by side. Memory should follow the configured block cache and memtables, not the data.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "crm/v1/customer_profile.pb.h"
#include "tests/load/bench.h"
#include "tests/load/proc_stats.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace crm::load {

void RunScalingSuite(const BenchOptions& options, Report& report) {
  const Measurement* first = nullptr;
  Measurement base;
  double base_rss = 0;
  std::string base_name;
  for (int customers : options.scaling_customers) {
    testing::TempDir dir;
    testing::Process profile(testing::Process::BuildPath("services/customer_profile/customer-profile"),
                             {"--listen=127.0.0.1:0", "--metrics_listen=off", "--data_dir=" + dir.Sub("profile"),
                              "--event_sinks=none"});
    if (!profile.Start().ok() || !profile.WaitServing().ok()) throw std::runtime_error("scaling: no customer-profile");
    const std::string target = absl::StrCat("127.0.0.1:", profile.port());
    absl::Duration took;
    auto ids = std::make_shared<const std::vector<std::string>>(BulkRegisterCustomers(target, customers, 64, &took));
    if (ids->empty()) throw std::runtime_error("scaling: bulk load registered nobody");
    const std::string name = absl::StrCat("GetCustomer at ", customers, " customers");
    Scenario get{name,
                 {{"GetCustomer", "/crm.v1.CustomerProfileService/GetCustomer", [ids](uint64_t, absl::BitGen& gen) {
                     v1::GetCustomerRequest r;
                     r.set_customer_id((*ids)[absl::Uniform<size_t>(gen, 0, ids->size())]);
                     return r.SerializeAsString();
                   }}}};
    const Measurement m = Measure(MakeChannels(target, options.load.channels), get, options.load, profile.pid());
    const double rss = ProcessRssBytes(profile.pid()) / 1048576.0;
    const double disk = DirectoryBytes(dir.Sub("profile")) / 1048576.0;
    report.Add(m, base_name);
    report.Note(absl::StrFormat("scaling: %d customers loaded in %.1f s; RSS %.1f MiB, data %.1f MiB (%.1f KiB per 1k "
                                "customers)",
                                customers, absl::ToDoubleSeconds(took), rss, disk, disk * 1024 / customers * 1000));
    if (first == nullptr) {
      base = m;
      first = &base;
      base_rss = rss;
      base_name = name;
    } else {
      report.Note(absl::StrFormat(
          "scaling: at %d customers throughput is %.0f%% and p99 %.0f%% of the smallest base, RSS %.2f×", customers,
          100 * m.result.throughput() / base.result.throughput(),
          100 * absl::ToDoubleMilliseconds(m.result.latency.Percentile(99)) /
              absl::ToDoubleMilliseconds(base.result.latency.Percentile(99)),
          rss / base_rss));
    }
    profile.Stop();
  }
}

}  // namespace crm::load
