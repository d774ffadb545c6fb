// Page tokens (AIP-158): opaque to clients, they carry the store key to resume after. A token is
// authenticated (HMAC under the deployment's internal key, libs/auth/internal_keys.h) over the
// listing's scope and the resume key, and expires an hour after it was issued, so a client can
// neither forge a resume position nor move a token from one listing (another customer's, another
// filter's) to another. A token that does not verify is INVALID_ARGUMENT on page_token, naming
// nothing of what it held.
//
// The scope must name everything that bounds the listing: the customer, the filter. Stores still
// check that the resume key lies inside the listing's key range (store::ResumeAfter), in case a
// scope was drawn too wide.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace crm::api {

inline constexpr absl::Duration kPageTokenLifetime = absl::Hours(1);

std::string EncodePageToken(absl::string_view scope, absl::string_view resume_after_key,
                            absl::Time now);
std::string EncodePageToken(absl::string_view scope, absl::string_view resume_after_key);
// Empty token -> empty key (start from the beginning).
absl::StatusOr<std::string> DecodePageToken(absl::string_view scope, absl::string_view token,
                                            absl::Time now);
absl::StatusOr<std::string> DecodePageToken(absl::string_view scope, absl::string_view token);

}  // namespace crm::api
