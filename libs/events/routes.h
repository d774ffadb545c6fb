// Which events each consuming service receives. The producer filters by this table so a consumer is
// never sent what it would ignore. A sink not named here (tests, tools) receives every event.
#pragma once

#include "absl/strings/string_view.h"
#include "crm/v1/events.pb.h"

namespace crm::events {

bool SinkWants(absl::string_view sink, const v1::Event& event);

}  // namespace crm::events
