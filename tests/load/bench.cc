#include "tests/load/bench.h"

#include <cstdio>
#include <fstream>
#include <map>
#include <optional>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "libs/log/log.h"
#include "tests/load/proc_stats.h"
#include "tests/load/tool_main.h"
#include "tests/support/process.h"

ABSL_FLAG(std::string, suites,
          "storage,profile,orders,loyalty,tickets,recommendation,gateway,scaling,system",
          "comma-separated suites to run: storage, profile, orders, loyalty, tickets, "
          "recommendation, gateway, scaling, "
          "system");
ABSL_FLAG(std::string, system_customers, "1000,100000",
          "customer bases of the whole-system suite (360-degree view; the storefront mix runs on "
          "the last)");
ABSL_FLAG(int, reco_items, 50000, "catalog items in the recommendation suite");
ABSL_FLAG(int, reco_customers, 100000, "customers interacting in the recommendation suite");
ABSL_FLAG(int, reco_interactions, 1000000,
          "purchases and item views learned before recommendations are measured");
ABSL_FLAG(int, order_customers, 2000, "customers placing orders in the orders suite");
ABSL_FLAG(int, open_tickets, 100000, "open tickets before the at-risk list is measured");
ABSL_FLAG(int, customers, 100000, "customers bulk-loaded before measuring");
ABSL_FLAG(std::string, scaling_customers, "10000,100000",
          "customer bases of the scaling suite, smallest first");
ABSL_FLAG(int, concurrency, 32, "calls in flight (closed loop)");
ABSL_FLAG(int, channels, 4, "client connections");
ABSL_FLAG(double, warmup_s, 1, "warm-up seconds before each measurement");
ABSL_FLAG(double, duration_s, 5, "measured seconds per workload");
ABSL_FLAG(std::string, markdown, "", "write the report as markdown to this file");
ABSL_FLAG(std::string, json, "", "write the report as JSON to this file");

namespace crm::load {
namespace {

// Every suite by the name --suites takes.
const std::map<std::string, void (*)(const BenchOptions&, Report&), std::less<>> kSuites = {
    {"profile", RunProfileSuite},
    {"orders", RunOrdersSuite},
    {"loyalty", RunLoyaltySuite},
    {"tickets", RunTicketsSuite},
    {"recommendation", RunRecommendationSuite},
    {"gateway", RunGatewaySuite},
    {"storage", RunStorageSuite},
    {"scaling", RunScalingSuite},
    {"system", RunSystemSuite},
};

// --`flag`'s comma-separated positive numbers; nothing (having said which is not one) when one is
// not.
std::optional<std::vector<int>> PositiveNumbers(const char* flag, const std::string& list) {
  std::vector<int> numbers;
  for (absl::string_view n : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    int v = 0;
    if (!absl::SimpleAtoi(n, &v) || v <= 0) {
      std::fprintf(stderr, "--%s: \"%s\" is not a positive number\n", flag, std::string(n).c_str());
      return std::nullopt;
    }
    numbers.push_back(v);
  }
  return numbers;
}

}  // namespace

Measurement Measure(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                    const Scenario& scenario, const LoadOptions& options, pid_t server_pid) {
  const double cpu_before = ProcessCpuSeconds(server_pid);
  Measurement m;
  m.result = RunLoad(channels, scenario, options);
  const double cpu = ProcessCpuSeconds(server_pid) - cpu_before;
  // Warm-up calls burn CPU too; count every call the server handled in the run.
  const double calls =
      m.result.throughput() * absl::ToDoubleSeconds(options.warmup + options.duration);
  m.server_cpu_ms_per_call = calls > 0 ? cpu * 1000 / calls : 0;
  std::printf("%s  cpu %.3f ms/call\n", Summary(m.result).c_str(), m.server_cpu_ms_per_call);
  if (!m.result.first_error.empty())
    std::printf("  first error: %s\n", m.result.first_error.c_str());
  std::fflush(stdout);
  return m;
}

void StartServing(testing::Process& process) {
  if (auto s = process.Start(); !s.ok()) throw std::runtime_error(s.ToString());
  if (auto s = process.WaitServing(); !s.ok()) throw std::runtime_error(s.ToString());
}

std::unique_ptr<testing::Process> StartService(const std::string& binary,
                                               std::vector<std::string> args) {
  args.push_back("--listen=127.0.0.1:0");
  args.push_back("--metrics_listen=off");
  auto p = std::make_unique<testing::Process>(testing::Process::BuildPath(binary), args);
  StartServing(*p);
  return p;
}

std::unique_ptr<testing::Process> StartProfile(const std::string& data_dir) {
  return StartService("services/customer_profile/customer-profile",
                      {"--data_dir=" + data_dir, "--event_sinks=none"});
}

const Report::Row* Report::Find(const std::string& scenario) const {
  for (const auto& r : rows_) {
    if (r.m.result.scenario == scenario) return &r;
  }
  return nullptr;
}

void Report::Add(const Measurement& m, const std::string& baseline) {
  rows_.push_back({m, baseline});
}

void Report::Note(const std::string& line) {
  notes_.push_back(line);
  std::printf("  %s\n", line.c_str());
  std::fflush(stdout);
}

namespace {
double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }
}  // namespace

