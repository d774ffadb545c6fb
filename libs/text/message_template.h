// Message templates with {{variables}}: canned replies agents send, campaign and notification
// messages. Pure functions.
#pragma once

#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace crm::text {

// Calls `literal(text)` and `variable(name)` for the template's parts in order; stops at the first
// error `variable` returns. INVALID_ARGUMENT naming `field` when a "{{" is not closed or a name is
// not 1-40 characters of a-z, 0-9, '_' (spaces around it are allowed).
absl::Status WalkTemplate(absl::string_view field, absl::string_view text,
                          absl::FunctionRef<void(absl::string_view)> literal,
                          absl::FunctionRef<absl::Status(absl::string_view)> variable);

// The names of the {{variables}} in `text`, each once, in order of first use; errors as
// WalkTemplate.
absl::StatusOr<std::vector<std::string>> TemplateVariables(absl::string_view field,
                                                           absl::string_view text);

}  // namespace crm::text
