// An SMTP server on a free loopback port for tests: tests/support/smtp_sink.py (Debian's
// python3-aiosmtpd) as a child process, the messages it accepts kept as files in a folder of the
// test's. Not thread-safe; one test owns it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace crm::testing {

class SmtpSink {
 public:
  // `extra_args`: smtp_sink.py's options (--tls_cert, --user, ...). Start() before use.
  explicit SmtpSink(std::vector<std::string> extra_args = {});
  ~SmtpSink();

  // Starts the server and waits until it accepts connections.
  absl::Status Start(absl::Duration patience = absl::Seconds(30));
  int port() const { return port_; }
  // What the server printed, for a failed test's message.
  std::string output() const;

  // The raw messages received so far, in the order they came.
  std::vector<std::string> Messages() const;
  // The `n`th message's envelope (from 1): MAIL FROM, then each RCPT TO, one a line.
  std::string Envelope(int n) const;
  // Waits for the `n`th message (from 1) and returns it; empty when it does not come in time.
  std::string WaitForMessage(size_t n, absl::Duration patience = absl::Seconds(30)) const;

 private:
  TempDir dir_;
  const int port_;
  const std::string mail_dir_;
  std::vector<std::string> extra_args_;
  std::unique_ptr<Process> process_;
};

}  // namespace crm::testing
