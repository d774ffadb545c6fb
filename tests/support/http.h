// Minimal HTTP/1.1 client over loopback and a command runner, for tests that scrape /metrics and
// feed it to promtool, or probe endpoints as an operator would.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace crm::testing {

struct HttpResponse {
  int status = 0;
  std::string headers;
  std::string body;
};

// A blocking TCP connection to 127.0.0.1:`port` (the caller closes it), or -1.
int ConnectLoopback(int port);

// GET http://127.0.0.1:<port><path>, reading until the server closes the connection.
absl::StatusOr<HttpResponse> HttpGet(int port, const std::string& path);

// The value of one sample in a Prometheus text exposition (a /metrics page), `series` written as
// there: name and labels, e.g. crm_rocksdb_memory_bytes{kind="memtables"}. NOT_FOUND when absent.
absl::StatusOr<double> SampleIn(absl::string_view page, absl::string_view series);

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs `command` with /bin/sh, feeding `input` on stdin.
CommandResult RunCommand(const std::string& command, const std::string& input = "");

}  // namespace crm::testing
