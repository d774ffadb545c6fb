// Reading a whole small file (configuration, keys, secrets) into memory. Thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace crm::text {

// The file's bytes, or NOT_FOUND "cannot read <path>" when it cannot be opened or read.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// What tells that a file was replaced or edited (configuration re-read without a restart): its
// modification time and size. Default: never seen.
struct FileStamp {
  int64_t mtime_ns = -1;
  int64_t size = -1;
  bool operator==(const FileStamp& o) const { return mtime_ns == o.mtime_ns && size == o.size; }
  bool operator!=(const FileStamp& o) const { return !(*this == o); }
};
// NOT_FOUND "cannot stat <path>" when the file cannot be looked at.
absl::StatusOr<FileStamp> StampOf(const std::string& path);

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

// Returns `parse(text)` for data built into the binary (`what`, e.g. "severity lexicon"), or
// INTERNAL "the built-in <what> did not parse: <why>". A service refuses to start on it rather
// than run with an empty default; tests parse every built-in file, so it means a bad edit.
template <typename Parse>
auto ParseBuiltIn(absl::string_view what, absl::string_view text, Parse parse)
    -> decltype(parse(text)) {
  auto parsed = parse(text);
  if (!parsed.ok()) {
    // A parser names what it parses with the name its service gives it here ("churn model: line
    // 4: ..."); said once is enough.
    absl::string_view why = parsed.status().message();
    const std::string named = absl::StrCat(what, ": ");
    if (absl::StartsWithIgnoreCase(why, named)) why.remove_prefix(named.size());
    return absl::InternalError(absl::StrCat("the built-in ", what, " did not parse: ", why));
  }
  return parsed;
}

// Data built into the binary (`what`), parsed by ParseBuiltIn on first use and kept for the
// process, so the start-up check (`parsed()`) and every later reader (`value()`) share one parse.
// Meant to be a function-local static: construction is then thread-safe, and it is immutable after.
template <typename T>
class BuiltIn {
 public:
  template <typename Parse>
  BuiltIn(absl::string_view what, absl::string_view text, Parse parse)
      : parsed_(ParseBuiltIn(what, text, parse)) {}
  BuiltIn(const BuiltIn&) = delete;
  BuiltIn& operator=(const BuiltIn&) = delete;

  // The parse's result: INTERNAL "the built-in <what> did not parse: ..." when it failed.
  const absl::StatusOr<T>& parsed() const { return parsed_; }
  // The parsed data, or T's default when it did not parse (a service refuses to start then, so
  // only a test or a tool can see the default).
  const T& value() const { return parsed_.ok() ? *parsed_ : empty_; }

 private:
  const absl::StatusOr<T> parsed_;
  const T empty_{};
};

}  // namespace crm::text