void Report::Print() const { std::printf("\n%s\n", Markdown().c_str()); }

std::string Report::Markdown() const {
  std::string out =
      "| workload | calls/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | server CPU "
      "ms/call | vs baseline |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
  for (const auto& row : rows_) {
    const LoadResult& r = row.m.result;
    std::string ratio = "-";
    if (const Row* base = Find(row.baseline); base != nullptr && base->m.result.throughput() > 0) {
      ratio = absl::StrFormat("%.0f%% of %s", 100 * r.throughput() / base->m.result.throughput(),
                              row.baseline);
    }
    absl::StrAppendFormat(
        &out, "| %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %d | %.3f | %s |\n", r.scenario,
        r.throughput(), Ms(r.latency.Percentile(50)), Ms(r.latency.Percentile(90)),
        Ms(r.latency.Percentile(99)), Ms(r.latency.Percentile(99.9)), Ms(r.latency.Max()), r.errors,
        row.m.server_cpu_ms_per_call, ratio);
  }
  if (!notes_.empty()) {
    out += "\n";
    for (const auto& n : notes_) absl::StrAppend(&out, "- ", n, "\n");
  }
  return out;
}

std::string Report::Json() const {
  std::vector<std::string> rows;
  for (const auto& row : rows_) {
    const LoadResult& r = row.m.result;
    std::string name;
    log::AppendJsonString(name, r.scenario);
    std::string baseline;
    log::AppendJsonString(baseline, row.baseline);
    rows.push_back(absl::StrFormat(
        "{\"workload\":%s,\"calls_per_second\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%."
        "3f,"
        "\"p999_ms\":%.3f,\"max_ms\":%.3f,\"errors\":%d,\"server_cpu_ms_per_call\":%.4f,"
        "\"baseline\":%s}",
        name, r.throughput(), Ms(r.latency.Percentile(50)), Ms(r.latency.Percentile(90)),
        Ms(r.latency.Percentile(99)), Ms(r.latency.Percentile(99.9)), Ms(r.latency.Max()), r.errors,
        row.m.server_cpu_ms_per_call, baseline));
  }
  std::vector<std::string> notes;
  for (const auto& n : notes_) {
    std::string s;
    log::AppendJsonString(s, n);
    notes.push_back(s);
  }
  return absl::StrCat("{\"workloads\":[", absl::StrJoin(rows, ","), "],\"notes\":[",
                      absl::StrJoin(notes, ","), "]}\n");
}

}  // namespace crm::load

int main(int argc, char** argv) {
  crm::load::StartTool(argc, argv);
  crm::load::BenchOptions options;
  options.customers = absl::GetFlag(FLAGS_customers);
  const auto scaling_customers =
      crm::load::PositiveNumbers("scaling_customers", absl::GetFlag(FLAGS_scaling_customers));
  const auto system_customers =
      crm::load::PositiveNumbers("system_customers", absl::GetFlag(FLAGS_system_customers));
  if (!scaling_customers || !system_customers) return 2;
  options.scaling_customers = *scaling_customers;
  options.system_customers = *system_customers;
  options.order_customers = absl::GetFlag(FLAGS_order_customers);
  options.open_tickets = absl::GetFlag(FLAGS_open_tickets);
  options.reco_items = absl::GetFlag(FLAGS_reco_items);
  options.reco_customers = absl::GetFlag(FLAGS_reco_customers);
  options.reco_interactions = absl::GetFlag(FLAGS_reco_interactions);
  options.load.concurrency = absl::GetFlag(FLAGS_concurrency);
  options.load.channels = absl::GetFlag(FLAGS_channels);
  options.load.warmup = absl::Seconds(absl::GetFlag(FLAGS_warmup_s));
  options.load.duration = absl::Seconds(absl::GetFlag(FLAGS_duration_s));
  crm::load::Report report;
  for (absl::string_view suite :
       absl::StrSplit(absl::GetFlag(FLAGS_suites), ',', absl::SkipEmpty())) {
    std::printf("== %s\n", std::string(suite).c_str());
    const auto run = crm::load::kSuites.find(suite);
    if (run == crm::load::kSuites.end()) {
      std::fprintf(stderr, "unknown suite %s\n", std::string(suite).c_str());
      return 2;
    }
    try {
      run->second(options, report);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "suite %s failed: %s\n", std::string(suite).c_str(), e.what());
      return 1;
    }
  }
  report.Print();
  if (!absl::GetFlag(FLAGS_markdown).empty())
    std::ofstream(absl::GetFlag(FLAGS_markdown)) << report.Markdown();
  if (!absl::GetFlag(FLAGS_json).empty()) std::ofstream(absl::GetFlag(FLAGS_json)) << report.Json();
  return 0;
}
