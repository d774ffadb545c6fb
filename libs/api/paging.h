// Page tokens (AIP-158): opaque to clients, they carry the store key to resume after. A token that does
// not decode, or belongs to another listing, is INVALID_ARGUMENT on page_token.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace crm::api {

// `scope` ties the token to one listing (e.g. the customer id), so it cannot resume another.
std::string EncodePageToken(absl::string_view scope, absl::string_view resume_after_key);
// Empty token -> empty key (start from the beginning).
absl::StatusOr<std::string> DecodePageToken(absl::string_view scope, absl::string_view token);

}  // namespace crm::api
