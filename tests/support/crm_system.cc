#include "tests/support/crm_system.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "libs/auth/jwt.h"
#include "libs/base/status_macros.h"
#include "libs/rpc/client.h"
#include "tests/support/http.h"

namespace crm::testing {
namespace {

const std::map<std::string, std::string>& Binaries() {
  static const auto* binaries = new std::map<std::string, std::string>{
      {"customer-profile", "services/customer_profile/customer-profile"},
      {"order-tracking", "services/order_tracking/order-tracking"},
      {"loyalty", "services/loyalty/loyalty"},
      {"complaint-ticket", "services/complaint_ticket/complaint-ticket"},
      {"recommendation", "services/recommendation/recommendation"},
      {"gateway", "services/gateway/gateway"}};
  return *binaries;
}

}  // namespace

const std::vector<std::string>& CrmSystem::Names() {
  static const auto* names =
      new std::vector<std::string>{"customer-profile", "order-tracking", "loyalty",
                                   "complaint-ticket", "recommendation", "gateway"};
  return *names;
}

const std::string& CrmSystem::Binary(const std::string& name) { return Binaries().at(name); }

std::string CrmSystem::AddressFlag(const std::string& name, const std::string& address) {
  std::string flag = name;
  std::replace(flag.begin(), flag.end(), '-', '_');
  return absl::StrCat("--", flag, "_address=", address);
}

std::vector<std::string> CrmSystem::GatewayAdmissionFlags(const std::string& data_root) {
  std::vector<std::string> flags = {"--jwt_secret_file=" + data_root + "/jwt-secret"};
  for (const char* role : {"customer", "agent", "admin", "service", "ip"}) {
    flags.push_back(absl::StrCat("--rate_limit_", role, "=0"));
  }
  return flags;
}

CrmSystem::CrmSystem(Options options) : options_(std::move(options)) {
  // PickFreePort never gives one port twice.
  for (const std::string& name : Names()) {
    ports_[name] = PickFreePort();
    metrics_ports_[name] = PickFreePort();
  }
  http_port_ = PickFreePort();
  secret_ = "crm-system-test-secret-crm-system-test-secret";
  std::ofstream(options_.data_root + "/jwt-secret") << secret_;
  // Mutual TLS between the processes, as the local run has it: the same development CA script.
  std::vector<std::string> certified = Names();
  certified.insert(certified.end(), {"test-client", "load-generator"});
  certificates_ = MakeDevCertificates(options_.data_root + "/tls", certified);
}

CrmSystem::~CrmSystem() {
  // The gateway first, so nothing new reaches the services while they drain.
  for (auto it = Names().rbegin(); it != Names().rend(); ++it) {
    if (running(*it)) Stop(*it);
  }
  // For a failed run: every process's output, kept where the developer asked (CRM_SYSTEM_LOG_DIR).
  if (const char* dir = std::getenv("CRM_SYSTEM_LOG_DIR"); dir != nullptr && *dir != '\0') {
    for (const std::string& name : Names())
      std::ofstream(absl::StrCat(dir, "/", name, ".log")) << Output(name);
  }
}

std::vector<std::string> CrmSystem::ArgsOf(const std::string& name) const {
  std::vector<std::string> args = {
      absl::StrCat("--listen=127.0.0.1:", ports_.at(name)),
      absl::StrCat("--metrics_listen=127.0.0.1:", metrics_ports_.at(name)),
      absl::StrCat("--tls_dir=", options_.data_root, "/tls/", name)};
  for (const std::string& other : Names()) {
    if (other == "gateway") continue;
    args.push_back(AddressFlag(other, absl::StrCat("127.0.0.1:", ports_.at(other))));
  }
  if (name == "gateway") {
    const std::vector<std::string> admission = GatewayAdmissionFlags(options_.data_root);
    args.insert(args.end(), admission.begin(), admission.end());
    args.push_back(absl::StrCat("--http_listen=127.0.0.1:", http_port_));
    args.push_back(absl::StrCat("--access_log=", options_.access_log ? "true" : "false"));
    args.push_back(absl::StrCat("--view_section_timeout_ms=", options_.view_section_timeout_ms));
    if (auto it = options_.extra.find(name); it != options_.extra.end()) {
      args.insert(args.end(), it->second.begin(), it->second.end());
    }
    return args;
  }
  args.push_back("--data_dir=" + options_.data_root + "/" + name);
  // Producers find a consumer that comes back within half a second, not ten.
  if (name == "customer-profile" || name == "order-tracking" || name == "complaint-ticket") {
    args.push_back("--event_max_backoff_ms=500");
  }
  args.push_back("--drain_seconds=2");
  if (auto it = options_.extra.find(name); it != options_.extra.end()) {
    args.insert(args.end(), it->second.begin(), it->second.end());
  }
  return args;
}

absl::Status CrmSystem::Start() {
  CRM_RETURN_IF_ERROR(certificates_);
  for (const std::string& name : Names()) {
    if (absl::Status s = Start(name); !s.ok()) return s;
  }
  // The project's channel settings: a restarted gateway is reconnected to within 100 ms, not
  // seconds.
  gateway_channel_ =
      rpc::MakeChannel(absl::StrCat("127.0.0.1:", ports_.at("gateway")), "", nullptr);
  return absl::OkStatus();
}

absl::Status CrmSystem::Start(const std::string& name) {
  if (auto it = processes_.find(name); it != processes_.end())
    last_output_[name] += it->second->output();
  auto p = std::make_unique<Process>(Process::BuildPath(Binary(name)), ArgsOf(name));
  if (absl::Status s = p->Start(); !s.ok()) return s;
  absl::Status s = p->WaitServing();
  if (!s.ok())
    return absl::UnavailableError(absl::StrCat(name, ": ", s.message(), "\n", p->output()));
  processes_[name] = std::move(p);
  return absl::OkStatus();
}

void CrmSystem::Kill(const std::string& name) {
  if (auto it = processes_.find(name); it != processes_.end() && it->second->running())
    it->second->Kill();
}

int CrmSystem::Stop(const std::string& name) {
  auto it = processes_.find(name);
  if (it == processes_.end() || !it->second->running()) return 0;
  return it->second->Stop();
}

bool CrmSystem::running(const std::string& name) const {
  auto it = processes_.find(name);
  return it != processes_.end() && it->second->running();
}

std::shared_ptr<grpc::ChannelCredentials> CrmSystem::ServiceCredentials(
    const std::string& process) const {
  auto read = [](const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  const std::string dir = absl::StrCat(options_.data_root, "/tls/", process);
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = read(dir + "/ca.crt");
  o.pem_private_key = read(dir + "/tls.key");
  o.pem_cert_chain = read(dir + "/tls.crt");
  return grpc::SslCredentials(o);
}

std::string CrmSystem::Token(const std::string& role, const std::string& subject) const {
  return *auth::Sign("HS256", secret_,
                     absl::StrCat(R"({"sub":")", subject, R"(","role":")", role, R"(","exp":)",
                                  absl::ToUnixSeconds(absl::Now() + absl::Hours(4)), "}"));
}

absl::StatusOr<double> CrmSystem::Metric(const std::string& name, const std::string& metric,
                                         const std::string& labels) const {
  auto page = HttpGet(metrics_ports_.at(name), "/metrics");
  if (!page.ok()) return page.status();
  auto v = SampleIn(page->body, metric + labels);
  if (!v.ok())
    return absl::NotFoundError(absl::StrCat(metric, labels, " is not in ", name, "'s /metrics"));
  return v;
}

std::string CrmSystem::Output(const std::string& name) const {
  std::string out;
  if (auto it = last_output_.find(name); it != last_output_.end()) out = it->second;
  if (auto it = processes_.find(name); it != processes_.end()) out += it->second->output();
  return out;
}

}  // namespace crm::testing
