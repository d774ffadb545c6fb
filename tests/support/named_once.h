// Checking the error of a broken data file built into a service (libs/text/file.h's ParseBuiltIn).
#pragma once

#include "absl/strings/string_view.h"

namespace crm::testing {

// Whether `message` names the built-in `what` once: the last word of `what` appears once, so
// "the built-in severity lexicon did not parse: lexicon: line 1 ..." (named twice) does not pass.
inline bool NamedOnce(absl::string_view message, absl::string_view what) {
  const absl::string_view noun = what.substr(what.rfind(' ') + 1);
  const size_t first = message.find(noun);
  return first != absl::string_view::npos &&
         message.find(noun, first + 1) == absl::string_view::npos;
}

}  // namespace crm::testing
