// The whole system as real processes: the five services and the gateway, each on loopback ports
// picked before any starts (every process must know every other's address, and a restarted one
// comes back on the same ports), over RocksDB in the caller's folder, with mutual TLS between them
// as in the local run (deploy/local/dev-pki.sh). Kill() SIGKILLs one, Restart() starts it again on
// the same data. For e2e scenarios and benchmarks.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "tests/support/process.h"

namespace crm::testing {

class CrmSystem {
 public:
  struct Options {
    std::string data_root;  // one folder per process under it
    // Extra flags by process name, e.g. {"complaint-ticket", {"--sla_sweep_interval_s=1"}}.
    std::map<std::string, std::vector<std::string>> extra;
    int view_section_timeout_ms = 800;
    // The gateway's JSON access log (off by default: it is one line per call).
    bool access_log = false;
  };
  // The six process names: the five services, then "gateway".
  static const std::vector<std::string>& Names();
  // Where process `name`'s binary is built, relative to the build folder (Process::BuildPath), e.g.
  // "services/customer_profile/customer-profile".
  static const std::string& Binary(const std::string& name);
  // The flag that gives the other processes service `name`'s address:
  // "--customer_profile_address=" + address.
  static std::string AddressFlag(const std::string& name, const std::string& address);
  // A test gateway's admission flags: tokens signed with the JWT secret CrmSystem writes under
  // `data_root`, and no rate limits (load and tests would hit them).
  static std::vector<std::string> GatewayAdmissionFlags(const std::string& data_root);

  explicit CrmSystem(Options options);
  ~CrmSystem();

  absl::Status Start();  // all six, services first
  absl::Status Start(const std::string& name);
  void Kill(const std::string& name);  // SIGKILL: no drain, no flush
  int Stop(const std::string& name);   // SIGTERM: drains
  bool running(const std::string& name) const;

  int port(const std::string& name) const { return ports_.at(name); }
  pid_t pid(const std::string& name) const { return processes_.at(name)->pid(); }
  int metrics_port(const std::string& name) const { return metrics_ports_.at(name); }
  // The gateway's HTTP port (gRPC-Web and Connect; HTTP/1.1 and h2c).
  int http_port() const { return http_port_; }
  std::shared_ptr<grpc::Channel> gateway() const { return gateway_channel_; }
  // Credentials to call a service's own port: mutual TLS with a client certificate of the system's
  // CA, for `process` ("test-client" or "load-generator": certificates are made for both). Callers
  // still need a signed assertion (tests/support/caller.h) whose signer is that process.
  std::shared_ptr<grpc::ChannelCredentials> ServiceCredentials(
      const std::string& process = "test-client") const;
  // A signed token for the gateway (HS256 with the system's secret).
  std::string Token(const std::string& role, const std::string& subject) const;
  // The value of one sample in the process's /metrics, e.g. Metric("customer-profile",
  // "crm_kpi_csat_average"); labels as written in the exposition, e.g. {action="coupon"}.
  absl::StatusOr<double> Metric(const std::string& name, const std::string& metric,
                                const std::string& labels = "") const;
  std::string Output(const std::string& name) const;

 private:
  std::vector<std::string> ArgsOf(const std::string& name) const;

  Options options_;
  std::string secret_;
  absl::Status certificates_;  // deploy/local/dev-pki.sh's outcome, checked by Start
  std::map<std::string, int> ports_, metrics_ports_;
  int http_port_ = 0;
  std::map<std::string, std::unique_ptr<Process>> processes_;
  std::map<std::string, std::string> last_output_;
  std::shared_ptr<grpc::Channel> gateway_channel_;
};

}  // namespace crm::testing
