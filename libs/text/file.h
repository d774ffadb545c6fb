// Reading a whole small file (configuration, keys, secrets) into memory. Thread-safe.
#pragma once

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace crm::text {

// The file's bytes, or NOT_FOUND "cannot read <path>" when it cannot be opened or read.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Reads `path` and returns `parse(contents)` (an absl::StatusOr<T>). Errors name what failed:
// NOT_FOUND "<what>: cannot read <path>" (`what` is what the file is for, e.g. "--lexicon_file"),
// INVALID_ARGUMENT "<path>: <why it does not parse>".
template <typename Parse>
auto ParseFile(const std::string& path, absl::string_view what, Parse parse)
    -> decltype(parse(std::string())) {
  auto contents = ReadFile(path);
  if (!contents.ok())
    return absl::NotFoundError(absl::StrCat(what, ": ", contents.status().message()));
  auto parsed = parse(*contents);
  if (!parsed.ok())
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", parsed.status().message()));
  return parsed;
}

}  // namespace crm::text
