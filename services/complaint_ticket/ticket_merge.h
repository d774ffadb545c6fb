// Merging a duplicate ticket into the one that carries on (issue 24, item 2): the customer wrote
// twice about one problem, or a channel opened a second ticket. Pure function over the two tickets.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "crm/v1/complaint_ticket.pb.h"

namespace crm::complaint_ticket {

// Closes `source` as merged into `target` and copies its messages onto `target` (each keeping its
// time, author and internal flag, marked with the ticket it came from), with a message on each
// saying so and the source's tags added to the target's (up to the limit). `actor` is who merged
// (an agent id, or an admin's name). FAILED_PRECONDITION naming the field when the source is not
// open or in progress or still has a promised callback, or when the target is closed.
absl::Status MergeInto(v1::Ticket& source, v1::Ticket& target, const std::string& actor,
                       bool actor_is_agent, absl::Time now);

}  // namespace crm::complaint_ticket
