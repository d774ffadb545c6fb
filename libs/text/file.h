// Reading a whole small file (configuration, keys, secrets) into memory. Thread-safe.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace crm::text {

// The file's bytes, or NOT_FOUND "cannot read <path>" when it cannot be opened or read.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace crm::text
