// Starts a real binary as a child process, captures its JSON log lines, and waits for the
// {"message":"serving","port":...} line that every service prints once it is ready, so tests and
// benchmarks can use --listen=127.0.0.1:0 (no fixed ports, no races). Stop() sends SIGTERM and
// waits; Kill() SIGKILLs.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace crm::testing {

// The deployment key every process a test starts is given (as CRM_INTERNAL_KEY_FILE, unless the
// test sets that itself): a file with a fresh secret, made once per test process and installed in
// this process too, so assertions the test signs (tests/support/caller.h) verify in the processes
// it starts.
const std::string& TestInternalKeyFile();

// A loopback port nothing listens on right now, for a process that must be told its port before it
// starts (or that must come back on it): picked at random below the kernel's ephemeral range, so no
// server binding port 0 takes it meanwhile, and claimed for this test process until it exits, so no
// other test process picks it too. 0 if none could be found.
int PickFreePort();

// The names of process `pid`'s threads (/proc/<pid>/task/*/comm), one per thread.
std::vector<std::string> ThreadNames(pid_t pid);

// Runs deploy/local/dev-pki.sh: a development CA in `dir` and a certificate for each of `names` in
// `dir`/<name> (tls.crt, tls.key, ca.crt), as the local run and CrmSystem use them for TLS.
absl::Status MakeDevCertificates(const std::string& dir, const std::vector<std::string>& names);

class Process {
 public:
  Process(std::string binary, std::vector<std::string> args,
          std::map<std::string, std::string> env = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  absl::Status Start();
  // Waits for the "serving" log line; fills port() and metrics_port().
  absl::Status WaitServing(absl::Duration timeout = absl::Seconds(60));
  // Waits until some log line contains `needle`.
  absl::Status WaitForLog(const std::string& needle, absl::Duration timeout);
  // How many lines the process has logged so far: a mark for WaitForLogAfter.
  size_t log_lines() const;
  // Waits for a line logged after the first `after` lines that contains `needle`, and returns it.
  absl::StatusOr<std::string> WaitForLogAfter(size_t after, const std::string& needle,
                                              absl::Duration timeout);
  // Waits for the process to exit by itself; returns the exit code (or -signal), -1000 on timeout.
  int Wait(absl::Duration timeout = absl::Seconds(30));
  // SIGTERM, then wait for exit; returns the exit code (or -signal).
  int Stop(absl::Duration timeout = absl::Seconds(30));
  // SIGKILL, then wait.
  void Kill();
  bool running() const { return pid_ > 0; }

  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  std::string output() const;
  // Waits for the process to end on its own: its exit code, or -1000 when `timeout` passes first.
  int WaitExit(absl::Duration timeout);

  // The build folder's path of a binary built by this project, e.g.
  // "services/customer_profile/customer-profile".
  static std::string BuildPath(const std::string& relative);

 private:
  void ReadLoop(int fd);

  std::string binary_;
  std::vector<std::string> args_;
  std::map<std::string, std::string> env_;
  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
  std::thread reader_;
  mutable absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

}  // namespace crm::testing
