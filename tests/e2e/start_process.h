// Starts one of this project's binaries on a free loopback port (metrics off) and waits until it
// serves; the test fails, with the process's output, when it does not. Catch2 tests only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "catch2/catch.hpp"
#include "tests/support/process.h"
#include "tests/support/require_ok.h"

namespace crm::testing {

inline std::unique_ptr<Process> StartServing(const std::string& binary,
                                             std::vector<std::string> args) {
  args.push_back("--listen=127.0.0.1:0");
  args.push_back("--metrics_listen=off");
  auto p = std::make_unique<Process>(Process::BuildPath(binary), args);
  REQUIRE_OK(p->Start());
  const absl::Status s = p->WaitServing();
  INFO(s.ToString() << "\n" << p->output());
  REQUIRE(s.ok());
  return p;
}

}  // namespace crm::testing
