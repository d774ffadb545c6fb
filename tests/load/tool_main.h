// What every load tool's main() does first. Header-only.
#pragma once

#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"
#include "libs/base/flags_help.h"
#include "libs/log/log.h"

namespace crm::load {

// Parses the command line (--help lists the tool's own flags); turns Abseil's deadlock detection
// off, as the servers do (libs/rpc), so the load generator does not pay for it either; logs
// warnings and errors only.
inline void StartTool(int argc, char** argv) {
  HelpListsOwnFlags();
  absl::ParseCommandLine(argc, argv);
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  log::SetMinLevel(log::Level::kWarning);
}

}  // namespace crm::load
