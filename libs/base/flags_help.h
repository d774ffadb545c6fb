// --help lists the binary's own flags: those defined under services/, libs/, tools/ and tests/ (the
// project's), not Abseil's or gRPC's (--helpfull still lists every flag). Without this, Abseil
// shows only flags defined in a file named after the binary, and every binary here answered "No
// flags matched". Header-only; call before absl::ParseCommandLine.
#pragma once

#include <initializer_list>

#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace crm {

inline void HelpListsOwnFlags() {
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view file) {
    for (absl::string_view folder : {"services/", "libs/", "tools/", "tests/"}) {
      if (absl::StrContains(file, folder)) return true;
    }
    return false;
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
}

}  // namespace crm
