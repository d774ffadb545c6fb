#include "libs/metrics/process_collector.h"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"
#include "prometheus/metric_type.h"

namespace crm::metrics {
namespace {

prometheus::MetricFamily Family(const char* name, const char* help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
  return f;
}

// "VmRSS:   1234 kB" lines of /proc/<pid>/status, in bytes.
uint64_t StatusBytes(const std::string& status, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (!absl::ConsumePrefix(&line, key) || !absl::ConsumePrefix(&line, ":")) continue;
    uint64_t kib = 0;
    std::vector<absl::string_view> parts =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (!parts.empty() && absl::SimpleAtoi(parts[0], &kib)) return kib * 1024;
  }
  return 0;
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Seconds since the epoch when this process started: boot time plus the start tick in
// /proc/self/stat.
double StartTimeSeconds() {
  static const double start = [] {
    const std::string stat = ReadAll("/proc/self/stat");
    // Fields after the command (which may hold spaces) start after the last ')'.
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) return 0.0;
    std::vector<absl::string_view> fields =
        absl::StrSplit(absl::string_view(stat).substr(close + 2), ' ');
    uint64_t ticks = 0;
    if (fields.size() < 20 || !absl::SimpleAtoi(fields[19], &ticks))
      return 0.0;  // field 22: starttime
    uint64_t boot = 0;
    for (absl::string_view line : absl::StrSplit(ReadAll("/proc/stat"), '\n')) {
      if (absl::ConsumePrefix(&line, "btime ")) (void)absl::SimpleAtoi(line, &boot);
    }
    return static_cast<double>(boot) + static_cast<double>(ticks) / sysconf(_SC_CLK_TCK);
  }();
  return start;
}

ResidentMemory ResidentMemoryIn(const std::string& status) {
  return {StatusBytes(status, "RssAnon"),
          StatusBytes(status, "RssFile") + StatusBytes(status, "RssShmem")};
}

}  // namespace

ResidentMemory ReadResidentMemory(int pid) {
  return ResidentMemoryIn(
      ReadAll(pid == 0 ? "/proc/self/status" : absl::StrCat("/proc/", pid, "/status")));
}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  using prometheus::MetricType;
  const std::string status = ReadAll("/proc/self/status");
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double cpu = usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
                     (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  std::error_code ec;
  double fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec); !ec && it != end(it);
       it.increment(ec)) {
    ++fds;
  }
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  const ResidentMemory rss = ResidentMemoryIn(status);  // one read of /proc/self/status
  std::vector<prometheus::MetricFamily> out = {
      Family("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge,
             static_cast<double>(rss.total_bytes())),
      Family("crm_process_anonymous_memory_bytes",
             "Resident memory the process allocated (heap, stacks), without mapped code of the "
             "binary and "
             "libraries.",
             MetricType::Gauge, static_cast<double>(rss.anonymous_bytes)),
      Family("process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge,
             static_cast<double>(StatusBytes(status, "VmSize"))),
      Family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
             MetricType::Counter, cpu),
      Family("process_open_fds", "Number of open file descriptors.", MetricType::Gauge, fds),
      Family("process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge,
             files.rlim_cur == RLIM_INFINITY ? 0 : static_cast<double>(files.rlim_cur)),
      Family("process_start_time_seconds", "Start time of the process since the epoch in seconds.",
             MetricType::Gauge, StartTimeSeconds()),
  };
  if (const uint64_t budget = budget_; budget > 0) {
    out.push_back(
        Family("crm_memory_budget_bytes",
               "Memory configured for cached data: block cache, with memtables charged to it "
               "(--block_cache_mb).",
               MetricType::Gauge, static_cast<double>(budget)));
  }
  return out;
}

}  // namespace crm::metrics
