// The process's own resources, under the names every Prometheus client library exports
// (process_resident_memory_bytes, process_cpu_seconds_total, …), so stock dashboards and the alert
// on memory against the budget work unchanged. Read from /proc/self at scrape time; thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "prometheus/collectable.h"

namespace crm::metrics {

class ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;

  // What the process is configured to use for data it caches (the store's block cache, memtables
  // charged to it), exported as crm_memory_budget_bytes so an alert can compare resident memory
  // with it. Not exported while 0 (a process without a store).
  void set_memory_budget_bytes(uint64_t bytes) { budget_ = bytes; }

 private:
  std::atomic<uint64_t> budget_{0};
};

// Resident memory of this process split as the kernel counts it: anonymous (heap, stacks: what the
// process allocated) and file-backed (mapped code of the binary and shared libraries, shared with
// other processes and reclaimable). Zero when /proc is not readable.
struct ResidentMemory {
  uint64_t anonymous_bytes = 0;
  uint64_t file_bytes = 0;
  uint64_t total_bytes() const { return anonymous_bytes + file_bytes; }  // VmRSS
};
ResidentMemory ReadResidentMemory(int pid = 0);  // 0: this process

}  // namespace crm::metrics
