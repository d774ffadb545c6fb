// The 360° view's record of a section it could not fill (crm.v1.UnavailableSection), written the
// same way by the gateway, which assembles the view, and by customer-profile, which answers two of
// its sections in one call and may fill only one. Stateless; thread-safe.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "crm/v1/common.pb.h"

namespace crm::api {

// Section `name` ("profile", "insights", ...) not filled because reading it ended with `status`:
// its code's name (e.g. "UNAVAILABLE") and message.
v1::UnavailableSection UnavailableSectionOf(absl::string_view name, const absl::Status& status);

}  // namespace crm::api
