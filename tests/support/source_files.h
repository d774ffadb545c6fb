// Reading a file whole: a file a test wrote, or one of this repository's own (the shipped
// configuration, test data) by its path from the repository's root.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace crm::testing {

absl::StatusOr<std::string> ReadFile(const std::string& path);

// E.g. ReadSourceFile("deploy/config/return-policy.txt").
absl::StatusOr<std::string> ReadSourceFile(const std::string& relative_path);

}  // namespace crm::testing
