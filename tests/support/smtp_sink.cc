#include "tests/support/smtp_sink.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "tests/support/source_files.h"
#include "tests/support/wait.h"

namespace crm::testing {

SmtpSink::SmtpSink(std::vector<std::string> extra_args)
    : port_(PickFreePort()), mail_dir_(dir_.Sub("mail")), extra_args_(std::move(extra_args)) {}

SmtpSink::~SmtpSink() {
  if (process_ != nullptr) process_->Stop();
}

absl::Status SmtpSink::Start(absl::Duration patience) {
  if (mkdir(mail_dir_.c_str(), 0700) != 0)
    return absl::InternalError(absl::StrCat("cannot make ", mail_dir_));
  std::vector<std::string> args = {absl::StrCat(CRM_SOURCE_ROOT, "/tests/support/smtp_sink.py"),
                                   "--port", absl::StrCat(port_), "--dir", mail_dir_};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  process_ = std::make_unique<Process>("/usr/bin/python3", args);
  if (absl::Status s = process_->Start(); !s.ok()) return s;
  return process_->WaitForLog("smtp sink listening", patience);
}

std::string SmtpSink::output() const { return process_ != nullptr ? process_->output() : ""; }

std::vector<std::string> SmtpSink::Messages() const {
  std::vector<std::string> out;
  for (int n = 1;; ++n) {
    absl::StatusOr<std::string> text = ReadFile(absl::StrCat(mail_dir_, "/", n, ".eml"));
    if (!text.ok()) return out;
    out.push_back(*std::move(text));
  }
}

std::string SmtpSink::Envelope(int n) const {
  return ReadFile(absl::StrCat(mail_dir_, "/", n, ".envelope")).value_or("");
}

std::string SmtpSink::WaitForMessage(size_t n, absl::Duration patience) const {
  std::vector<std::string> messages;
  const bool came = WaitUntil(
      [&] {
        messages = Messages();
        return messages.size() >= n;
      },
      patience);
  return came && n >= 1 ? messages[n - 1] : "";
}

}  // namespace crm::testing
