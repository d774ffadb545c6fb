// crm-services: the service registry (rpc::DataServices(), libs/rpc/backends.cc) as text, so that
// scripts take names and ports from the one place the binaries do (deploy/local/run.sh starts
// the services from it; tests/deploy checks the manifests' ports against it).
//   crm-services     one line per data service: name, gRPC port, metrics port, address flag
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "libs/base/flags_help.h"
#include "libs/rpc/backends.h"

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "prints the data services of the registry, one per line: name, gRPC port, metrics port, "
      "address flag");
  crm::HelpListsOwnFlags();
  absl::ParseCommandLine(argc, argv);
  for (const crm::rpc::ServiceInfo& s : crm::rpc::DataServices()) {
    const std::string flag(absl::GetFlagReflectionHandle(*s.address_flag).Name());
    std::printf("%s\t%d\t%d\t--%s\n", s.name.c_str(), s.default_port, s.default_metrics_port,
                flag.c_str());
  }
  return 0;
}
