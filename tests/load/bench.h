// The benchmark command's building blocks: options, a report that prints a table and writes
// markdown and JSON, and one suite per service. Benchmarks print figures; they never pass or fail
// anything.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/load/loadgen.h"
#include "tests/load/shop_fill.h"

namespace crm::testing {
class Process;
}  // namespace crm::testing

namespace crm::load {

struct BenchOptions {
  int customers = 100000;
  // Customers (with an address) that place orders in the orders suite.
  int order_customers = 2000;
  // Open tickets before ListAtRiskTickets is measured.
  int open_tickets = 100000;
  // The recommendation suite's catalog, customers and interactions learned before measuring.
  int reco_items = 50000;
  int reco_customers = 100000;
  int reco_interactions = 1000000;
  // Customer bases of the scaling suite, smallest first.
  std::vector<int> scaling_customers = {10000, 100000};
  // Customer bases of the whole-system suite (360° view), smallest first; the storefront mix runs
  // on the last.
  std::vector<int> system_customers = {1000, 100000};
  LoadOptions load;
};

// A workload's result and what it cost the server.
struct Measurement {
  LoadResult result;
  double server_cpu_ms_per_call = 0;
};

// Runs the load while reading the server process's CPU time before and after.
Measurement Measure(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                    const Scenario& scenario, const LoadOptions& options, pid_t server_pid);

// The gRPC ceiling beside a read: crm-echo-server (the same libs/rpc server, no storage) under
// `load`, started and stopped for this measurement, reported as `name`.
Measurement MeasureEcho(const LoadOptions& load, const std::string& name);

class Report {
 public:
  // Adds a workload; `baseline` names an earlier row to compute the throughput ratio against.
  void Add(const Measurement& m, const std::string& baseline = "");
  void Note(const std::string& line);
  void Print() const;
  std::string Markdown() const;
  std::string Json() const;

 private:
  struct Row {
    Measurement m;
    std::string baseline;
  };
  const Row* Find(const std::string& scenario) const;
  std::vector<Row> rows_;
  std::vector<std::string> notes_;
};

void RunProfileSuite(const BenchOptions& options, Report& report);
void RunOrdersSuite(const BenchOptions& options, Report& report);
void RunLoyaltySuite(const BenchOptions& options, Report& report);
void RunTicketsSuite(const BenchOptions& options, Report& report);
void RunRecommendationSuite(const BenchOptions& options, Report& report);
void RunGatewaySuite(const BenchOptions& options, Report& report);
void RunStorageSuite(const BenchOptions& options, Report& report);
void RunScalingSuite(const BenchOptions& options, Report& report);
void RunSystemSuite(const BenchOptions& options, Report& report);

// Starts a service's process and waits until it serves; throws otherwise (the suite cannot go on).
void StartServing(testing::Process& process);

// A service's binary (its build path, e.g. "services/loyalty/loyalty") run with `args` on a free
// loopback port without a metrics endpoint, serving (throws otherwise).
std::unique_ptr<testing::Process> StartService(const std::string& binary,
                                               std::vector<std::string> args);

// customer-profile keeping its data in `data_dir` and sending no events: the customer base the
// suites register their customers in.
std::unique_ptr<testing::Process> StartProfile(const std::string& data_dir);

}  // namespace crm::load
